"""Result types returned by the engine.

Results are frozen dataclasses with attribute access (``result.dense``) and, so that code written for
SIE's client keeps working, read-only mapping access with the same keys (``result["dense"]``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "EncodeResult",
    "SparseVector",
    "Vocabulary",
    "Entity",
    "Classification",
    "ExtractResult",
    "ModelInfo",
    "Relation",
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
            elif isinstance(value, _MappingAccess):
                value = value.to_dict()
            out[name] = value
        return out

    @classmethod
    def _field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]


class Vocabulary:
    """A model's token strings by id, shared by every sparse vector the model makes (never copied per result).

    Args:
        tokens: Token string per id (index ``i`` is the token of term ``i``).
    """

    __slots__ = ("_tokens",)

    def __init__(self, tokens: Sequence[str]) -> None:
        self._tokens = tuple(tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def token(self, index: int) -> str:
        """The token of one term index (``#<index>`` when the index is outside the vocabulary)."""
        return self._tokens[index] if 0 <= index < len(self._tokens) else f"#{index}"


@dataclass(frozen=True, eq=False)
class SparseVector(_MappingAccess):
    """A sparse vector (learned term weights, e.g. SPLADE), non-zero terms only; shaped like SIE's ``SparseResult``.

    Mapping access gives SIE's keys, ``v["indices"]`` and ``v["values"]``. The dense form is never built;
    :meth:`terms` gives ``(token, weight)`` pairs for display, :meth:`tokens` the token of each index.

    Attributes:
        indices: Term ids (vocabulary indices), int32, strictly ascending.
        values: The weight of each term, float32, all non-zero.
        dims: The size of the vocabulary (the dense length), 0 when unknown.
        vocabulary: The model's tokens, to turn indices back into text; None when unknown (remote results).
    """

    indices: np.ndarray
    values: np.ndarray
    dims: int = 0
    vocabulary: Vocabulary | None = field(default=None, repr=False, compare=False)

    @classmethod
    def _field_names(cls) -> tuple[str, ...]:
        return ("indices", "values")

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def tokens(self) -> list[str]:
        """The token of each index, in index order (``#<index>`` where the vocabulary is not known)."""
        vocab = self.vocabulary
        return [vocab.token(int(i)) if vocab is not None else f"#{int(i)}" for i in self.indices]

    def terms(self, top_k: int | None = None) -> list[tuple[str, float]]:
        """``(token, weight)`` pairs, heaviest first (ties by index), cut to ``top_k`` when given."""
        order = sorted(range(len(self)), key=lambda i: (-float(self.values[i]), int(self.indices[i])))[:top_k]
        vocab = self.vocabulary
        return [
            (
                vocab.token(int(self.indices[i])) if vocab is not None else f"#{int(self.indices[i])}",
                float(self.values[i]),
            )
            for i in order
        ]

    def dot(self, other: SparseVector) -> float:
        """The dot product with another sparse vector (the usual SPLADE relevance score)."""
        common, mine, theirs = np.intersect1d(self.indices, other.indices, assume_unique=True, return_indices=True)
        if not len(common):
            return 0.0
        return float(np.dot(self.values[mine].astype(np.float64), other.values[theirs].astype(np.float64)))


@dataclass(frozen=True, eq=False)
class EncodeResult(_MappingAccess):
    """One encoded item: the outputs that were asked for (``output_types``); the others are None.

    Attributes:
        model: The model id that produced the vector.
        dense: The dense vector: float32/float16/int8 of length ``dims``, or packed bits (uint8) for ``binary``;
            None when ``dense`` was not asked for.
        dims: Number of dimensions of the dense vector (before bit packing); 0 when there is none.
        dtype: The output dtype requested (float32, float16, int8 or binary) for dense and multivector.
        truncated: True when the input was longer than the model's window and was cut.
        tokens: Number of tokens the input had (including special tokens), before any truncation.
        id: The caller's item id, when one was given.
        sparse: Term weights (non-zero terms only), when ``sparse`` was asked for.
        multivector: One L2-normalised row per kept token, float32 or float16 ``[tokens, token_dims]``, when
            ``multivector`` was asked for (late interaction, ColBERT-style).
    """

    model: str
    dense: np.ndarray | None = None
    dims: int = 0
    dtype: str = "float32"
    truncated: bool = False
    tokens: int = 0
    id: str | None = None
    sparse: SparseVector | None = None
    multivector: np.ndarray | None = None

    def dense_vector(self) -> np.ndarray:
        """The dense vector, for callers that asked for it (raises ``ValueError`` when it was not asked for)."""
        if self.dense is None:
            raise ValueError(f"this result of {self.model!r} has no dense vector: ask for output_types=['dense']")
        return self.dense


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
class Relation(_MappingAccess):
    """One relation between two entities of a text, shaped like SIE's ``Relation`` plus the entities' spans.

    Attributes:
        head: The head entity's text.
        tail: The tail entity's text.
        relation: The relation label, as requested.
        score: The model's confidence, 0..1.
        head_label: The head entity's label.
        head_start: Character offset of the head entity in the original input.
        head_end: Offset one past the head entity's end.
        tail_label: The tail entity's label.
        tail_start: Character offset of the tail entity in the original input.
        tail_end: Offset one past the tail entity's end.
    """

    head: str
    tail: str
    relation: str
    score: float
    head_label: str = ""
    head_start: int = -1
    head_end: int = -1
    tail_label: str = ""
    tail_start: int = -1
    tail_end: int = -1


@dataclass(frozen=True)
class Classification(_MappingAccess):
    """One class a text was scored for (SIE's ``Classification``).

    Attributes:
        label: The class, as requested.
        score: The model's score for it, 0..1.
    """

    label: str
    score: float


@dataclass(frozen=True)
class ExtractResult(_MappingAccess):
    """What was found in one item.

    Attributes:
        model: The model id that extracted.
        entities: Entities ordered by start offset.
        relations: Relations between entities, best score first.
        classifications: Classes with their scores, best first.
        data: The requested schema's fields, by name (structured extraction); empty otherwise.
        windows: How many model windows the text needed (more than 1 for long texts).
        id: The caller's item id, when one was given.
    """

    model: str
    entities: list[Entity]
    relations: list[Relation] = field(default_factory=list)
    classifications: list[Classification] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
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
        outputs: What it produces (its family's): dense / sparse / multivector for encoders, score, or what an
            extractor finds (entities, relations, classifications, data).
        output_dims: Dimensions per encode output when known: ``dense`` (vector length), ``sparse`` (vocabulary
            size), ``multivector`` (dimensions per token vector).
        threads: CPU threads one forward pass uses, when loaded on the CPU (see :mod:`sie_core.threads`).
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
    outputs: tuple[str, ...] = field(default_factory=tuple)
    output_dims: dict[str, int] = field(default_factory=dict)
    threads: int | None = None
