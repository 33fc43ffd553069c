"""Pydantic models of the server's answers, for ``/openapi.json``.

They mirror what :mod:`sie_core.wire` and the routes emit (the request bodies come from
:mod:`sie_core.requests`); they are used to describe answers, never to build them, and a test checks live
answers against them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "RESPONSE_MODELS",
    "DenseVector",
    "EmbeddingsResponse",
    "EncodeResponse",
    "ExtractResponse",
    "Health",
    "ModelEntry",
    "ModelList",
    "Readiness",
    "RerankResponse",
    "ScoreResponse",
    "ServerStatus",
]

_OPEN = ConfigDict(extra="allow")  # clients must ignore fields they do not know; future ones may appear


class DenseVector(BaseModel):
    """One dense vector."""

    model_config = _OPEN

    dims: int = Field(description="Dimensions of the vector (before bit-packing for binary).")
    dtype: Literal["float32", "float16", "int8", "binary"] = Field(description="Element type of values.")
    values: list[float] = Field(
        description="The vector: numbers in JSON; a msgpack-numpy array in MessagePack answers. Binary vectors "
        "hold sign bits packed 8 per byte (uint8)."
    )


class SparseOut(BaseModel):
    """A sparse vector (learned term weights, SPLADE): the non-zero terms only."""

    model_config = _OPEN

    dims: int = Field(description="Size of the vocabulary (the length of the dense form, never built).")
    indices: list[int] = Field(description="Term ids, ascending (int32 in MessagePack answers).")
    values: list[float] = Field(description="The weight of each term (float32), all non-zero.")


class MultivectorOut(BaseModel):
    """Per-token vectors (late interaction, ColBERT): one L2-normalised row per kept token."""

    model_config = _OPEN

    token_dims: int = Field(description="Dimensions of each token vector.")
    num_tokens: int = Field(description="Rows: the tokens kept.")
    dtype: Literal["float32", "float16"] = Field(description="Element type of values.")
    values: list[list[float]] = Field(
        description="[num_tokens, token_dims]: nested lists in JSON; one 2-D msgpack-numpy array in MessagePack."
    )


class EncodeItem(BaseModel):
    """The encoding of one input item: the outputs asked for in ``params.output_types``."""

    model_config = _OPEN

    id: str | None = Field(default=None, description="The item's id, when the request gave one.")
    dense: DenseVector | None = Field(default=None, description="When output_types has dense (the default).")
    sparse: SparseOut | None = Field(default=None, description="When output_types has sparse.")
    multivector: MultivectorOut | None = Field(default=None, description="When output_types has multivector.")
    truncated: bool = Field(description="Whether the text was cut to the model's maximum length.")
    tokens: int = Field(description="Tokens the model read for this item.")


class EncodeResponse(BaseModel):
    """``POST /v1/encode/{model}``."""

    model_config = _OPEN

    model: str = Field(description="The model that answered (its canonical id).")
    items: list[EncodeItem] = Field(description="One entry per input item, in order.")


class ScoreEntry(BaseModel):
    """One scored item."""

    model_config = _OPEN

    item_id: str = Field(description="The item's id, or its position as a string when it had none.")
    score: float = Field(description="The model's raw score (a logit for cross-encoders).")
    rank: int = Field(description="0 for the best item.")
    index: int = Field(description="Position of the item in the request.")
    relevance: float = Field(description="The score mapped to 0..1.")


class ScoreResponse(BaseModel):
    """``POST /v1/score/{model}``: the items ranked best first."""

    model_config = _OPEN

    model: str
    scores: list[ScoreEntry]
    query_id: str | None = Field(default=None, description="The query's id, when the request gave one.")


class EntityOut(BaseModel):
    """One entity found in a text."""

    model_config = _OPEN

    text: str
    label: str
    score: float
    start: int = Field(description="Offset of the first character in the item's text.")
    end: int = Field(description="Offset just past the last character.")


class RelationOut(BaseModel):
    """One relation between two entities (relation-extraction models)."""

    model_config = _OPEN

    head: str = Field(description="The head entity's text.")
    tail: str = Field(description="The tail entity's text.")
    relation: str
    score: float
    head_label: str | None = None
    head_start: int | None = None
    head_end: int | None = None
    tail_label: str | None = None
    tail_start: int | None = None
    tail_end: int | None = None


class ClassificationOut(BaseModel):
    """One label of a classification model, with its score."""

    model_config = _OPEN

    label: str
    score: float


class ExtractItem(BaseModel):
    """What was found in one input item."""

    model_config = _OPEN

    id: str | None = None
    entities: list[EntityOut]
    relations: list[RelationOut] = Field(description="Relations, for relation-extraction models; else empty.")
    classifications: list[ClassificationOut] = Field(description="Labels, for classification models; else empty.")
    objects: list[Any] = Field(description="Always empty here (SIE's wire field).")
    windows: int = Field(description="Windows the text was split into.")
    data: dict[str, Any] | None = Field(default=None, description="Structured fields, for structured extraction.")


class ExtractResponse(BaseModel):
    """``POST /v1/extract/{model}``."""

    model_config = _OPEN

    model: str
    items: list[ExtractItem]


class LoadError(BaseModel):
    """Why the model's last load failed."""

    model_config = _OPEN

    code: str
    message: str
    attempts: int
    permanent: bool


