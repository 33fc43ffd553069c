"""Hostile inputs for the fuzz suite, each with the verdict the specification gives it.

Three things live here, all deterministic for a given seed:

* **Verdicts.** :func:`verdict_of` says whether a value of a named argument is ``VALID`` (the call must
  succeed), ``INVALID`` (it must fail cleanly: a ``SieError`` / a tool error / a 4xx envelope) or ``EITHER``
  (both are acceptable, but nothing else is). The rules restate the README and ``sie_core.requests``: strict
  types (no ``true`` for 1, no ``"10"`` for 10), bounds, unknown fields rejected, texts non-blank, at most
  200,000 characters, UTF-8 encodable (no lone surrogates).
* **Hypothesis strategies** for in-process engine calls and MCP tool calls (:func:`engine_calls`,
  :func:`tool_calls`).
* **Generated corpora** of raw HTTP requests (:func:`http_corpus`) and raw JSON-RPC lines
  (:func:`stdio_corpus`): deep nesting (JSON and MessagePack), surrogates in keys and values, NUL and
  zero-width characters, huge strings and lists, truncated or wrong-typed MessagePack, wrong content types,
  traversal-looking model ids, wrong methods, unknown routes; valid calls are interleaved and name the
  reference their answer must equal (:data:`VALID_CALLS`).
"""

from __future__ import annotations

import enum
import json
import math
import random
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import msgpack
from hypothesis import strategies as st

# ---------------------------------------------------------------------------------------------- the models
ENCODER = "tiny-encoder"
RERANKER = "tiny-reranker"
EXTRACTOR = "tiny-gliner"
TASK_MODEL = {"encode": ENCODER, "score": RERANKER, "extract": EXTRACTOR}
#: Catalog models of each task, used as the wrong model for the other tasks (refused without loading anything).
CATALOG_OF = {
    "encode": "sentence-transformers/all-MiniLM-L6-v2",
    "score": "cross-encoder/ms-marco-MiniLM-L6-v2",
    "extract": "urchade/gliner_multi-v2.1",
}
ENCODER_DIMS = 32
MAX_TEXT_CHARS = 200_000
ENGINE_MAX_ITEMS = 2048
MCP_MAX_ITEMS = 256
MAX_LABELS = 64
#: Longest text a *valid* extract call gets here: longer ones are split into many windows, which is the
#: starvation test's subject, not this suite's.
EXTRACT_VALID_CHARS = 3000


class Verdict(enum.Enum):
    """What the specification says a call with this input must do."""

    VALID = "valid"
    INVALID = "invalid"
    EITHER = "either"


VALID, INVALID, EITHER = Verdict.VALID, Verdict.INVALID, Verdict.EITHER


def combine(verdicts: Iterator[Verdict] | Sequence[Verdict]) -> Verdict:
    """One invalid part makes the call invalid; otherwise one uncertain part makes it uncertain."""
    seen = set(verdicts)
    if INVALID in seen:
        return INVALID
    return EITHER if EITHER in seen else VALID


# ---------------------------------------------------------------------------------------------- pools
SURROGATES = ["\ud800", "\udfff", "x\ud83dy", "\udc00\ud800", "ok \udbff"]
INVISIBLE = [
    "\x00",
    "a\x00b",
    "\u200b",
    "zero\u200bwidth\u200djoin\u200cnon",
    "\ufeffbom",
    "\u202eevil\u202c",
    "\u2060word",
    "\x7f\x1b[31mred\x1b[0m",
    "tab\tnew\nline\rret",
    "\U000e0041tag",
]
BLANK = ["", " ", "\t\n ", "\u3000", "\xa0\u2003"]
NUMERIC_STRINGS = ["10", "-1", "0", "1e3", "0x10", "1_000", " 5 ", "NaN", "inf", "true", "false", "null", "[]", "{}"]
TRAVERSAL = [
    "../../etc/passwd",
    "..",
    "../",
    "%2e%2e/%2e%2e/etc/passwd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%2f..%2fetc%2fpasswd",
    "/etc/passwd",
    "/",
    "~",
    "~/.ssh/id_rsa",
    "~root",
    "..\\..\\windows\\win.ini",
    "C:\\Windows\\System32\\config",
    "file:///etc/passwd",
    "./tiny-encoder",
    f"{ENCODER}/../{RERANKER}",
    f"{ENCODER}\x00.txt",
    "http://127.0.0.1:1/model",
    "org/model/../../../../../../tmp",
]
NUMBERS: list[Any] = [
    0,
    1,
    -1,
    2,
    ENCODER_DIMS,
    ENCODER_DIMS + 1,
    65_536,
    65_537,
    100_000,
    100_001,
    2**31,
    2**63,
    2**64 + 1,
    10**30,
    -(10**30),
    0.0,
    -0.0,
    0.5,
    1.0,
    1.5,
    2.0,
    1e308,
    -1e308,
    5e-324,
    math.nan,
    math.inf,
    -math.inf,
]
#: JSON has no such numbers; bodies that carry them say so (json.dumps writes NaN / Infinity, which Python reads).
NON_FINITE = (math.nan, math.inf, -math.inf)
SCALARS: list[Any] = [None, True, False, *NUMBERS, *NUMERIC_STRINGS, *BLANK, *SURROGATES, *INVISIBLE, *TRAVERSAL]


def nested(depth: int, kind: str = "list", leaf: Any = 1) -> Any:
    """``[[[...leaf...]]]`` or ``{"a": {"a": ...}}`` ``depth`` levels deep (built without recursion)."""
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


