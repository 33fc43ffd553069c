"""Result types returned by the engine.

Results are frozen dataclasses with attribute access (``result.dense``) and, so that code written for
SIE's client keeps working, read-only mapping access with the same keys (``result["dense"]``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "EncodeResult",
    "Entity",
    "ExtractResult",
    "ModelInfo",
    "ScoreEntry",
    "ScoreResult",
]


class _MappingAccess:
    """Read-only dict-style access to a dataclass's fields (``r["dense"]``, ``r.get("id")``, ``"id" in r``)."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        if key in self._field_names():
            return getattr(self, key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        """Return the field ``key``, or ``default`` when there is no such field."""
        return getattr(self, key) if key in self._field_names() else default

    def keys(self) -> list[str]:
        """Field names, like ``dict.keys()``."""
        return list(self._field_names())

    def __contains__(self, key: object) -> bool:
        return key in self._field_names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._field_names())

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of the fields (nested results become dicts too; arrays stay arrays)."""
        out: dict[str, Any] = {}
        for name in self._field_names():
            value = getattr(self, name)
            if isinstance(value, list):
                value = [v.to_dict() if isinstance(v, _MappingAccess) else v for v in value]
            out[name] = value
        return out

    @classmethod
    def _field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False)
class EncodeResult(_MappingAccess):
    """One encoded item.

    Attributes:
        model: The model id that produced the vector.
        dense: The vector: float32/float16/int8 of length ``dims``, or packed bits (uint8) for ``binary``.
        dims: Number of dimensions of the vector (before bit packing).
        dtype: The output dtype requested (float32, float16, int8 or binary).
        truncated: True when the input was longer than the model's window and was cut.
        tokens: Number of tokens the input had (including special tokens), before any truncation.
        id: The caller's item id, when one was given.
    """

    model: str
    dense: np.ndarray
    dims: int
    dtype: str = "float32"
    truncated: bool = False
    tokens: int = 0
    id: str | None = None


@dataclass(frozen=True)
class ScoreEntry(_MappingAccess):
    """One scored item.

    Attributes:
        index: Position of the item in the request's ``items`` list.
        score: The model's raw score (the logit for single-logit cross-encoders).
        relevance: Relevance in 0..1 (sigmoid of the logit for single-logit models).
        rank: Position in the sorted result, 0 = most relevant.
        item_id: The caller's item id if given, else the index as a string.
    """

    index: int
    score: float
    relevance: float
    rank: int
    item_id: str


@dataclass(frozen=True)
class ScoreResult(_MappingAccess):
    """Items scored against one query, best first.

    Attributes:
        model: The model id that scored.
        scores: Entries sorted by score, best first (cut to ``top_k`` when given).
        query_id: The query item's id, when one was given.
    """

    model: str
    scores: list[ScoreEntry]
    query_id: str | None = None


@dataclass(frozen=True)
class Entity(_MappingAccess):
    """One extracted span; ``text == input[start:end]`` always holds.

    Attributes:
        text: The span's text.
        label: The label it was given.
        score: The model's confidence, 0..1.
        start: Character offset of the span's start in the original input.
        end: Character offset one past the span's end in the original input.
    """

    text: str
    label: str
    score: float
    start: int
    end: int


@dataclass(frozen=True)
class ExtractResult(_MappingAccess):
    """Entities found in one item.

    Attributes:
        model: The model id that extracted.
        entities: Entities ordered by start offset.
        windows: How many model windows the text needed (more than 1 for long texts).
        id: The caller's item id, when one was given.
    """

    model: str
    entities: list[Entity]
    windows: int = 1
    id: str | None = None


@dataclass(frozen=True)
class ModelInfo(_MappingAccess):
    """What the engine knows about one model.

    Attributes:
        id: The model id.
        tasks: Tasks the model serves (encode, score, extract).
        description: One line saying what the model is good for.
        adapter: The adapter that runs it (sentence-transformers, cross-encoder, gliner, onnx-...).
        backend: torch or onnx.
        loaded: Whether it is loaded now.
        state: not_loaded, loading, loaded or failed.
        device: Device it runs on when loaded (cpu, cuda, mps), else None.
        dtype: Weights dtype when loaded (float32, float16, int8), else None.
        memory_bytes: Memory its weights take when loaded (estimated before).
        dims: Output dimensions for encode models, when known.
        max_length: Maximum input tokens per window, when known.
        loads: How many times it was loaded by this engine.
        evictions: How many times it was evicted.
        requests: Requests served.
        items: Items (texts, pairs, windows) served.
        errors: Requests that failed.
        last_error: The last load error message, if the last load failed.
        source: Where the weights come from (hub id, local path, or Python package).
        aliases: Other names that resolve to this model.
    """

    id: str
    tasks: tuple[str, ...]
    description: str = ""
    adapter: str = ""
    backend: str = "torch"
    loaded: bool = False
    state: str = "not_loaded"
    device: str | None = None
    dtype: str | None = None
    memory_bytes: int | None = None
    dims: int | None = None
    max_length: int | None = None
    loads: int = 0
    evictions: int = 0
    requests: int = 0
    items: int = 0
    errors: int = 0
    last_error: str | None = None
    source: str | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)
