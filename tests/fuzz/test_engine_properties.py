"""Property-based: any argument of Engine.encode / score / extract, valid or hostile, gives either a correct result
or a clean ``SieError``, and a valid call sent at the same time still returns the reference answer.

Each example draws every argument as a valid value or a hostile one (wrong types, bools for ints, numeric
strings, huge and negative numbers, NaN and infinity, lone surrogates, NUL and zero-width characters, very
long strings, deep nesting, unknown keys); :func:`corpus.engine_verdict` says what the specification requires
of the combination.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sie_core import Engine, SieError

from .corpus import (
    ENCODER,
    ENCODER_DIMS,
    EXTRACTOR,
    RERANKER,
    VALID_CALLS,
    EncodeCall,
    ScoreCall,
    Verdict,
    engine_calls,
    engine_verdict,
    materialize,
)
from .harness import (
    Reference,
    check_entities,
    check_scores,
    check_vectors,
    entity_shape,
    finite_vectors,
    message_problem,
    ranked_shape,
)

pytestmark = [
    pytest.mark.slow,  # loads torch and three tiny models, then a few hundred calls
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),  # the 200,000-character texts
]

FUZZ = settings(
    derandomize=True,
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
#: Codes a refused bad input may carry: the input is wrong, or the model is not served here.
CLEAN_CODES = frozenset({"INVALID_INPUT", "MODEL_NOT_FOUND"})


@pytest.fixture(scope="module")
def engine(fuzz_engine: Engine, reference: Reference) -> Engine:
    reference.prepare(VALID_CALLS)  # up front, before any hostile call
    return fuzz_engine


def _call(engine: Engine, task: str, model: Any, items: Any, options: dict[str, Any]) -> Awaitable[Any]:
    if task == "encode":
        return engine.aencode(model, items, **options)
    if task == "score":
        rest = dict(options)
        query = rest.pop("query")
        return engine.ascore(model, query, items, **rest)
    return engine.aextract(model, items, **options)


async def _valid(engine: Engine, call: Any) -> Any:
    if isinstance(call, EncodeCall):
        return await engine.aencode(ENCODER, list(call.texts), is_query=call.is_query, dims=call.dims)
    if isinstance(call, ScoreCall):
        return await engine.ascore(RERANKER, call.query, list(call.docs))
    return await engine.aextract(EXTRACTOR, call.text, labels=list(call.labels), threshold=call.threshold)


def check_valid(reference: Reference, call: Any, outcome: Any) -> str | None:
    """The interleaved valid call's answer against the reference."""
    if isinstance(outcome, BaseException):
        return f"the valid call {call} failed beside the fuzzed one: {type(outcome).__name__}: {outcome}"
    if isinstance(call, EncodeCall):
        return check_vectors(reference.get(call), [r.dense for r in outcome])
    if isinstance(call, ScoreCall):
        return check_scores(reference.get(call), [(s.index, s.score) for s in outcome.scores])
    found = [(e.text, e.label, e.start, e.end, e.score) for e in outcome.entities]
    return check_entities(reference.get(call), found)


def _texts(items: Any) -> list[str]:
    listed = items if isinstance(items, (list, tuple)) else [items]
    return [i if isinstance(i, str) else i["text"] for i in listed]


def _structure(task: str, outcome: Any, items: Any, options: dict[str, Any]) -> str | None:
    texts = _texts(items)
    results = outcome if isinstance(outcome, list) else [outcome]
    if task == "encode":
        problem = finite_vectors([r.dense for r in results], len(texts))
        if problem:
            return problem
        dims = options.get("dims") or ENCODER_DIMS
        dtype = options.get("output_dtype", "float32")
        width = math.ceil(dims / 8) if dtype == "binary" else dims
        shapes = {np.asarray(r.dense).shape for r in results}
        if shapes != {(width,)} or {r.dims for r in results} != {dims}:
            return f"vectors of shape {shapes} (dims {[r.dims for r in results][:3]}) for dims={dims}, {dtype}"
        return None
    if task == "score":
        ranked = [(s.index, s.score) for s in outcome.scores]
        problem = ranked_shape(ranked, len(texts), options.get("top_k"))
        if problem is None and not all(0.0 <= s.relevance <= 1.0 for s in outcome.scores):
            problem = f"relevance outside 0..1: {[s.relevance for s in outcome.scores]}"
        return problem
    if len(results) != len(texts):
        return f"{len(results)} results for {len(texts)} texts"
    labels = options["labels"]
    labels = [labels] if isinstance(labels, str) else list(labels)
    for text, result in zip(texts, results):
        found = [(e.text, e.label, e.start, e.end, e.score) for e in result.entities]
        problem = entity_shape(text, found, labels, float(options.get("threshold", 0.5)))
        if problem:
            return problem
    return None


def judge(task: str, verdict: Verdict, outcome: Any, items: Any, options: dict[str, Any]) -> str | None:
    """Why the fuzzed call's outcome breaks the specification (None when it does not)."""
    if isinstance(outcome, BaseException):
        if not isinstance(outcome, SieError):
            return f"raised {type(outcome).__name__} (not a SieError): {str(outcome)[:300]}"
        problem = message_problem(outcome.message)
        if problem:
            return problem
        if verdict is Verdict.VALID:
            return f"a valid call was refused with {outcome.code}: {outcome.message[:300]}"
        if outcome.code not in CLEAN_CODES:
            return f"bad input answered {outcome.code} ({type(outcome).__name__}), not INVALID_INPUT: {outcome}"
        return None
    if verdict is Verdict.INVALID:
        return f"invalid input was accepted (returned {type(outcome).__name__})"
    return _structure(task, outcome, items, options)


def _run(engine: Engine, reference: Reference, task: str, drawn: Any, valid: Any) -> None:
    shown = f"{task}(model={_short(drawn[0])}, items={_short(drawn[1])}, **{_short(drawn[2])})"
    model, items, options = materialize(drawn)
    verdict = engine_verdict(task, model, items, options)

    async def both() -> Any:
        return await asyncio.gather(
            _call(engine, task, model, items, options), _valid(engine, valid), return_exceptions=True
        )

    fuzzed, answered = asyncio.run(both())
    problem = judge(task, verdict, fuzzed, items, options)
    assert problem is None, f"{shown} [{verdict.value}]: {problem}"
    problem = check_valid(reference, valid, answered)
    assert problem is None, f"beside {shown}: {problem}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 300 else text[:300] + f"...({len(text)} chars)"


@FUZZ
@given(drawn=engine_calls("encode"), valid=st.sampled_from(VALID_CALLS))
def test_encode_arguments(engine: Engine, reference: Reference, drawn: Any, valid: Any) -> None:
    _run(engine, reference, "encode", drawn, valid)


@FUZZ
@given(drawn=engine_calls("score"), valid=st.sampled_from(VALID_CALLS))
def test_score_arguments(engine: Engine, reference: Reference, drawn: Any, valid: Any) -> None:
    _run(engine, reference, "score", drawn, valid)


@FUZZ
@given(drawn=engine_calls("extract"), valid=st.sampled_from(VALID_CALLS))
def test_extract_arguments(engine: Engine, reference: Reference, drawn: Any, valid: Any) -> None:
    _run(engine, reference, "extract", drawn, valid)


def test_engine_still_serves_after_the_fuzz(engine: Engine, reference: Reference) -> None:
    for call in VALID_CALLS:
        assert check_valid(reference, call, asyncio.run(_valid(engine, call))) is None
    assert {m.id for m in engine.list_models() if m.loaded} >= {ENCODER, RERANKER, EXTRACTOR}
