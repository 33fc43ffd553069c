"""Every bad input gets its error class and a message that says what is wrong and what is allowed."""

from __future__ import annotations

import asyncio

import pytest

from sie_core import (
    Engine,
    EngineConfig,
    InvalidInputError,
    ModelLoadError,
    ModelSpec,
    OverloadedError,
    SieError,
    UnknownModelError,
    WrongTaskError,
)

from ..conftest import MINILM


@pytest.fixture(scope="module")
def engine(tiny_models):
    config = EngineConfig(
        device="cpu",
        offline=True,
        max_items_per_call=5,
        max_text_chars=100,
        max_labels=3,
        models=(
            ModelSpec(id="tiny-encoder", task="encode", path=str(tiny_models["encoder"])),
            ModelSpec(id="tiny-reranker", task="score", path=str(tiny_models["cross_encoder"])),
            ModelSpec(id="tiny-gliner", task="extract", path=str(tiny_models["gliner"])),
        ),
    )
    with Engine(config) as engine:
        yield engine


CASES = [
    # (call, error class, message pattern)
    (
        lambda e: e.encode("no-such-org/no-such-model!", "x"),
        UnknownModelError,
        r"not a valid model id .*available: .*tiny-encoder \(encode\)",
    ),
    (
        lambda e: e.encode("tiny-reranker", "x"),
        WrongTaskError,
        r"'tiny-reranker' is a score model and cannot encode; models for encode: .*tiny-encoder",
    ),
    (
        lambda e: e.score("tiny-encoder", "q", ["x"]),
        WrongTaskError,
        r"is an encode model and cannot score; models for score: .*tiny-reranker",
    ),
    (
        lambda e: e.extract("tiny-encoder", "x", labels=["a"]),
        WrongTaskError,
        r"cannot extract; models for extract: .*tiny-gliner",
    ),
    (lambda e: e.encode("tiny-encoder", []), InvalidInputError, r"items is empty; pass at least one text"),
    (
        lambda e: e.encode("tiny-encoder", ["ok", "  "]),
        InvalidInputError,
        r"items\[1\] is empty; every text needs at least one non-space character",
    ),
    (
        lambda e: e.encode("tiny-encoder", ["ok", 42]),
        InvalidInputError,
        r"items\[1\] is of type int; expected a string or an Item with 'text'",
    ),
    (
        lambda e: e.encode("tiny-encoder", {"text": 3}),
        InvalidInputError,
        r"items\[0\]\.text must be a string, got int",
    ),
    (
        lambda e: e.encode("tiny-encoder", {"image": "x"}),
        InvalidInputError,
        r"items\[0\] has 'image'; this engine reads the 'text' of items only",
    ),
    (
        lambda e: e.encode("tiny-encoder", 17),
        InvalidInputError,
        r"items is of type int; pass a string, an Item, or a list of them",
    ),
    (
        lambda e: e.encode("tiny-encoder", ["x"] * 6),
        InvalidInputError,
        r"items has 6 entries; at most 5 are allowed per call",
    ),
    (
        lambda e: e.encode("tiny-encoder", "x" * 101),
        InvalidInputError,
        r"items\[0\] has 101 characters; at most 100 are allowed per text",
    ),
    (
        lambda e: e.encode("tiny-encoder", "x", output_dtype="int4"),
        InvalidInputError,
        r"output_dtype 'int4' is not supported; use one of float32, float16, int8, binary",
    ),
    (
        lambda e: e.encode("tiny-encoder", "x", dims=0),
        InvalidInputError,
        r"dims must be a positive integer up to 65,536, got 0",
    ),
    (
        lambda e: e.encode("tiny-encoder", "x", dims=64),
        InvalidInputError,
        r"dims=64 is larger than tiny-encoder's 32 dimensions; use a value from 1 to 32",
    ),
    (
        lambda e: e.encode(MINILM, "x", dims=1000),
        InvalidInputError,
        r"dims=1000 is larger than .*all-MiniLM-L6-v2's 384 dimensions",
    ),
    (
        lambda e: e.encode("tiny-encoder", "x", instruction=""),
        InvalidInputError,
        r"instruction must be a non-empty string",
    ),
    (lambda e: e.encode("", "x"), InvalidInputError, r"model must be a non-empty model id string"),
    (lambda e: e.score("tiny-reranker", "", ["x"]), InvalidInputError, r"query is empty"),
    (
        lambda e: e.score("tiny-reranker", ["q"], ["x"]),
        InvalidInputError,
        r"query must be one string or Item, not a list",
    ),
    (lambda e: e.score("tiny-reranker", "q", []), InvalidInputError, r"items is empty"),
    (
        lambda e: e.score("tiny-reranker", "q", ["x"], top_k=0),
        InvalidInputError,
        r"top_k must be a positive integer up to 100,000, got 0",
    ),
    (
        lambda e: e.extract("tiny-gliner", "x", labels=[]),
        InvalidInputError,
        r"labels are missing; name at least one entity type",
    ),
    (lambda e: e.extract("tiny-gliner", "x", labels=None), InvalidInputError, r"labels are missing"),
    (
        lambda e: e.extract("tiny-gliner", "x", labels=["a", " "]),
        InvalidInputError,
        r"labels\[1\] is ' '; every label must be a non-empty string",
    ),
    (
        lambda e: e.extract("tiny-gliner", "x", labels=["a", "b", "c", "d"]),
        InvalidInputError,
        r"4 labels given; at most 3 are allowed per call",
    ),
    (
        lambda e: e.extract("tiny-gliner", "x", labels=["a"], threshold=1.5),
        InvalidInputError,
        r"threshold must be between 0 and 1, got 1.5",
    ),
    (
        lambda e: e.extract("tiny-gliner", "x", labels=["a"], threshold=-0.1),
        InvalidInputError,
        r"threshold must be between 0 and 1",
    ),
    (
        lambda e: e.extract("tiny-gliner", "x", labels=["a"], threshold="high"),
        InvalidInputError,
        r"threshold must be a number from 0 to 1, got 'high'",
    ),
    (
        lambda e: e.list_models(task="summarize"),
        InvalidInputError,
        r"task 'summarize' is not known; use one of encode, score, extract",
    ),
    (lambda e: e.encode("urchade/gliner_multi-v2.1", "x"), WrongTaskError, r"is an extract model and cannot encode"),
    (
        lambda e: e.extract("urchade/gliner_multi-v2.1", "x", labels=["a"]),
        ModelLoadError,
        r"is not available: looked in the Hugging Face cache .*offline mode.*sie-agents pull urchade/gliner_multi-v2.1",
    ),
]