class ModelEntry(BaseModel):
    """One model in ``/v1/models``: SIE's fields, then sie-agents' own."""

    model_config = _OPEN

    name: str = Field(description="The model id.")
    loaded: bool
    state: Literal["available", "loading", "loaded", "failed"]
    last_error: LoadError | None
    inputs: list[str]
    outputs: list[str]
    dims: dict[str, int]
    max_sequence_length: int | None
    revision: str | None
    aliases: list[str]
    id: str
    tasks: list[str]
    description: str
    adapter: str
    backend: str
    device: str | None
    dtype: str | None
    memory_bytes: int | None
    loads: int
    evictions: int
    requests: int
    items: int
    errors: int
    source: str | None
    threads: int | None = Field(None, description="CPU threads one forward pass uses, when loaded on the CPU.")


class ModelList(BaseModel):
    """``GET /v1/models``."""

    model_config = _OPEN

    models: list[ModelEntry]


class EmbeddingData(BaseModel):
    """One embedding (OpenAI shape)."""

    model_config = _OPEN

    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="Floats, or base64 of little-endian float32 bytes.")


class Usage(BaseModel):
    """Tokens read."""

    model_config = _OPEN

    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    """``POST /v1/embeddings`` (OpenAI shape)."""

    model_config = _OPEN

    object: Literal["list"]
    data: list[EmbeddingData]
    model: str
    usage: Usage


class RerankDocument(BaseModel):
    """The document's text (with ``return_documents``)."""

    model_config = _OPEN

    text: str


class RerankResult(BaseModel):
    """One reranked document."""

    model_config = _OPEN

    index: int
    relevance_score: float
    score: float
    document: RerankDocument | None = None


class RerankResponse(BaseModel):
    """``POST /v1/rerank`` (Cohere / Jina shape), best first."""

    model_config = _OPEN

    id: str
    model: str
    results: list[RerankResult]
    meta: dict[str, Any]


class Health(BaseModel):
    """``GET /healthz``."""

    model_config = _OPEN

    status: Literal["ok"]
    type: str


class Readiness(BaseModel):
    """``GET /readyz``."""

    model_config = _OPEN

    status: Literal["ready", "starting", "draining"]
    preload_errors: dict[str, str] | None = None


class ServerStatus(BaseModel):
    """``GET /v1/status``: what the status page shows besides the models."""

    model_config = _OPEN

    status: Literal["ready", "starting", "draining"]
    version: str = Field(description="sie-agents version.")
    uptime_s: float
    in_flight: int = Field(description="Engine calls being served now.")
    http_requests: int = Field(description="HTTP requests answered since start.")
    http_errors: int = Field(description="Of those, answers with a 4xx or 5xx status.")
    queue_depth: dict[str, int] = Field(description="Items waiting per loaded model.")
    models_loaded: int
    mcp: bool = Field(description="Whether MCP is served at /mcp.")


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    EncodeResponse,
    ScoreResponse,
    ExtractResponse,
    ModelEntry,
    ModelList,
    EmbeddingsResponse,
    RerankResponse,
    Health,
    Readiness,
    ServerStatus,
)