def depth_of(value: Any) -> int:
    """Nesting depth of lists and dicts (iterative, so very deep values are fine)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend((v, level + 1) for v in item)
            deepest = max(deepest, level + 1)
        elif isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
            deepest = max(deepest, level + 1)
    return deepest


def has_surrogate(value: Any) -> bool:
    """Whether any string (or dict key) inside ``value`` holds a lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not _encodable(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ---------------------------------------------------------------------------------------------- verdicts
def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_number(v: Any) -> bool:
    return type(v) in (int, float)


def text_verdict(v: Any, max_chars: int = MAX_TEXT_CHARS) -> Verdict:
    """A text: a non-blank string of at most ``max_chars`` characters that UTF-8 can carry."""
    if type(v) is not str:
        return INVALID
    if not v.strip() or len(v) > MAX_TEXT_CHARS or not _encodable(v):
        return INVALID
    return VALID if len(v) <= max_chars else EITHER


def _item_verdict(v: Any, max_chars: int) -> Verdict:
    if type(v) is str:
        return text_verdict(v, max_chars)
    if type(v) is not dict:
        return INVALID
    if set(v) - {"text", "id", "metadata"} or "text" not in v:
        return INVALID
    parts = [text_verdict(v["text"], max_chars)]
    if "id" in v:
        item_id = v["id"]
        parts.append(VALID if item_id is None or (type(item_id) is str and _encodable(item_id)) else INVALID)
        if type(item_id) is str and not _encodable(item_id):
            parts[-1] = EITHER  # an id is echoed, never tokenized: refusing or escaping it are both fine
    if "metadata" in v:
        meta = v["metadata"]
        parts.append(VALID if meta is None or (type(meta) is dict and depth_of(meta) <= 20) else INVALID)
        if type(meta) is dict and depth_of(meta) > 20:
            parts[-1] = EITHER
    return combine(parts)


def items_verdict(
    v: Any, *, max_items: int = ENGINE_MAX_ITEMS, max_chars: int = MAX_TEXT_CHARS, strings_only: bool = False
) -> Verdict:
    """``items``: one text or Item, or a list of 1..max_items of them (``strings_only``: a list of strings)."""
    if not strings_only and type(v) in (str, dict):
        return _item_verdict(v, max_chars)
    if type(v) not in (list, tuple) or not 1 <= len(v) <= max_items:
        return INVALID
    if strings_only:
        return combine([text_verdict(x, max_chars) for x in v])
    return combine([_item_verdict(x, max_chars) for x in v])


def model_verdict(v: Any, task: str) -> Verdict:
    """``model``: omitted / null (the default), or the id of a served model of this task."""
    if v is None:
        return VALID
    if type(v) is not str:
        return INVALID
    if v == TASK_MODEL[task]:
        return VALID
    if v.strip().lower() == TASK_MODEL[task]:
        return EITHER
    return INVALID


def _bool(v: Any) -> Verdict:
    return VALID if type(v) is bool else INVALID


def _opt_bool(v: Any) -> Verdict:
    return VALID if v is None or type(v) is bool else INVALID


def _dims(v: Any) -> Verdict:
    return VALID if v is None or (_is_int(v) and 1 <= v <= ENCODER_DIMS) else INVALID


def _top_k(v: Any) -> Verdict:
    return VALID if v is None or (_is_int(v) and 1 <= v <= 100_000) else INVALID


def _threshold(v: Any) -> Verdict:
    return VALID if _is_number(v) and math.isfinite(v) and 0.0 <= v <= 1.0 else INVALID


def _output_dtype(v: Any) -> Verdict:
    return VALID if type(v) is str and v in ("float32", "float16", "int8", "binary") else INVALID


def _output_types(v: Any) -> Verdict:
    if type(v) not in (list, tuple) or not 1 <= len(v) <= 3:
        return INVALID
    # a dense encoder produces dense only: sparse / multivector are refused by its family
    return VALID if all(type(x) is str and x == "dense" for x in v) else INVALID


def _instruction(v: Any) -> Verdict:
    if v is None:
        return VALID
    if type(v) is not str or not 1 <= len(v) <= 2000 or not _encodable(v):
        return INVALID
    return VALID if v.strip() else EITHER


def _labels(v: Any) -> Verdict:
    values = [v] if type(v) is str else v
    if type(values) not in (list, tuple) or not 1 <= len(values) <= MAX_LABELS:
        return INVALID
    for label in values:
        if type(label) is not str or not label.strip() or len(label) > 200 or not _encodable(label):
            return INVALID
    return VALID


def _query_item(v: Any) -> Verdict:
    return INVALID if type(v) in (list, tuple) else _item_verdict(v, MAX_TEXT_CHARS)


def _query_str(v: Any) -> Verdict:
    return text_verdict(v)


def _literal(*allowed: Any) -> Callable[[Any], Verdict]:
    return lambda v: VALID if any(type(v) is type(a) and v == a for a in allowed) else INVALID


def _opt_literal(*allowed: Any) -> Callable[[Any], Verdict]:
    check = _literal(*allowed)
    return lambda v: VALID if v is None else check(v)


def _user(v: Any) -> Verdict:
    if v is None:
        return VALID
    if type(v) is not str or len(v) > 1000:
        return INVALID
    return VALID if _encodable(v) else EITHER


def _max_chunks(v: Any) -> Verdict:
    return VALID if v is None or (_is_int(v) and v >= 1) else INVALID


def _embeddings_input(v: Any) -> Verdict:
    if type(v) is str:
        return text_verdict(v)
    if type(v) is not list or not 1 <= len(v) <= ENGINE_MAX_ITEMS:
        return INVALID
    return combine([text_verdict(x) for x in v])


def _documents(v: Any) -> Verdict:
    if type(v) is not list or not 1 <= len(v) <= ENGINE_MAX_ITEMS:
        return INVALID
    return combine([_item_verdict(x, MAX_TEXT_CHARS) for x in v])


#: Option name -> verdict of a value (the names of sie_core.requests and of the HTTP bodies).
OPTION_VERDICTS: dict[str, Callable[[Any], Verdict]] = {
    "is_query": _bool,
    "normalize": _opt_bool,
    "dims": _dims,
    "dimensions": _dims,
    "top_k": _top_k,
    "top_n": _top_k,
    "threshold": _threshold,
    "flat_ner": _bool,
    "multi_label": _bool,
    "return_documents": _bool,
    "output_dtype": _output_dtype,
    "output_types": _output_types,
    "instruction": _instruction,
    "labels": _labels,
    "profile": _opt_literal("default"),
    "encoding_format": _literal("float", "base64"),
    "input_type": _opt_literal("query", "search_query", "document", "search_document", "passage"),
    "user": _user,
    "max_chunks_per_doc": _max_chunks,
    "input": _embeddings_input,
    "documents": _documents,
}

#: The options of each engine call (what :func:`engine_calls` varies).
ENGINE_OPTIONS = {
    "encode": ("output_types", "instruction", "is_query", "normalize", "output_dtype", "dims"),
    "score": ("top_k",),
    "extract": ("labels", "threshold", "flat_ner", "multi_label"),
}
#: The arguments of each MCP tool (``sie_mcp.server``) and the verdict of each.
TOOL_ARGS: dict[str, tuple[str, ...]] = {
    "encode": ("texts", "model", "is_query", "instruction", "normalize", "dims", "output_dtype", "output_types"),
    "rerank": ("query", "documents", "model", "top_k"),
    "extract": ("labels", "text", "texts", "model", "threshold", "flat_ner", "multi_label"),
    "list_models": ("task",),
}
TOOL_TASK = {"encode": "encode", "rerank": "score", "extract": "extract"}


def _task_verdict(v: Any) -> Verdict:
    if v is None:
        return VALID
    if type(v) is not str:
        return INVALID
    return VALID if v.strip().lower() in ("encode", "score", "rerank", "extract") else INVALID


def engine_verdict(task: str, model: Any, items: Any, options: Mapping[str, Any]) -> Verdict:
    """The verdict of ``Engine.<task>(model, items, **options)`` (``query`` in options for score)."""
    allowed = set(ENGINE_OPTIONS[task]) | ({"query"} if task == "score" else set())
    max_chars = EXTRACT_VALID_CHARS if task == "extract" else MAX_TEXT_CHARS
    parts = [model_verdict(model, task), items_verdict(items, max_chars=max_chars)]
    for name, value in options.items():
        if name not in allowed:
            parts.append(INVALID)
        elif name == "query":
            parts.append(_query_item(value))
        else:
            parts.append(OPTION_VERDICTS[name](value))
    if task == "extract" and "labels" not in options:
        parts.append(INVALID)
    if task == "score" and "query" not in options:
        parts.append(INVALID)
    return combine(parts)


def tool_verdict(tool: str, arguments: Mapping[str, Any]) -> Verdict:
    """The verdict of an MCP ``tools/call`` of ``tool`` with ``arguments``."""
    if tool == "list_models":
        unknown = set(arguments) - {"task"}
        return INVALID if unknown else _task_verdict(arguments.get("task"))
    parts: list[Verdict] = []
    task = TOOL_TASK[tool]
    max_chars = EXTRACT_VALID_CHARS if tool == "extract" else MAX_TEXT_CHARS
    for name, value in arguments.items():
        if name not in TOOL_ARGS[tool]:
            parts.append(INVALID)
        elif name == "model":
            parts.append(model_verdict(value, task))
        elif name in ("texts", "documents"):
            parts.append(
                items_verdict(value, max_items=MCP_MAX_ITEMS, max_chars=max_chars, strings_only=True)
                if not (tool == "extract" and value is None)
                else VALID
            )
        elif name == "text":
            parts.append(VALID if value is None else text_verdict(value, max_chars))
        elif name == "query":
            parts.append(_query_str(value))
        else:
            parts.append(OPTION_VERDICTS[name](value))
    required = {"encode": ("texts",), "rerank": ("query", "documents"), "extract": ("labels",)}[tool]
    if any(name not in arguments for name in required):
        parts.append(INVALID)
    if tool == "extract" and (arguments.get("text") is None) == (arguments.get("texts") is None):
        parts.append(INVALID)
    return combine(parts)


# ---------------------------------------------------------------------------------------------- hypothesis
_LONG = st.builds(
    lambda unit, n: unit * n,
    st.sampled_from(["a", "word ", "\u200b", "é", "\U0001f600", " ", "\x00"]),
    st.sampled_from([300, 2_999, 40_000, MAX_TEXT_CHARS // 5 + 1]),
)
_OVER_LIMIT = st.sampled_from(["x" * (MAX_TEXT_CHARS + 1), "ab " * (MAX_TEXT_CHARS // 3 + 1)])


def _json_ish(*, surrogates: bool) -> st.SearchStrategy[Any]:
    """Hostile JSON-ish values: scalars from the pools and random ones, in small lists and dicts."""
    # hypothesis leaves lone surrogates out of text unless asked (exclude_categories=() asks)
    chars = st.characters(exclude_categories=()) if surrogates else st.characters()
    pool = [*NUMERIC_STRINGS, *BLANK, *INVISIBLE, *TRAVERSAL, *(SURROGATES if surrogates else [])]
    strings = st.one_of(st.sampled_from(pool), st.text(alphabet=chars, max_size=24), _LONG, _OVER_LIMIT)
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from(NUMBERS),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        strings,
    )
    key_pool = ["text", "id", "metadata", "items", "a", "", "\x00", "\u200b", "TEXT", "images"]
    keys = st.one_of(
        st.sampled_from(key_pool + (["\ud800"] if surrogates else [])), st.text(alphabet=chars, max_size=8)
    )
    return st.recursive(
        scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=10
    )


json_ish = _json_ish(surrogates=True)


@dataclass(frozen=True)
class Deep:
    """A placeholder for a value nested ``depth`` levels deep; :func:`materialize` builds it.

    Strategies draw the placeholder, not the value, so that hypothesis can print a failing example (its
    printer, like ``repr``, recurses and cannot show a 3,000-level list).
    """

    depth: int
    kind: str = "list"


def materialize(value: Any) -> Any:
    """``value`` with every :class:`Deep` placeholder replaced by the nested value it stands for."""
    if isinstance(value, Deep):
        return nested(value.depth, value.kind)
    if isinstance(value, list):
        return [materialize(v) for v in value]
    if isinstance(value, tuple):
        return tuple(materialize(v) for v in value)
    if isinstance(value, dict):
        return {k: materialize(v) for k, v in value.items()}
    return value


deep_values = st.builds(Deep, st.sampled_from([30, 200, 1_000, 3_000]), st.sampled_from(["list", "dict"]))
hostile = st.one_of(json_ish, deep_values)
#: What the in-memory MCP client can send: it refuses values nested deeper than about 250 levels (pydantic's
#: serialization limit) and strings with lone surrogates (it encodes UTF-8). Those reach the server as raw lines
#: in the stdio corpus instead.
hostile_for_mcp = st.one_of(
    _json_ish(surrogates=False), st.builds(Deep, st.sampled_from([30, 200]), st.sampled_from(["list", "dict"]))
)

_WORDS = [
    "Invoice 4471 is due.",
    "Berlin office revenue",
    "Alice works for Globex.",
    "fox",
    "zero\u200bwidth",
    "a\x00b",
]
valid_texts = st.sampled_from(_WORDS)
valid_items = st.one_of(
    valid_texts,
    st.lists(valid_texts, min_size=1, max_size=4),
    st.lists(st.builds(lambda t, i: {"text": t, "id": i}, valid_texts, st.sampled_from(["a", "b", "\u200b"]))),
)
_VALID_OPTIONS: dict[str, st.SearchStrategy[Any]] = {
    "output_types": st.just(["dense"]),
    "instruction": st.sampled_from([None, "Represent this for retrieval: ", "query: "]),
    "is_query": st.booleans(),
    "normalize": st.sampled_from([None, True, False]),
    "output_dtype": st.sampled_from(["float32", "float16", "int8", "binary"]),
    "dims": st.sampled_from([None, 1, 8, ENCODER_DIMS]),
    "top_k": st.sampled_from([None, 1, 2, 100_000]),
    "labels": st.sampled_from([["person"], ["person", "organization"], "date", ("city",)]),
    "threshold": st.sampled_from([0, 0.0, 0.3, 0.5, 1, 1.0]),
    "flat_ner": st.booleans(),
    "multi_label": st.booleans(),
    "query": st.sampled_from(["Berlin office revenue", {"text": "revenue", "id": "q"}]),
}


def _value(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(valid, valid, hostile)


def _models(task: str) -> st.SearchStrategy[Any]:
    others = [m for t, m in TASK_MODEL.items() if t != task] + [m for t, m in CATALOG_OF.items() if t != task]
    return st.one_of(
        st.sampled_from([None, TASK_MODEL[task], TASK_MODEL[task]]),
        st.sampled_from([*others, *TRAVERSAL, "", " ", TASK_MODEL[task] + "\x00", "x" * 301, "acme/none"]),
        hostile,
    )


def _mcp_models(task: str) -> st.SearchStrategy[Any]:
    others = [m for t, m in TASK_MODEL.items() if t != task] + [m for t, m in CATALOG_OF.items() if t != task]
    return st.sampled_from([None, TASK_MODEL[task], *others, *TRAVERSAL, "", "null", TASK_MODEL[task] + "\x00"])


@st.composite
def engine_calls(draw: st.DrawFn, task: str) -> tuple[Any, Any, dict[str, Any]]:
    """``(model, items, options)`` for ``Engine.<task>``: each part valid or hostile, options sometimes unknown.

    ``score`` always gets a ``query`` and never an unknown keyword: it is a positional argument there and its
    only option is ``top_k`` (Python itself refuses other keywords with a TypeError, by design).
    """
    model = draw(_models(task))
    items = draw(_value(valid_items))
    options: dict[str, Any] = {}
    if task == "score":
        options["query"] = draw(_value(_VALID_OPTIONS["query"]))
    for name in ENGINE_OPTIONS[task]:
        if draw(st.integers(0, 9)) < (8 if name == "labels" else 4):
            options[name] = draw(_value(_VALID_OPTIONS[name]))
    if task != "score" and draw(st.integers(0, 11)) == 0:
        options[draw(st.sampled_from(["top_n", "bogus", "Dims", "is query", "\ud800", "texts"]))] = draw(hostile)
    return model, items, options


_VALID_TOOL_ARGS: dict[str, st.SearchStrategy[Any]] = {
    **_VALID_OPTIONS,
    "texts": st.lists(valid_texts, min_size=1, max_size=4),
    "documents": st.lists(valid_texts, min_size=1, max_size=4),
    "query": valid_texts,
    "text": valid_texts,
    "task": st.sampled_from([None, "encode", "score", "rerank", "extract", " Encode "]),
    "labels": st.sampled_from([["person"], ["person", "organization"], "date"]),
}


@st.composite
def tool_calls(draw: st.DrawFn, tool: str) -> dict[str, Any]:
    """Arguments for MCP ``tools/call`` of ``tool``: each valid, hostile or left out; sometimes unknown ones."""
    arguments: dict[str, Any] = {}
    for name in TOOL_ARGS[tool]:
        if tool == "extract" and name == "texts":
            chance = 2 if "text" in arguments else 8
        elif tool == "extract" and name == "text":
            chance = 6
        else:
            chance = 9 if name in ("texts", "query", "documents", "labels") else 3
        if draw(st.integers(0, 9)) < chance:
            valid = _mcp_models(TOOL_TASK[tool]) if name == "model" else _VALID_TOOL_ARGS[name]
            arguments[name] = draw(st.one_of(valid, valid, hostile_for_mcp))
    if draw(st.integers(0, 9)) == 0:
        arguments[draw(st.sampled_from(["top_n", "bogus", "item", "Texts", "\u200b", ""]))] = draw(hostile_for_mcp)
    return arguments


# ---------------------------------------------------------------------------------------------- valid calls
@dataclass(frozen=True)
class EncodeCall:
    """A valid encode; its vectors must equal the reference within 1e-5."""

    texts: tuple[str, ...]
    is_query: bool = False
    dims: int | None = None


@dataclass(frozen=True)
class ScoreCall:
    """A valid rerank; every document's score must equal the reference, best first."""

    query: str
    docs: tuple[str, ...]


@dataclass(frozen=True)
class ExtractCall:
    """A valid extract; its entities must equal the reference."""

    text: str
    labels: tuple[str, ...]
    threshold: float


DOCS = (
    "Berlin office revenue grew in the second quarter.",
    "The quick brown fox jumps over the lazy dog.",
    "Invoice 4471 from Acme GmbH is due on 30 June.",
    "Payment terms: net 30 days after the invoice date.",
)
VALID_CALLS: tuple[EncodeCall | ScoreCall | ExtractCall, ...] = (
    EncodeCall(("Invoice 4471 from Acme GmbH is due on 30 June.",)),
    EncodeCall(("Berlin office revenue", "Machine learning models turn text into vectors."), is_query=True),
    EncodeCall(("a\x00b zero\u200bwidth", "\ufeffbom and \u202eoverride", "tab\tand\nnewline")),
    EncodeCall(("Contact bob@example.com or call +49 30 1234567.",), dims=8),
    ScoreCall("Berlin office revenue", DOCS),
    ScoreCall("When is the invoice due?", DOCS[2:] + DOCS[:2]),
    ExtractCall("Alice Smith works for Globex Corporation in Paris.", ("person", "organization"), 0.3),
    ExtractCall("Invoice 4471 from Acme GmbH is due on 30 June.", ("date", "organization", "number"), 0.3),
)


# ---------------------------------------------------------------------------------------------- rng values
def random_hostile(rng: random.Random, *, depth: int = 0) -> Any:
    """One hostile JSON-ish value from the pools, drawn with ``rng`` (the corpora's twin of :data:`hostile`)."""
    roll = rng.random()
    if roll < 0.45 or depth >= 3:
        return rng.choice(SCALARS)
    if roll < 0.55:
        return rng.choice(["x" * (MAX_TEXT_CHARS + 1), "word " * rng.choice([100, 2_000]), "\u200b" * 500])
    if roll < 0.65:
        # json.dumps recurses: deeper values are spliced in as text by the corpora themselves (Raw)
        return nested(rng.choice([5, 50, 200, 500]), rng.choice(["list", "dict"]))
    if roll < 0.8:
        return [random_hostile(rng, depth=depth + 1) for _ in range(rng.randint(0, 3))]
    keys = ["text", "a", "", "\x00", "\ud800", "\u200b", "items", rng.choice(TRAVERSAL)]
    return {rng.choice(keys): random_hostile(rng, depth=depth + 1) for _ in range(rng.randint(0, 3))}


# ---------------------------------------------------------------------------------------------- HTTP corpus
JSON_TYPE = "application/json"
MSGPACK_TYPE = "application/msgpack"


@dataclass
class HttpCase:
    """One request of the HTTP corpus.

    Attributes:
        kind: Category, for the summary and for routing failures.
        method: HTTP method.
        path: The raw request target (sent as is, percent-escapes and dot segments included).
        body: The raw body.
        headers: Extra headers (the auth header is added by the runner unless ``auth`` says otherwise).
        verdict: What the answer must be: VALID = 200 (and ``expect`` equal to its reference), INVALID = a 4xx
            envelope, EITHER = one of the two.
        expect: The valid call whose reference the answer must equal (VALID cases).
        statuses: Exact statuses allowed, where the case decides them (405, 404, 413, 401).
        auth: The Authorization header to send (None: none; the runner's default: the server's token).
        route: Which response shape to read for VALID answers (encode, score, extract, embeddings, rerank, models).
        chunked: Send the body with chunked transfer encoding (no Content-Length).
    """

    kind: str
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    verdict: Verdict = INVALID
    expect: EncodeCall | ScoreCall | ExtractCall | None = None
    statuses: frozenset[int] | None = None
    auth: str | None = "default"
    route: str = ""
    chunked: bool = False

    def repro(self, base: str) -> str:
        """A one-line Python repro (httpx, with the server's token unless the case is about the token)."""
        body = self.body if len(self.body) <= 1000 else self.body[:200] + b"...<%d bytes>" % len(self.body)
        headers = dict(self.headers)
        if self.auth != "default":
            headers["Authorization"] = self.auth or "<none>"
        line = f"httpx.request({self.method!r}, {base!r} + {self.path!r}, content={body!r}, headers={headers!r})"
        if any(segment in (".", "..") for segment in self.path.split("/")):
            line += "  # dot segments: httpx resolves them, send with a raw socket or curl --path-as-is"
        return line


def _dumps(value: Any) -> bytes:
    # ensure_ascii keeps lone surrogates as \udXXX escapes (what a hostile client sends); NaN stays NaN
    return json.dumps(value, ensure_ascii=True, allow_nan=True).encode("ascii")


def _deep_json(depth: int, kind: str) -> bytes:
    opener, closer = ("[", "]") if kind == "list" else ('{"a":', "}")
    return (opener * depth + "1" + closer * depth).encode()


def _deep_msgpack(depth: int, kind: str) -> bytes:
    return (b"\x91" if kind == "list" else b"\x81\xa1a") * depth + b"\x01"


def _packable(value: Any) -> bool:
    try:
        msgpack.packb(value, use_bin_type=True)
    except (UnicodeEncodeError, OverflowError, TypeError, ValueError):
        return False
    return True


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _encode_body(call: EncodeCall) -> dict[str, Any]:
    options: dict[str, Any] = {"is_query": call.is_query}
    if call.dims is not None:
        options["dims"] = call.dims
    return {"items": [{"text": t} for t in call.texts], "params": {"options": options}}


def _score_body(call: ScoreCall) -> dict[str, Any]:
    return {"query": {"text": call.query}, "items": [{"text": d} for d in call.docs]}


def _extract_body(call: ExtractCall) -> dict[str, Any]:
    return {"items": [{"text": call.text}], "params": {"labels": list(call.labels), "threshold": call.threshold}}


def valid_http_cases() -> list[HttpCase]:
    """Every valid call over each route that can carry it, in JSON and (SIE routes) MessagePack."""
    cases: list[HttpCase] = []
    for call in VALID_CALLS:
        if isinstance(call, EncodeCall):
            sie = ("encode", f"/v1/encode/{ENCODER}", _encode_body(call))
            openai: dict[str, Any] = {"input": list(call.texts), "model": ENCODER}
            if call.is_query:
                openai["input_type"] = "query"
            if call.dims is not None:
                openai["dimensions"] = call.dims
            extra = [("embeddings", "/v1/embeddings", openai)]
        elif isinstance(call, ScoreCall):
            sie = ("score", f"/v1/score/{RERANKER}", _score_body(call))
            extra = [("rerank", "/v1/rerank", {"query": call.query, "documents": list(call.docs), "model": RERANKER})]
        else:
            sie = ("extract", f"/v1/extract/{EXTRACTOR}", _extract_body(call))
            extra = []
        route, path, body = sie
        cases.append(
            HttpCase("valid", "POST", path, _dumps(body), {"Content-Type": JSON_TYPE}, VALID, call, route=route)
        )
        cases.append(
            HttpCase(
                "valid-msgpack",
                "POST",
                path,
                _pack(body),
                {"Content-Type": MSGPACK_TYPE, "Accept": MSGPACK_TYPE},
                VALID,
                call,
                route=route,
            )
        )
        for route, path, body in extra:
            cases.append(
                HttpCase("valid", "POST", path, _dumps(body), {"Content-Type": JSON_TYPE}, VALID, call, route=route)
            )
    cases.append(HttpCase("valid", "GET", "/v1/models", verdict=VALID, route="models"))
    cases.append(HttpCase("valid", "GET", f"/v1/models/{ENCODER}", verdict=VALID, route="model"))
    return cases


_TEMPLATES: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
    "encode": (f"/v1/encode/{ENCODER}", lambda: _encode_body(EncodeCall(("fuzz text",)))),
    "score": (f"/v1/score/{RERANKER}", lambda: _score_body(ScoreCall("fuzz", DOCS[:2]))),
    "extract": (f"/v1/extract/{EXTRACTOR}", lambda: _extract_body(ExtractCall("Alice in Paris.", ("person",), 0.5))),
    "embeddings": ("/v1/embeddings", lambda: {"input": ["fuzz text"], "model": ENCODER}),
    "rerank": ("/v1/rerank", lambda: {"query": "fuzz", "documents": list(DOCS[:2]), "model": RERANKER}),
}
#: Where each body's fields are and how to judge them: (path into the body, verdict of a value there).
_FIELDS: dict[str, list[tuple[tuple[Any, ...], Callable[[Any], Verdict]]]] = {
    "encode": [
        (("items",), lambda v: items_verdict(v)),
        (("items", 0), lambda v: _item_verdict(v, MAX_TEXT_CHARS)),
        (("items", 0, "text"), text_verdict),
        (("items", 0, "id"), lambda v: _item_verdict({"text": "t", "id": v}, MAX_TEXT_CHARS)),
        (("items", 0, "metadata"), lambda v: _item_verdict({"text": "t", "metadata": v}, MAX_TEXT_CHARS)),
        (("params",), lambda v: VALID if v == {} else INVALID),
        (("params", "options"), lambda v: VALID if v == {} else INVALID),
        *[(("params", n), OPTION_VERDICTS[n]) for n in ("output_types", "instruction", "output_dtype", "dims")],
        *[(("params", "options", n), OPTION_VERDICTS[n]) for n in ("is_query", "normalize", "dims", "profile")],
    ],
    "score": [
        (("query",), _query_item),
        (("query", "text"), text_verdict),
        (("items",), lambda v: items_verdict(v)),
        (("items", 1, "text"), text_verdict),
        (("top_k",), _top_k),
        (("options",), lambda v: VALID if v == {} else INVALID),
        (("options", "top_k"), _top_k),
        (("options", "profile"), OPTION_VERDICTS["profile"]),
    ],
    "extract": [
        (("items",), lambda v: items_verdict(v, max_chars=EXTRACT_VALID_CHARS)),
        (("items", 0, "text"), lambda v: text_verdict(v, EXTRACT_VALID_CHARS)),
        (("params",), lambda v: INVALID),
        (("params", "labels"), _labels),
        (("params", "threshold"), _threshold),
        *[(("params", "options", n), OPTION_VERDICTS[n]) for n in ("threshold", "flat_ner", "multi_label")],
    ],
    "embeddings": [
        (("input",), _embeddings_input),
        (("input", 0), text_verdict),
        (("model",), lambda v: model_verdict(v, "encode")),
        *[((n,), OPTION_VERDICTS[n]) for n in ("dimensions", "encoding_format", "user", "input_type")],
    ],
    "rerank": [
        (("query",), _query_str),
        (("documents",), _documents),
        (("documents", 0), lambda v: _item_verdict(v, MAX_TEXT_CHARS)),
        (("model",), lambda v: model_verdict(v, "score")),
        *[((n,), OPTION_VERDICTS[n]) for n in ("top_n", "return_documents", "max_chunks_per_doc")],
    ],
}


def _set_in(body: dict[str, Any], where: tuple[Any, ...], value: Any) -> None:
    target: Any = body
    for key in where[:-1]:
        if isinstance(key, str) and key not in target:
            target[key] = {}
        target = target[key]
    target[where[-1]] = value


def mutated_http_cases(rng: random.Random, count: int) -> list[HttpCase]:
    """``count`` bodies: a valid template with one field replaced, removed, or an unknown field added."""
    cases: list[HttpCase] = []
    routes = sorted(_TEMPLATES)
    while len(cases) < count:
        route = rng.choice(routes)
        path, template = _TEMPLATES[route]
        body = template()
        roll = rng.random()
        if roll < 0.75:
            where, judge = rng.choice(_FIELDS[route])
            value = random_hostile(rng)
            _set_in(body, where, value)
            verdict, kind = judge(value), f"field:{route}.{'.'.join(map(str, where))}"
        elif roll < 0.85:
            container = rng.choice([(), *[w[:-1] for w, _ in _FIELDS[route] if len(w) > 1 and isinstance(w[-1], str)]])
            target: Any = body
            for key in container:
                target = target.setdefault(key, {}) if isinstance(key, str) else target[key]
            names = ["bogus", "top_n", "Items", "\x00", "\ud800", "\u200bitems", "dims "]
            if route == "rerank" and not container:
                names.remove("top_n")  # a real field of /v1/rerank
            target[rng.choice(names)] = 1
            verdict, kind = INVALID, f"unknown-field:{route}"
        else:
            required = {"encode": "items", "score": "query", "extract": "params", "embeddings": "input"}
            body.pop(required.get(route, "documents"))
            verdict, kind = INVALID, f"missing-field:{route}"
        as_msgpack = route in ("encode", "score", "extract") and rng.random() < 0.35 and _packable(body)
        if as_msgpack:
            raw, headers = _pack(body), {"Content-Type": MSGPACK_TYPE, "Accept": MSGPACK_TYPE}
        else:
            raw, headers = _dumps(body), {"Content-Type": JSON_TYPE}
        cases.append(HttpCase(kind, "POST", path, raw, headers, verdict, route=route))
    return cases


def fixed_http_cases(max_body_bytes: int) -> list[HttpCase]:
    """The hand-written categories of the issue, each hostile in one way."""
    j, m = {"Content-Type": JSON_TYPE}, {"Content-Type": MSGPACK_TYPE}
    enc, ext = f"/v1/encode/{ENCODER}", f"/v1/extract/{EXTRACTOR}"
    cases: list[HttpCase] = []
    add = cases.append

    # deep nesting, JSON and MessagePack, top level and inside fields
    for depth in (30, 200, 999, 1_000, 5_000, 100_000):
        for kind in ("list", "dict"):
            add(HttpCase("deep-json", "POST", "/v1/embeddings", _deep_json(depth, kind), j))
            add(HttpCase("deep-json", "POST", enc, b'{"items":' + _deep_json(depth, kind) + b"}", j))
            add(HttpCase("deep-msgpack", "POST", enc, _deep_msgpack(depth, kind), m))
            add(HttpCase("deep-msgpack", "POST", enc, b"\x81\xa5items" + _deep_msgpack(depth, kind), m))
        inner = b'{"text":"deep","metadata":' + _deep_json(depth, "dict") + b"}"
        add(HttpCase("deep-json-metadata", "POST", enc, b'{"items":[' + inner + b"]}", j, EITHER, route="encode"))
    add(HttpCase("deep-json", "POST", "/v1/rerank", b'{"query":' + _deep_json(50_000, "list") + b"}", j))
    add(
        HttpCase("deep-json", "POST", ext, b'{"items":["a"],"params":{"labels":' + _deep_json(3_000, "list") + b"}}", j)
    )

    # surrogates in keys and values (JSON escapes; MessagePack cannot carry them: invalid UTF-8 instead)
    for text_body in (
        '{"items":[{"\\ud800":1}]}',
        '{"items":[{"text":"a","\\udfff":1}]}',
        '{"\\ud800":1}',
        '{"items":["ok"],"params":{"\\ud83d":true}}',
        '{"items":["ok"],"params":{"options":{"\\udc00":1}}}',
        '{"items":["\\ud800 poisoned"]}',
        '{"items":[{"text":"x \\udfff y"}]}',
        '{"items":["ok"],"params":{"instruction":"\\ud800"}}',
    ):
        add(HttpCase("surrogate", "POST", enc, text_body.encode(), j))
    add(HttpCase("surrogate", "POST", ext, b'{"items":["Alice"],"params":{"labels":["\\ud800"]}}', j))
    add(HttpCase("surrogate", "POST", ext, b'{"items":["\\udbff"],"params":{"labels":["person"]}}', j))
    add(HttpCase("surrogate", "POST", "/v1/embeddings", b'{"input":["\\ud800"],"model":"tiny-encoder"}', j))
    add(HttpCase("surrogate", "POST", "/v1/embeddings", b'{"input":"ok","model":"\\ud800"}', j))
    add(HttpCase("surrogate", "POST", "/v1/rerank", b'{"query":"\\ud800","documents":["a"]}', j))
    add(HttpCase("surrogate", "POST", "/v1/rerank", b'{"query":"q","documents":["a",{"\\ud800":"b"}]}', j))
    add(HttpCase("surrogate", "POST", f"/v1/score/{RERANKER}", b'{"query":{"text":"q"},"items":["\\udfff"]}', j))
    add(HttpCase("surrogate-id", "POST", enc, b'{"items":[{"text":"ok","id":"\\ud800"}]}', j, EITHER, route="encode"))
    for raw in (b'{"items":["\xff\xfe"]}', b'{"items":["\xed\xa0\x80"]}', b'{"\xc3":1}', b"\xef\xbb\xbf{}"):
        add(HttpCase("invalid-utf8", "POST", enc, raw, j))
    add(HttpCase("invalid-utf8-msgpack", "POST", enc, b"\x81\xa5items\x91\xa2\xed\xa0", m))
    add(HttpCase("invalid-utf8-msgpack", "POST", enc, b"\x81\xa3\xff\xfe\xfd\x01", m))

    # NUL and zero-width characters: valid texts (they must encode), invalid keys and ids
    for text in ("a\x00b", "\u200b", "\ufeff", "\u202e", "\x00" * 10, "\u2060\u200d"):
        item_body = {"items": [{"text": text}]}
        add(HttpCase("nul-zero-width", "POST", enc, _dumps(item_body), j, VALID, EncodeCall((text,)), route="encode"))
        add(
            HttpCase(
                "nul-zero-width-msgpack",
                "POST",
                enc,
                _pack(item_body),
                {**m, "Accept": MSGPACK_TYPE},
                VALID,
                EncodeCall((text,)),
                route="encode",
            )
        )
    for body_value in ({"items": ["ok"], "\x00": 1}, {"items\x00": ["ok"]}, {"\u200bitems": ["ok"]}):
        add(HttpCase("nul-zero-width-key", "POST", enc, _dumps(body_value), j))
    add(HttpCase("nul-model", "POST", "/v1/embeddings", _dumps({"input": "ok", "model": "tiny-encoder\x00"}), j))
    add(
        HttpCase(
            "zero-width-model", "POST", "/v1/embeddings", _dumps({"input": "ok", "model": "\u200btiny-encoder"}), j
        )
    )

    # huge strings and lists, within and beyond the body limit
    add(HttpCase("huge-text", "POST", enc, _dumps({"items": ["x" * (MAX_TEXT_CHARS + 1)]}), j))
    add(HttpCase("huge-text", "POST", enc, _dumps({"items": ["word " * 40_000]}), j, VALID, route="encode"))
    add(
        HttpCase(
            "huge-text", "POST", "/v1/rerank", _dumps({"query": "q" * (MAX_TEXT_CHARS + 1), "documents": ["a"]}), j
        )
    )
    add(HttpCase("huge-list", "POST", enc, _dumps({"items": ["a"] * (ENGINE_MAX_ITEMS + 1)}), j))
    add(HttpCase("huge-list", "POST", "/v1/embeddings", _dumps({"input": list(range(100_000))}), j))
    add(HttpCase("huge-list", "POST", enc, _dumps({"items": [[]] * 100_000}), j))
    add(HttpCase("huge-list", "POST", ext, _dumps({"items": ["a"], "params": {"labels": ["l"] * 10_000}}), j))
    add(HttpCase("huge-list-msgpack", "POST", enc, _pack({"items": [1] * 300_000}), m))
    over = max_body_bytes + 1024
    limit = frozenset({413})
    add(HttpCase("over-limit", "POST", enc, _dumps({"items": ["y" * over]}), j, statuses=limit))
    add(HttpCase("over-limit", "POST", enc, _pack({"items": ["z" * over]}), m, statuses=limit))
    add(HttpCase("over-limit", "POST", "/v1/embeddings", b" " * over, j, statuses=limit))
    add(HttpCase("over-limit-chunked", "POST", enc, _dumps({"items": ["w" * over]}), j, statuses=limit, chunked=True))
    add(HttpCase("over-limit", "POST", "/v1/not-a-route", b"0" * over, j, statuses=frozenset({404, 413})))

    # truncated or wrong-typed MessagePack
    packed = _pack(_encode_body(EncodeCall(("truncate me please",), is_query=True)))
    for cut in sorted({1, 2, 5, 9, len(packed) // 2, len(packed) - 1}):
        add(HttpCase("truncated-msgpack", "POST", enc, packed[:cut], m))
    add(HttpCase("msgpack-extra-bytes", "POST", enc, packed + b"\x00", m))
    for value in ([1, 2], "items", 5, None, True, 1.5, b"bytes"):
        add(HttpCase("msgpack-top-level", "POST", enc, _pack(value), m))
    for raw in (
        b"\xc1",
        b"\x81\xa5items\xc4\x03abc",  # items as bin
        b"\x81\xa5items\xd4\x05\x00",  # items as an ext type
        b"\x81\xa5items\xd6\xff\x00\x00\x00\x00",  # a timestamp
        b"\x81\xc4\x05items\x91\xa2ok",  # a bin key
        b"\x81\x01\x91\xa2ok",  # an int key
        b"\x81\xc0\x91\xa2ok",  # a nil key
        b"\x81\x91\x01\x01",  # an array as key
        b"\xdd\xff\xff\xff\xff",  # array32 of 4 Gi elements, none sent
        b"\xdb\xff\xff\xff\xff",  # str32 of 4 GiB
        b"\xdf\xff\xff\xff\xff",  # map32 of 4 Gi pairs
        b"\x81\xa5items\x91\x82\xa4text\xa2ok\xa2nd\xc3",  # looks like a numpy value
    ):
        add(HttpCase("msgpack-wrong-type", "POST", enc, raw, m))
    nan_threshold = {"items": [{"text": "Alice"}], "params": {"labels": ["person"], "threshold": math.nan}}
    add(HttpCase("msgpack-nan", "POST", ext, _pack(nan_threshold), m))
    add(
        HttpCase(
            "msgpack-float-dims",
            "POST",
            enc,
            b"\x82\xa5items\x91\xa2ok\xa6params\x81\xa4dims\xcb" + struct.pack(">d", 8.0),
            m,
        )
    )

    # wrong content types
    valid = _dumps(_encode_body(EncodeCall(("content type",))))
    for ctype in ("text/xml", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "image/png"):
        add(HttpCase("content-type", "POST", enc, valid, {"Content-Type": ctype}))
    add(HttpCase("content-type", "POST", enc, valid, {"Content-Type": "application/msgpack"}))
    add(HttpCase("content-type", "POST", enc, packed, {"Content-Type": JSON_TYPE}))
    add(
        HttpCase("content-type", "POST", enc, b"items=a&items=b", {"Content-Type": "application/x-www-form-urlencoded"})
    )
    add(
        HttpCase(
            "content-type",
            "POST",
            enc,
            valid,
            {"Content-Type": "application/json; charset=utf-8"},
            EITHER,
            route="encode",
        )
    )
    add(HttpCase("content-type", "POST", enc, valid, {"Content-Type": "APPLICATION/JSON"}, EITHER, route="encode"))
    add(HttpCase("content-type", "POST", enc, valid, {"Content-Type": ""}, EITHER, route="encode"))
    add(
        HttpCase(
            "content-type",
            "POST",
            enc,
            valid,
            {"Content-Type": "application/json; charset=latin-1"},
            EITHER,
            route="encode",
        )
    )
    add(HttpCase("content-type", "POST", enc, b"", j))

    # traversal-looking model ids, in the path (raw: dot segments kept) and in bodies
    traversal_body = _dumps({"items": ["traversal"]})
    for route in ("encode", "score", "extract"):
        for model in TRAVERSAL + ["/tmp", "~/", "%00", "a%00b", "%ff", "..%00", "%2fetc%2fpasswd", "%5c..%5c", "."]:
            add(HttpCase("traversal-path", "POST", f"/v1/{route}/{quote(model, safe='/%~:@')}", traversal_body, j))
    for model in ("../../etc/passwd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/etc/passwd", "~", "..", "%00"):
        add(HttpCase("traversal-path", "GET", f"/v1/models/{model}", statuses=frozenset({400, 404})))
    for model in TRAVERSAL:
        add(HttpCase("traversal-body", "POST", "/v1/embeddings", _dumps({"input": "x", "model": model}), j))
        add(
            HttpCase(
                "traversal-body", "POST", "/v1/rerank", _dumps({"query": "q", "documents": ["d"], "model": model}), j
            )
        )

    # wrong methods and unknown routes
    allowed = {"/v1/encode/" + ENCODER: "POST", "/v1/rerank": "POST", "/v1/embeddings": "POST", "/v1/models": "GET"}
    for path, method in allowed.items():
        for wrong in ("GET", "PUT", "DELETE", "PATCH", "POST"):
            if wrong != method:
                add(
                    HttpCase(
                        "wrong-method", wrong, path, valid if wrong != "GET" else b"", j, statuses=frozenset({405})
                    )
                )
    for path in (
        "/v1/encode",
        "/v2/encode/tiny-encoder",
        "/v1/embedding",
        "/v1/Rerank",
        "/admin",
        "/.env",
        "/%ff%fe",
        "/v1/" + "a" * 3000,
        "/%C3%A9t%C3%A9",
    ):
        add(HttpCase("unknown-route", "POST", quote(path, safe="/%"), valid, j, statuses=frozenset({404})))
        add(HttpCase("unknown-route", "GET", quote(path, safe="/%"), statuses=frozenset({404})))

    # the bearer token: missing, wrong, lower-case scheme (which is allowed)
    add(HttpCase("auth", "POST", enc, valid, j, auth=None, statuses=frozenset({401})))
    add(HttpCase("auth", "POST", enc, valid, j, auth="Bearer wrong-token", statuses=frozenset({401})))
    add(HttpCase("auth", "POST", enc, valid, j, auth="Basic dXNlcjpwYXNz", statuses=frozenset({401})))
    add(HttpCase("auth", "GET", "/v1/models", auth="Bearer", statuses=frozenset({401})))
    ok = EncodeCall(("content type",))
    add(HttpCase("auth-scheme-case", "POST", enc, valid, j, VALID, ok, auth="bearer {token}", route="encode"))
    add(HttpCase("auth-scheme-case", "POST", enc, valid, j, VALID, ok, auth="BEARER {token}", route="encode"))

    # whole bodies replaced by hostile JSON values
    whole: list[Any] = [
        [],
        {},
        "items",
        0,
        None,
        True,
        [{"items": ["a"]}],
        {"items": None},
        {"items": {}},
        {"items": []},
    ]
    for value in whole:
        for route in ("encode", "embeddings", "rerank"):
            add(HttpCase("body-type", "POST", _TEMPLATES[route][0], _dumps(value), j))
    for raw in (b"NaN", b"[1,", b"{", b'{"items":["a"]', b"{'items': ['a']}", b"\x00", b"null", b"  \n "):
        add(HttpCase("not-json", "POST", enc, raw, j))
    return cases


def http_corpus(seed: int, *, random_cases: int, max_body_bytes: int, valid_every: int = 3) -> list[HttpCase]:
    """The HTTP corpus: fixed categories and random mutations, shuffled, with a valid call after every few."""
    rng = random.Random(seed)
    hostile_cases = fixed_http_cases(max_body_bytes) + mutated_http_cases(rng, random_cases)
    rng.shuffle(hostile_cases)
    valid = valid_http_cases()
    out: list[HttpCase] = []
    for i, case in enumerate(hostile_cases):
        out.append(case)
        if i % valid_every == valid_every - 1:
            out.append(valid[(i // valid_every) % len(valid)])
    return out


# ---------------------------------------------------------------------------------------------- stdio corpus
@dataclass
class StdioCase:
    """One line of the stdio corpus.

    Attributes:
        kind: Category.
        line: The raw line (no newline).
        answer: ``"id"``: an answer with ``request_id`` is due; ``"null"``: an answer with ``"id": null`` is due;
            ``"id-or-null"``: either (a line with NaN, which is not JSON: a parse error, or an answer by id from a
            lenient parser); ``"maybe-null"``: an answer with ``"id": null`` or none (an invalid id-less message);
            ``"none"``: nothing may be answered (a notification).
        request_id: The id the answer must carry.
        codes: JSON-RPC error codes allowed; an empty set means the answer must be a result.
        tool_error: The answer may (EITHER) or must (INVALID) be a result with ``isError``; VALID: must not be.
        expect: The valid call whose reference a VALID answer must equal.
        tool: The tool a tools/call case calls (to read its answer).
        arguments: Its arguments.
    """

    kind: str
    line: str
    answer: str = "id"
    request_id: int | str | None = None
    codes: frozenset[int] = frozenset()
    tool_error: Verdict | None = None
    expect: EncodeCall | ScoreCall | ExtractCall | None = None
    tool: str = ""
    arguments: Any = None


PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
_STRUCTURE = frozenset({INVALID_REQUEST, INVALID_PARAMS})


def valid_tool_arguments(call: EncodeCall | ScoreCall | ExtractCall) -> tuple[str, dict[str, Any]]:
    """The MCP tool and arguments of a valid call."""
    if isinstance(call, EncodeCall):
        arguments: dict[str, Any] = {"texts": list(call.texts), "model": ENCODER, "is_query": call.is_query}
        if call.dims is not None:
            arguments["dims"] = call.dims
        return "encode", arguments
    if isinstance(call, ScoreCall):
        return "rerank", {"query": call.query, "documents": list(call.docs), "model": RERANKER}
    return "extract", {"text": call.text, "labels": list(call.labels), "threshold": call.threshold, "model": EXTRACTOR}


class Raw:
    """JSON text spliced into a message as is: nesting too deep for ``json.dumps`` (which recurses)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw(<{len(self.text)} chars>)"


def deep_raw(depth: int, kind: str = "list") -> Raw:
    """``depth`` levels of arrays or objects as JSON text."""
    return Raw(_deep_json(depth, kind).decode())


def _line(message: Any) -> str:
    raws: list[str] = []

    def splice(value: Any) -> str:
        if not isinstance(value, Raw):
            raise TypeError(f"{type(value).__name__} is not JSON")
        raws.append(value.text)
        return f"@@RAW{len(raws) - 1}@@"

    text = json.dumps(message, ensure_ascii=True, allow_nan=True, default=splice)
    for i, raw in enumerate(raws):
        text = text.replace(f'"@@RAW{i}@@"', raw)
    return text


def _finite(message: Any) -> bool:
    try:
        json.dumps(message, allow_nan=False, default=lambda v: None)
    except ValueError:
        return False
    return True


def stdio_corpus(seed: int, *, random_cases: int, valid_every: int = 3) -> list[StdioCase]:
    """Raw JSON-RPC lines for ``sie-agents mcp`` after its handshake: malformed messages, bad params, bad tool
    arguments (random, each judged by :func:`tool_verdict`), with a valid ``tools/call`` after every few."""
    rng = random.Random(seed)
    ids = iter(range(1000, 10**9))
    cases: list[StdioCase] = []

    def call(tool: str, arguments: Any, *, kind: str, verdict: Verdict) -> StdioCase:
        rid = next(ids)
        params = {"name": tool, "arguments": arguments}
        line = _line({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params})
        # a bad argument may be refused as a tool error or, by the message screen, as -32602 invalid params
        codes = frozenset() if verdict is VALID else frozenset({INVALID_PARAMS})
        case = StdioCase(kind, line, request_id=rid, tool_error=verdict, codes=codes, tool=tool, arguments=arguments)
        if not _finite(params):
            case.answer, case.codes = "id-or-null", case.codes | {PARSE_ERROR}
        return case

    # not JSON at all: -32700 with id null
    for raw in ("hello", "{", "[1,", "{'jsonrpc': '2.0'}", '{"jsonrpc":"2.0","id":1,', "\x00", "NaN", "\ufeff{}", "}{"):
        cases.append(StdioCase("not-json", raw, answer="null", codes=frozenset({PARSE_ERROR})))
    # JSON, with an id, but not a valid request
    bad: list[tuple[str, dict[str, Any], frozenset[int]]] = [
        ("jsonrpc-missing", {"method": "tools/list"}, frozenset({INVALID_REQUEST})),
        ("jsonrpc-wrong", {"jsonrpc": "1.0", "method": "tools/list"}, frozenset({INVALID_REQUEST})),
        ("jsonrpc-wrong", {"jsonrpc": 2.0, "method": "tools/list"}, frozenset({INVALID_REQUEST})),
        ("jsonrpc-wrong", {"jsonrpc": None, "method": "tools/list"}, frozenset({INVALID_REQUEST})),
        ("method-missing", {"jsonrpc": "2.0"}, frozenset({INVALID_REQUEST})),
        ("method-not-string", {"jsonrpc": "2.0", "method": 7}, frozenset({INVALID_REQUEST})),
        ("method-not-string", {"jsonrpc": "2.0", "method": None}, frozenset({INVALID_REQUEST})),
        ("method-not-string", {"jsonrpc": "2.0", "method": ["tools/list"]}, frozenset({INVALID_REQUEST})),
        ("method-unknown", {"jsonrpc": "2.0", "method": "tools/explode"}, frozenset({METHOD_NOT_FOUND})),
        ("method-unknown", {"jsonrpc": "2.0", "method": "\ud800"}, _STRUCTURE | {METHOD_NOT_FOUND}),
        ("method-unknown", {"jsonrpc": "2.0", "method": ""}, _STRUCTURE | {METHOD_NOT_FOUND}),
        ("params-scalar", {"jsonrpc": "2.0", "method": "tools/call", "params": 5}, _STRUCTURE),
        ("params-scalar", {"jsonrpc": "2.0", "method": "tools/call", "params": "encode"}, _STRUCTURE),
        ("params-null", {"jsonrpc": "2.0", "method": "tools/call", "params": None}, _STRUCTURE),
        ("params-list", {"jsonrpc": "2.0", "method": "tools/call", "params": ["encode", {}]}, _STRUCTURE),
        ("params-list", {"jsonrpc": "2.0", "method": "tools/list", "params": []}, _STRUCTURE),
        ("params-bad", {"jsonrpc": "2.0", "method": "tools/call", "params": {}}, _STRUCTURE),
        ("params-bad", {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": 5}}, _STRUCTURE),
        (
            "params-bad",
            {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "encode", "arguments": 3}},
            _STRUCTURE,
        ),
        (
            "params-bad",
            {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "encode", "arguments": []}},
            _STRUCTURE,
        ),
        ("params-bad", {"jsonrpc": "2.0", "method": "tools/list", "params": {"cursor": 5}}, _STRUCTURE),
        ("params-deep", {"jsonrpc": "2.0", "method": "tools/call", "params": deep_raw(10_000, "dict")}, _STRUCTURE),
        (
            "params-deep",
            {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "encode", "arguments": deep_raw(10_000)}},
            _STRUCTURE,
        ),
        (
            "params-deep",
            {
                "jsonrpc": "2.0",
                "method": "tools/call",
                "params": {"name": "encode", "arguments": {"texts": deep_raw(500)}},
            },
            _STRUCTURE,
        ),
        (
            "params-deep",
            {"jsonrpc": "2.0", "method": "tools/list", "params": {"_meta": nested(150, "dict")}},
            _STRUCTURE,
        ),
        (
            "params-surrogate",
            {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "\ud800", "arguments": {}}},
            _STRUCTURE,
        ),
        ("top-level-surrogate", {"jsonrpc": "2.0", "method": "tools/list", "\udfff": 1}, _STRUCTURE),
        ("top-level-deep", {"jsonrpc": "2.0", "method": "tools/list", "extra": deep_raw(5_000)}, _STRUCTURE),
    ]
    for kind, message, codes in bad:
        rid = next(ids)
        cases.append(StdioCase(kind, _line({**message, "id": rid}), request_id=rid, codes=codes))
    # ids the SDK cannot take: answered with id null (or echoed, for a float)
    bad_ids: list[Any] = [None, True, {"a": 1}, [1]]
    for rid_value in bad_ids:
        line = _line({"jsonrpc": "2.0", "id": rid_value, "method": "tools/list"})
        cases.append(StdioCase("id-bad-type", line, answer="null", codes=frozenset({INVALID_REQUEST})))
    line = _line({"jsonrpc": "2.0", "id": 1.5, "method": "tools/list"})
    cases.append(StdioCase("id-float", line, answer="any", codes=frozenset({INVALID_REQUEST})))
    # notifications and client responses: never answered
    for message in (
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 424242}},
        {"jsonrpc": "2.0", "method": "notifications/bogus"},
        {"jsonrpc": "2.0", "result": {}, "id": 999_999_999_999},
        {"jsonrpc": "2.0", "error": {"code": 1, "message": "x"}, "id": 999_999_999_998},
    ):
        cases.append(StdioCase("notification", _line(message), answer="none"))
    # id-less but not a valid Request object: JSON-RPC 2.0's own example answers these with -32600 and id null;
    # dropping them as malformed notifications is allowed too
    for message in (
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": 5},
        {"jsonrpc": "2.0", "method": 5},
        {"jsonrpc": "2.0", "method": 1, "params": "bar"},
    ):
        cases.append(StdioCase("invalid-notification", _line(message), answer="maybe-null", codes=_STRUCTURE))
    # tool calls with hostile arguments: lone surrogates, deep nesting, huge values, the lax types
    lax: list[tuple[str, dict[str, Any]]] = [
        ("rerank", {"query": "q", "documents": ["a", "b", "c"], "top_k": True}),
        ("encode", {"texts": ["a"], "dims": True}),
        ("rerank", {"query": "q", "documents": ["a", "b"], "top_k": "10"}),
        ("encode", {"texts": ["a"], "is_query": 1}),
        ("rerank", {"query": "q", "documents": ["a", "b"], "top_n": 1}),
        ("encode", {"texts": ["\ud800 poisoned"]}),
        ("encode", {"texts": ["ok"], "instruction": "\udfff"}),
        ("extract", {"text": "Alice", "labels": ["\ud800"]}),
        ("extract", {"text": "Alice", "labels": ["person"], "threshold": math.nan}),
        ("extract", {"text": "Alice", "labels": ["person"], "threshold": math.inf}),
        ("encode", {"texts": ["x" * (MAX_TEXT_CHARS + 1)]}),
        ("encode", {"texts": ["a"] * (MCP_MAX_ITEMS + 1)}),
        ("encode", {"texts": deep_raw(3_000)}),
        ("encode", {"texts": ["ok"], "model": "../../etc/passwd"}),
        ("encode", {"texts": ["ok"], "model": "/tmp/sie-tiny/encoder"}),
        ("encode", {"texts": ["ok"], "model": RERANKER}),
        ("list_models", {"task": 5}),
        ("list_models", {"task": "everything"}),
        ("nonexistent_tool", {}),
        ("\ud800", {}),
    ]
    for tool, arguments in lax:
        verdict = tool_verdict(tool, arguments) if tool in TOOL_ARGS else INVALID
        case = call(tool, arguments, kind="tool-args-fixed", verdict=verdict)
        if tool not in TOOL_ARGS:
            case.codes = _STRUCTURE | {METHOD_NOT_FOUND}
        cases.append(case)
    tools = sorted(TOOL_ARGS)
    for _ in range(random_cases):
        tool = rng.choice(tools)
        arguments = _valid_tool_template(tool)
        roll = rng.random()
        if roll < 0.7 and arguments:
            arguments[rng.choice([*TOOL_ARGS[tool]])] = random_hostile(rng)
        elif roll < 0.85:
            arguments[rng.choice(["bogus", "top_n", "Texts", "\x00", "\ud800", "dims "])] = random_hostile(rng)
        else:
            arguments = {k: v for k, v in arguments.items() if rng.random() < 0.5}
        cases.append(call(tool, arguments, kind=f"tool-args:{tool}", verdict=tool_verdict(tool, arguments)))
    rng.shuffle(cases)
    out: list[StdioCase] = []
    for i, case in enumerate(cases):
        out.append(case)
        if i % valid_every == valid_every - 1:
            valid = VALID_CALLS[(i // valid_every) % len(VALID_CALLS)]
            tool, arguments = valid_tool_arguments(valid)
            ok = call(tool, arguments, kind="valid", verdict=VALID)
            ok.expect = valid
            out.append(ok)
    return out


def _valid_tool_template(tool: str) -> dict[str, Any]:
    templates: dict[str, dict[str, Any]] = {
        "encode": {"texts": ["fuzz text"], "model": ENCODER},
        "rerank": {"query": "fuzz", "documents": list(DOCS[:2])},
        "extract": {"text": "Alice in Paris.", "labels": ["person"]},
        "list_models": {"task": "encode"},
    }
    return templates[tool]