@pytest.mark.parametrize(("call", "error", "pattern"), CASES, ids=[c[2][:40] for c in CASES])
def test_bad_input_raises_a_clear_error_and_the_engine_keeps_serving(engine, call, error, pattern):
    with pytest.raises(error, match=pattern) as info:
        call(engine)
    assert isinstance(info.value, SieError)
    assert info.value.code and info.value.status >= 400
    assert engine.encode("tiny-encoder", "still serving").dims == 32


def test_input_errors_are_value_errors_too(engine):
    with pytest.raises(ValueError):
        engine.encode("tiny-encoder", [])


def test_codes_and_statuses():
    assert (InvalidInputError.code, InvalidInputError.status) == ("INVALID_INPUT", 400)
    assert (UnknownModelError.code, UnknownModelError.status) == ("MODEL_NOT_FOUND", 404)
    assert (ModelLoadError.code, ModelLoadError.status) == ("MODEL_LOAD_FAILED", 502)
    assert (OverloadedError.code, OverloadedError.status) == ("QUEUE_FULL", 503)


def test_overloaded_when_the_queue_is_full(tiny_models):
    config = EngineConfig(
        device="cpu",
        offline=True,
        max_queue_items=4,
        max_batch_size=1,
        models=(ModelSpec(id="tiny-encoder", task="encode", path=str(tiny_models["encoder"])),),
    )
    with Engine(config) as engine:
        engine.load("tiny-encoder")

        async def flood():
            return await asyncio.gather(
                *(engine.aencode("tiny-encoder", [f"t{i}", f"u{i}"]) for i in range(20)), return_exceptions=True
            )

        results = asyncio.run(flood())
        errors = [r for r in results if isinstance(r, Exception)]
        served = [r for r in results if not isinstance(r, Exception)]
        assert errors and served
        assert all(isinstance(e, OverloadedError) for e in errors)
        assert "is overloaded" in str(errors[0]) and "limit 4" in str(errors[0])
        assert errors[0].retry_after == 1.0
        assert engine.encode("tiny-encoder", "after the flood").dims == 32


def test_model_policy_for_servers(tiny_models):
    config = EngineConfig(
        device="cpu",
        offline=True,
        allow_any_model=False,
        allow_local_paths=False,
        models=(ModelSpec(id="tiny-encoder", task="encode", path=str(tiny_models["encoder"])),),
    )
    with Engine(config) as engine:
        with pytest.raises(UnknownModelError, match=r"is a local path, and this server does not load arbitrary paths"):
            engine.encode(str(tiny_models["encoder"]), "x")
        with pytest.raises(UnknownModelError, match=r"'someone/else' is not served here; available: .*tiny-encoder"):
            engine.encode("someone/else", "x")
        assert engine.encode("tiny-encoder", "configured models still work").dims == 32


def test_unknown_hub_id_offline_says_where_it_looked(engine):
    with pytest.raises(ModelLoadError, match=r"'someone/missing-model' is not available: looked in .*offline mode"):
        engine.encode("someone/missing-model", "x")


def test_local_folder_that_is_not_a_model(engine, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match=r"holds no weights a usable backend can read"):
        engine.encode(str(tmp_path), "x")
