"""The SIE HTTP wire format, shared by the HTTP server and the remote backend.

SIE's client (``sie-sdk``) posts MessagePack bodies to ``/v1/encode/{model}``, ``/v1/score/{model}`` and
``/v1/extract/{model}`` and reads MessagePack answers in which numpy arrays travel as msgpack-numpy maps
(``{b"nd": True, b"type": "<f4", b"kind": b"", b"shape": [...], b"data": <bytes>}``). Errors are a JSON
envelope ``{"error": {"code": ..., "message": ...}}`` with the code also in the ``X-SIE-Error-Code`` header.
Keeping both directions in this one module means the server and :mod:`sie_core.remote` cannot drift apart.

Only ``numpy`` is needed at import; ``msgpack`` is imported when a body is packed or unpacked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import (
    ERRORS_BY_CODE,
    InvalidInputError,
    ModelLoadError,
    RemoteError,
    SieError,
    WrongTaskError,
)
from .results import (
    Classification,
    EncodeResult,
    Entity,
    ExtractResult,
    ModelInfo,
    Relation,
    ScoreEntry,
    ScoreResult,
    SparseVector,
)

__all__ = [
    "ERROR_CODE_HEADER",
    "JSON",
    "MSGPACK",
    "encode_response",
    "encode_results_from_wire",
    "error_body",
    "error_from_wire",
    "extract_response",
    "extract_results_from_wire",
    "model_info_from_wire",
    "model_info_to_wire",
    "packb",
    "score_response",
    "score_result_from_wire",
    "unpackb",
]

MSGPACK = "application/msgpack"
JSON = "application/json"
ERROR_CODE_HEADER = "X-SIE-Error-Code"

_NUMERIC_DTYPES = frozenset(
    f"{order}{kind}" for order in "<>" for kind in ("f2", "f4", "f8", "i2", "i4", "i8", "u2", "u4", "u8")
) | {"|b1", "|i1", "|u1"}
_MAX_DIMENSIONS = 8
_MSGPACK_MAX_DEPTH = 1024  # msgpack's C unpacker stack: deeper bodies raise StackError

#: Task -> the SIE "outputs" a model of that task produces.
_OUTPUTS = {"encode": ["dense"], "score": ["score"], "extract": ["entities"]}


# ---------------------------------------------------------------------- msgpack with numpy arrays
def _default(value: object) -> object:
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        if array.dtype.str not in _NUMERIC_DTYPES:
            raise TypeError(f"cannot send a numpy array of dtype {array.dtype} over the wire")
        return {
            b"nd": True,
            b"type": array.dtype.str,
            b"kind": b"",
            b"shape": list(array.shape),
            b"data": array.tobytes(),
        }
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot MessagePack-encode {type(value).__name__}")


def packb(value: object) -> bytes:
    """Pack a body; numpy arrays become msgpack-numpy maps (what SIE's client decodes)."""
    import msgpack

    return msgpack.packb(value, default=_default, use_bin_type=True)


def _array_hook(value: dict[Any, Any]) -> object:
    if b"nd" not in value:
        return value
    is_array = value.get(b"nd")
    kind = value.get(b"kind", b"")
    dtype_code = value.get(b"type")
    data = value.get(b"data")
    # Only plain numeric arrays: msgpack-numpy's object kind would unpickle attacker-chosen bytes.
    if not isinstance(is_array, bool) or kind not in (b"", "") or dtype_code not in _NUMERIC_DTYPES:
        raise ValueError("a MessagePack numpy value is not a plain numeric array")
    if not isinstance(data, bytes):
        raise ValueError("a MessagePack numpy value has no byte data")
    dtype = np.dtype(dtype_code)
    if not is_array:
        if len(data) != dtype.itemsize:
            raise ValueError("a MessagePack numpy scalar has the wrong byte length")
        return np.frombuffer(data, dtype=dtype, count=1)[0]
    shape = value.get(b"shape")
    if not isinstance(shape, list) or len(shape) > _MAX_DIMENSIONS:
        raise ValueError("a MessagePack numpy array has a malformed shape")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ValueError("a MessagePack numpy array has a malformed shape")
    if math.prod(shape) * dtype.itemsize != len(data):
        raise ValueError("a MessagePack numpy array's byte length does not match its shape")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def unpackb(data: bytes, *, arrays: bool = True) -> Any:
    """Unpack an untrusted body; with ``arrays``, plain numeric msgpack-numpy maps become numpy arrays.

    Raises:
        ValueError: The body is not valid MessagePack (or holds a non-numeric numpy value); the message reads
            "not valid MessagePack: <what is wrong>" (e.g. "the request body is " + message).
    """
    import msgpack

    try:
        return msgpack.unpackb(data, raw=False, object_hook=_array_hook if arrays else None, strict_map_key=False)
    except msgpack.StackError:
        detail = f"it nests arrays or maps deeper than {_MSGPACK_MAX_DEPTH} levels"
    except msgpack.ExtraData:
        detail = "it has bytes left over after its first value (send exactly one map)"
    except msgpack.FormatError:
        detail = "it holds a byte that starts no value (0xc1, or a reserved type)"
    except UnicodeDecodeError as exc:
        detail = f"a string in it is not valid UTF-8 ({exc.reason} at byte {exc.start})"
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        text = str(exc)
        if "incomplete input" in text or isinstance(exc, msgpack.OutOfData):
            detail = "it is truncated (it ends in the middle of a value)"
        elif "unhashable" in text:
            detail = "a map in it has an array or map as a key (map keys must be strings or numbers)"
        else:
            detail = text or type(exc).__name__
    raise ValueError(f"not valid MessagePack: {detail}")


# ---------------------------------------------------------------------- server side: results -> wire
def _vector(vector: np.ndarray, arrays: bool) -> Any:
    return vector if arrays else vector.tolist()


def encode_response(results: Sequence[EncodeResult], model: str, *, arrays: bool = True) -> dict[str, Any]:
    """The body of an encode answer.

    Args:
        results: Results in input order.
        model: The model id that produced them.
        arrays: numpy arrays (MessagePack) or plain lists (JSON).
    """
    items = []
    for r in results:
        item: dict[str, Any] = {"truncated": r.truncated, "tokens": r.tokens}
        if r.dense is not None:
            item["dense"] = {"dims": r.dims, "dtype": r.dtype, "values": _vector(r.dense, arrays)}
        if r.sparse is not None:
            item["sparse"] = {
                "dims": r.sparse.dims,
                "indices": _vector(r.sparse.indices, arrays),
                "values": _vector(r.sparse.values, arrays),
            }
        if r.multivector is not None:
            rows, token_dims = r.multivector.shape
            item["multivector"] = {
                "token_dims": int(token_dims),
                "num_tokens": int(rows),
                "dtype": str(r.multivector.dtype),
                "values": _vector(r.multivector, arrays),
            }
        if r.id is not None:
            item["id"] = r.id
        items.append(item)
    return {"model": model, "items": items}


def score_response(result: ScoreResult) -> dict[str, Any]:
    """The body of a score answer (entries best first; ``score`` is the raw model score)."""
    body: dict[str, Any] = {
        "model": result.model,
        "scores": [
            {"item_id": e.item_id, "score": e.score, "rank": e.rank, "index": e.index, "relevance": e.relevance}
            for e in result.scores
        ],
    }
    if result.query_id is not None:
        body["query_id"] = result.query_id
    return body


def extract_response(results: Sequence[ExtractResult], model: str) -> dict[str, Any]:
    """The body of an extract answer."""
    items = []
    for r in results:
        item: dict[str, Any] = {
            "entities": [
                {"text": e.text, "label": e.label, "score": e.score, "start": e.start, "end": e.end} for e in r.entities
            ],
            "relations": [_relation_to_wire(rel) for rel in r.relations],
            "classifications": [{"label": c.label, "score": c.score} for c in r.classifications],
            "objects": [],
            "windows": r.windows,
        }
        if r.data:
            item["data"] = r.data
        if r.id is not None:
            item["id"] = r.id
        items.append(item)
    return {"model": model, "items": items}


def _relation_to_wire(r: Relation) -> dict[str, Any]:
    """SIE's relation keys (head, tail, relation, score) plus the entities' labels and offsets."""
    return {
        "head": r.head,
        "tail": r.tail,
        "relation": r.relation,
        "score": r.score,
        "head_label": r.head_label,
        "head_start": r.head_start,
        "head_end": r.head_end,
        "tail_label": r.tail_label,
        "tail_start": r.tail_start,
        "tail_end": r.tail_end,
    }


def _wire_state(info: ModelInfo) -> str:
    return {"not_loaded": "available"}.get(info.state, info.state)


def model_info_to_wire(info: ModelInfo) -> dict[str, Any]:
    """One ``/v1/models`` entry: SIE's keys (name, loaded, state, inputs, outputs, dims, ...) plus ours."""
    task = info.tasks[0] if info.tasks else "encode"
    last_error = None
    if info.last_error:
        last_error = {"code": ModelLoadError.code, "message": info.last_error, "attempts": 1, "permanent": False}
    return {
        "name": info.id,
        "loaded": info.loaded,
        "state": _wire_state(info),
        "last_error": last_error,
        "inputs": ["text"],
        "outputs": list(info.outputs) or list(_OUTPUTS.get(task, [])),
        "dims": _dims_to_wire(info, task),
        "max_sequence_length": info.max_length,
        "revision": None,
        "aliases": list(info.aliases),
        # sie-agents' own fields (SIE's client ignores what it does not know)
        "id": info.id,
        "tasks": list(info.tasks),
        "description": info.description,
        "adapter": info.adapter,
        "backend": info.backend,
        "device": info.device,
        "dtype": info.dtype,
        "memory_bytes": info.memory_bytes,
        "loads": info.loads,
        "evictions": info.evictions,
        "requests": info.requests,
        "items": info.items,
        "errors": info.errors,
        "source": info.source,
        "threads": info.threads,
    }


def _dims_to_wire(info: ModelInfo, task: str) -> dict[str, int]:
    """SIE's ``dims``: dimensions per encode output (dense length, sparse vocabulary, multivector per token)."""
    dims = dict(info.output_dims)
    if task == "encode" and info.dims and "dense" in (info.outputs or ("dense",)):
        dims.setdefault("dense", info.dims)
    return dims


def error_body(exc: SieError) -> dict[str, Any]:
    """The error envelope for an engine error (JSON; the code is also sent as ``X-SIE-Error-Code``)."""
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if isinstance(exc, WrongTaskError):
        error["reason"] = "WRONG_TASK"
        error["param"] = "model"
    if isinstance(exc, ModelLoadError):
        # SIE's client reads these to fail fast instead of retrying a load that will not work.
        error.update({"error_class": "LOAD_FAILED", "permanent": False, "attempts": 1})
    if exc.retry_after is not None:
        error["retry_after_s"] = exc.retry_after
    return {"error": error}


# ---------------------------------------------------------------------- client side: wire -> results
def _as_array(values: Any, dtype: str) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return np.array(values)  # a writable copy, like the local engine's arrays
    numpy_dtype = {"float32": np.float32, "float16": np.float16, "int8": np.int8, "binary": np.uint8}.get(
        dtype, np.float32
    )
    return np.asarray(values, dtype=numpy_dtype)


def encode_results_from_wire(
    data: Mapping[str, Any],
    model: str,
    ids: Sequence[str | None],
    output_dtype: str,
    output_types: Sequence[str] = ("dense",),
) -> list[EncodeResult]:
    """EncodeResults from an encode answer (ours or any SIE server's).

    Args:
        data: The decoded answer.
        model: The model id asked for.
        ids: The item ids sent, in order.
        output_dtype: The dtype asked for (used when the answer does not say).
        output_types: The outputs asked for; each must be in every item of the answer.

    Raises:
        RemoteError: The answer does not have one result per input, or lacks an output that was asked for.
    """
    items = data.get("items")
    if not isinstance(items, list) or len(items) != len(ids):
        count = len(items) if isinstance(items, list) else "no"
        raise RemoteError(f"the server answered {count} results for {len(ids)} inputs to encode with {model!r}")
    model_id = data.get("model") if isinstance(data.get("model"), str) and data.get("model") else model
    results = []
    for item, item_id in zip(items, ids):
        if not isinstance(item, Mapping):
            raise RemoteError(f"the server's encode answer for {model!r} has an item that is not a map")
        missing = [o for o in output_types if not isinstance(item.get(o), Mapping) or item[o].get("values") is None]
        if missing:
            raise RemoteError(f"the server's encode answer for {model!r} has no {' or '.join(missing)} output")
        dense, dims, dtype = None, 0, output_dtype
        if isinstance(item.get("dense"), Mapping) and item["dense"].get("values") is not None:
            dtype = str(item["dense"].get("dtype") or output_dtype)
            dense = _as_array(item["dense"]["values"], dtype)
            wire_dims = item["dense"].get("dims")
            dims = wire_dims if isinstance(wire_dims, int) else dense.shape[-1] * (8 if dtype == "binary" else 1)
        results.append(
            EncodeResult(
                model=str(model_id),
                dense=dense,
                dims=int(dims),
                dtype=dtype,
                truncated=bool(item.get("truncated", False)),
                tokens=int(item.get("tokens", 0) or 0),
                id=item.get("id", item_id),
                sparse=_sparse_from_wire(item.get("sparse"), model),
                multivector=_multivector_from_wire(item.get("multivector"), model, output_dtype),
            )
        )
    return results


def _sparse_from_wire(value: Any, model: str) -> SparseVector | None:
    if not isinstance(value, Mapping) or value.get("values") is None:
        return None
    indices = np.asarray(value.get("indices", []), dtype=np.int32).reshape(-1)
    values = np.asarray(value["values"], dtype=np.float32).reshape(-1)
    if indices.shape != values.shape:
        raise RemoteError(
            f"the server's sparse vector for {model!r} has {len(indices)} indices and {len(values)} values"
        )
    order = np.argsort(indices, kind="stable")  # SIE servers may send terms in any order; ours are ascending
    dims = value.get("dims")
    return SparseVector(indices=indices[order], values=values[order], dims=dims if isinstance(dims, int) else 0)


def _multivector_from_wire(value: Any, model: str, output_dtype: str) -> np.ndarray | None:
    if not isinstance(value, Mapping) or value.get("values") is None:
        return None
    dtype = str(value.get("dtype") or output_dtype)
    matrix = _as_array(value["values"], dtype)
    if matrix.ndim == 1:  # a flat list from a JSON answer: rows of token_dims
        token_dims = value.get("token_dims")
        if not isinstance(token_dims, int) or token_dims <= 0 or matrix.size % token_dims:
            raise RemoteError(f"the server's multivector for {model!r} has no usable token_dims")
        matrix = matrix.reshape(-1, token_dims)
    if matrix.ndim != 2:
        raise RemoteError(f"the server's multivector for {model!r} is not a [tokens, dims] matrix")
    return matrix


def score_result_from_wire(
    data: Mapping[str, Any], model: str, ids: Sequence[str | None], query_id: str | None, top_k: int | None
) -> ScoreResult:
    """A ScoreResult from a score answer; entries missing ``index``/``relevance`` get them from the ids/score."""
    by_id = {item_id if item_id is not None else str(i): i for i, item_id in enumerate(ids)}
    entries = []
    raw = data.get("scores")
    if not isinstance(raw, list):
        raise RemoteError(f"the server's score answer for {model!r} has no scores")
    ordered = sorted(raw, key=lambda s: s.get("rank", 0) if isinstance(s, Mapping) else 0)
    for rank, s in enumerate(ordered):
        item_id = str(s.get("item_id"))
        index = s.get("index")
        if not isinstance(index, int):
            index = by_id.get(item_id, rank)
        score = float(s.get("score", 0.0))
        relevance = s.get("relevance")
        if not isinstance(relevance, (int, float)):
            relevance = 1.0 / (1.0 + math.exp(-score)) if not 0.0 <= score <= 1.0 else score
        entries.append(ScoreEntry(index=index, score=score, relevance=float(relevance), rank=rank, item_id=item_id))
    if top_k is not None:
        entries = entries[:top_k]
    model_id = data.get("model") if isinstance(data.get("model"), str) and data.get("model") else model
    return ScoreResult(model=str(model_id), scores=entries, query_id=data.get("query_id", query_id))


def extract_results_from_wire(data: Mapping[str, Any], model: str, ids: Sequence[str | None]) -> list[ExtractResult]:
    """ExtractResults from an extract answer.

    Raises:
        RemoteError: The answer does not have one result per input, or an item failed on the server.
    """
    items = data.get("items")
    if not isinstance(items, list) or len(items) != len(ids):
        count = len(items) if isinstance(items, list) else "no"
        raise RemoteError(f"the server answered {count} results for {len(ids)} inputs to extract with {model!r}")
    model_id = data.get("model") if isinstance(data.get("model"), str) and data.get("model") else model
    results = []
    for item, item_id in zip(items, ids):
        error = item.get("error")
        if isinstance(error, Mapping):
            raise error_from_wire(500, str(error.get("code") or ""), str(error.get("message") or "extract failed"))
        entities = [
            Entity(
                text=str(e["text"]),
                label=str(e["label"]),
                score=float(e["score"]),
                start=int(e["start"]) if e.get("start") is not None else -1,
                end=int(e["end"]) if e.get("end") is not None else -1,
            )
            for e in item.get("entities", [])
        ]
        relations = [
            Relation(
                head=str(r["head"]),
                tail=str(r["tail"]),
                relation=str(r["relation"]),
                score=float(r["score"]),
                head_label=str(r.get("head_label") or ""),
                head_start=_offset(r.get("head_start")),
                head_end=_offset(r.get("head_end")),
                tail_label=str(r.get("tail_label") or ""),
                tail_start=_offset(r.get("tail_start")),
                tail_end=_offset(r.get("tail_end")),
            )
            for r in item.get("relations") or []
        ]
        classifications = [
            Classification(label=str(c["label"]), score=float(c["score"])) for c in item.get("classifications") or []
        ]
        data = item.get("data")
        results.append(
            ExtractResult(
                model=str(model_id),
                entities=entities,
                relations=relations,
                classifications=sorted(classifications, key=lambda c: -c.score),
                data=dict(data) if isinstance(data, Mapping) else {},
                windows=int(item.get("windows", 1) or 1),
                id=item.get("id", item_id),
            )
        )
    return results


def _offset(value: Any) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else -1


_TASK_FROM_OUTPUT = {"dense": "encode", "sparse": "encode", "multivector": "encode", "score": "score"}


def model_info_from_wire(entry: Mapping[str, Any]) -> ModelInfo:
    """A ModelInfo from a ``/v1/models`` entry (ours carries every field; SIE's is mapped best-effort)."""
    name = str(entry.get("id") or entry.get("name") or "")
    tasks = entry.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        outputs = entry.get("outputs") or []
        tasks = sorted({_TASK_FROM_OUTPUT.get(o, "extract") for o in outputs}) or ["encode"]
    dims = entry.get("dims")
    dense_dims = dims.get("dense") if isinstance(dims, Mapping) else dims if isinstance(dims, int) else None
    output_dims = {str(k): v for k, v in dims.items() if isinstance(v, int)} if isinstance(dims, Mapping) else {}
    outputs = entry.get("outputs")
    state = str(entry.get("state") or ("loaded" if entry.get("loaded") else "not_loaded"))
    last_error = entry.get("last_error")
    if isinstance(last_error, Mapping):
        last_error = last_error.get("message")
    return ModelInfo(
        id=name,
        tasks=tuple(str(t) for t in tasks),
        description=str(entry.get("description") or ""),
        adapter=str(entry.get("adapter") or ""),
        backend=str(entry.get("backend") or "remote"),
        loaded=bool(entry.get("loaded", False)),
        state={"available": "not_loaded"}.get(state, state),
        device=entry.get("device"),
        dtype=entry.get("dtype"),
        memory_bytes=entry.get("memory_bytes"),
        dims=dense_dims,
        max_length=entry.get("max_sequence_length"),
        loads=int(entry.get("loads", 0) or 0),
        evictions=int(entry.get("evictions", 0) or 0),
        requests=int(entry.get("requests", 0) or 0),
        items=int(entry.get("items", 0) or 0),
        errors=int(entry.get("errors", 0) or 0),
        last_error=str(last_error) if last_error else None,
        source=entry.get("source"),
        aliases=tuple(entry.get("aliases") or ()),
        outputs=tuple(str(o) for o in outputs) if isinstance(outputs, list) else (),
        output_dims=output_dims,
        threads=entry.get("threads") if isinstance(entry.get("threads"), int) else None,
    )


def error_from_wire(
    status: int,
    code: str | None,
    message: str,
    *,
    retry_after: float | None = None,
    reason: str | None = None,
) -> SieError:
    """The SieError for a server's error answer: same class as the server raised where the code says so."""
    if reason == "WRONG_TASK":
        return WrongTaskError(message)
    cls = ERRORS_BY_CODE.get(code or "")
    if cls is not None:
        return cls(message, retry_after=retry_after)
    if 400 <= status < 500 and code in (None, "", "INPUT_TOO_LONG", "BAD_REQUEST"):
        return InvalidInputError(message)
    return RemoteError(f"{message} (HTTP {status}{', ' + code if code else ''})", retry_after=retry_after)
