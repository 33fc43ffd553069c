"""The MCP tools: ``encode``, ``rerank``, ``extract`` and ``list_models``, each a thin layer over one Engine.

Every tool validates its arguments, awaits the engine, and shapes a pydantic result: the full result goes
to ``structuredContent`` (described by the tool's output schema) while the text part stays short, so an
agent's context is not flooded with floats. Every error the caller can fix arrives as a tool error
(``isError``) carrying the engine's message, which says what was wrong and what is allowed.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import numpy as np
from pydantic import BaseModel, Field

from sie_core import EncodeResult, Engine, InvalidInputError, SieError, SparseVector, __version__
from sie_core.families import family_of
from sie_core.requests import (
    Classes,
    Dims,
    EncodeRequest,
    ExtractRequest,
    FlatNer,
    Instruction,
    IsQuery,
    Labels,
    MultiLabel,
    Normalize,
    OutputDtype,
    OutputSchema,
    OutputTypes,
    RelationLabels,
    ScoreRequest,
    Threshold,
    TopK,
    parse,
)

from ._compat import CallToolResult, Context, Server, TextContent, ToolAnnotations, ToolError, lowlevel_server

__all__ = [
    "ClassOutput",
    "EncodeOutput",
    "EntityOutput",
    "ExtractOutput",
    "ExtractedText",
    "ListModelsOutput",
    "McpSettings",
    "ModelEntry",
    "RankedDocument",
    "RelationOutput",
    "RerankOutput",
    "create_server",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

_TOP_TERMS = 20  # terms per sparse vector in structuredContent.sparse[].top_terms
_TERMS_SHOWN = 10  # of those, in the text part

TASK_NAMES = {"encode": "encode", "score": "score", "rerank": "score", "extract": "extract"}


@dataclass(frozen=True)
class McpSettings:
    """How the MCP layer behaves on top of the engine (transport options live elsewhere).

    Attributes:
        name: Server name announced to clients.
        max_items_per_call: Most texts or documents one tool call may carry; keeps results (and an
            agent's context) bounded. The engine's own, larger limit still applies too.
        progress_interval_s: Seconds between progress notifications while a call waits (model loading),
            sent only when the client supplied a progress token.
        preview_lines: Most ranked documents or entities listed in a tool's text part.
    """

    name: str = "sie-agents"
    max_items_per_call: int = 256
    progress_interval_s: float = 1.0
    preview_lines: int = 20

    def __post_init__(self) -> None:
        if self.max_items_per_call < 1:
            raise ValueError(f"max_items_per_call must be positive, got {self.max_items_per_call}")
        if self.progress_interval_s <= 0:
            raise ValueError(f"progress_interval_s must be positive, got {self.progress_interval_s}")


# ---------------------------------------------------------------------------------------------- results
class SparseTerm(BaseModel):
    """One term of a sparse vector, as text."""

    token: str = Field(description="The vocabulary token (word piece) of the term.")
    weight: float = Field(description="Its weight; a query and a document match on the terms they share.")


class SparseOutput(BaseModel):
    """A sparse (SPLADE) vector: the non-zero terms only."""

    indices: list[int] = Field(description="Term ids (vocabulary indices), ascending.")
    values: list[float] = Field(description="The weight of each term in indices.")
    top_terms: list[SparseTerm] = Field(description="The heaviest terms as tokens, heaviest first (at most 20).")


class MultivectorOutput(BaseModel):
    """Per-token vectors (late interaction, ColBERT): one L2-normalised row per kept token."""

    num_tokens: int = Field(description="Rows: the tokens kept.")
    token_dims: int = Field(description="Dimensions of each token vector.")
    values: list[list[float]] = Field(description="The [num_tokens, token_dims] matrix.")


class EncodeOutput(BaseModel):
    """The outputs asked for (output_types), one per text, in input order."""

    model: str = Field(description="The model that produced the vectors.")
    count: int = Field(description="Number of texts encoded.")
    dims: int = Field(
        description="Dimensions of each dense vector (before bit packing when dtype is binary); 0 "
        "when dense was not asked for."
    )
    dtype: str = Field(description="float32, float16, int8, or binary (each vector packed 8 dimensions per byte).")
    vectors: list[list[int]] | list[list[float]] = Field(
        default_factory=list, description="Dense vectors, one per text (empty when dense was not asked for)."
    )
    sparse: list[SparseOutput] | None = Field(default=None, description="Sparse vectors, when asked for.")
    multivectors: list[MultivectorOutput] | None = Field(
        default=None, description="Token-vector matrices, when multivector was asked for."
    )
    tokens: list[int] = Field(description="Tokens each text had before any truncation.")
    truncated: list[int] = Field(description="Indices of texts longer than the model's window, cut before encoding.")


class RankedDocument(BaseModel):
    """One document with its relevance to the query."""

    rank: int = Field(description="1 = most relevant.")
    index: int = Field(description="Position of the document in the request's documents list.")
    relevance: float = Field(
        description="Relevance from 0 to 1: the sigmoid of a cross-encoder's score; MaxSim per query token for a "
        "late-interaction (ColBERT) model."
    )
    score: float = Field(description="The reranker's raw score (a logit, or MaxSim); higher is more relevant.")
    document: str = Field(description="The document text.")


class RerankOutput(BaseModel):
    """Documents ranked best first."""

    model: str = Field(description="The reranker that scored the documents.")
    results: list[RankedDocument] = Field(description="Documents sorted by relevance, best first (cut to top_k).")


class EntityOutput(BaseModel):
    """One extracted span; ``text == input[start:end]``."""

    text: str
    label: str
    score: float = Field(description="Confidence from 0 to 1.")
    start: int = Field(description="Character offset of the span's start in the input text.")
    end: int = Field(description="Character offset one past the span's end in the input text.")


class RelationOutput(BaseModel):
    """One relation: head —relation→ tail."""

    head: str = Field(description="The head entity's text.")
    relation: str = Field(description="The relation type, as requested.")
    tail: str = Field(description="The tail entity's text.")
    score: float = Field(description="Confidence from 0 to 1.")
    head_label: str = Field(description="The head entity's label.")
    head_start: int = Field(description="Character offset of the head entity in the input text.")
    head_end: int = Field(description="Offset one past the head entity's end.")
    tail_label: str = Field(description="The tail entity's label.")
    tail_start: int = Field(description="Character offset of the tail entity in the input text.")
    tail_end: int = Field(description="Offset one past the tail entity's end.")


class ClassOutput(BaseModel):
    """One class and its score."""

    label: str
    score: float = Field(description="Score from 0 to 1.")


class ExtractedText(BaseModel):
    """What was found in one input text."""

    index: int = Field(description="Position of the text in the request (0 when a single text was sent).")
    entities: list[EntityOutput] = Field(description="Entities ordered by start offset.")
    relations: list[RelationOutput] = Field(default_factory=list, description="Relations, best score first.")
    classifications: list[ClassOutput] = Field(default_factory=list, description="Classes, best first.")
    data: dict[str, Any] = Field(default_factory=dict, description="The output_schema's fields, by name.")


class ExtractOutput(BaseModel):
    """What was found in each input text."""

    model: str = Field(description="The extractor that found the entities.")
    results: list[ExtractedText] = Field(description="One entry per input text, in input order.")


class ModelEntry(BaseModel):
    """One model this server serves."""

    id: str = Field(description="The id to pass as the tools' model argument.")
    task: str = Field(description="encode (tool encode), score (tool rerank) or extract (tool extract).")
    default: bool = Field(description="Whether the tool for this task uses it when no model is named.")
    loaded: bool = Field(description="Whether it is in memory now (the first call to an unloaded model is slower).")
    state: str = Field(description="not_loaded, loading, loaded or failed.")
    device: str | None = Field(description="Device it runs on when loaded.")
    threads: int | None = Field(None, description="CPU threads one forward pass uses, when loaded on the CPU.")
    dims: int | None = Field(description="Dense vector dimensions (encode models), when known.")
    outputs: list[str] = Field(
        default_factory=list,
        description="For encode models: what encode's output_types may ask of it (dense, sparse, multivector).",
    )
    description: str = Field(description="What the model is good for.")
    finds: list[str] = Field(
        default_factory=list,
        description="For extract models: what it returns (entities, relations, classifications, data) - pass "
        "labels, relation_labels, classes or output_schema accordingly.",
    )
    labels: list[str] | None = Field(
        default=None, description="For fixed-label extractors (spaCy): the labels it can find; None = any labels."
    )


class ListModelsOutput(BaseModel):
    """The models this server will serve."""

    models: list[ModelEntry]
    defaults: dict[str, str] = Field(description="Default model per task (encode, score, extract).")
    allow_any_model: bool = Field(description="Whether hub model ids outside this list are accepted too.")


# ---------------------------------------------------------------------------------------------- parameters
# Options come from sie_core.requests, where each is defined once (type, bounds, description). The tools
# rename only the inputs (TOOL_RENAMES) and leave no option out except those in TOOL_OMITS.
MODEL_HELP = "Model id from list_models; omit to use this tool's default model (named in the tool description)."
TEXTS_HELP = "Texts to embed; one vector each, returned in the same order."
QUERY_HELP = "The search query or question."
DOCUMENTS_HELP = "Candidate documents (passages) to rank against the query."
TEXT_HELP = "One text to extract from (pass text or texts, not both)."
EXTRACT_TEXTS_HELP = "Several texts to extract from (pass text or texts, not both)."
TASK_HELP = "Only models for this task: encode, score (alias rerank) or extract; omit for all."

#: Tool argument -> the request field it fills, per tool (the request's own option names are used as they are).
TOOL_RENAMES: dict[str, dict[str, str]] = {
    "encode": {"texts": "items"},
    "rerank": {"documents": "items"},
    "extract": {"text": "items", "texts": "items"},
}
#: Request options a tool does not offer, and why (none today).
TOOL_OMITS: dict[str, dict[str, str]] = {"encode": {}, "rerank": {}, "extract": {}}
TOOL_REQUESTS: dict[str, type[BaseModel]] = {"encode": EncodeRequest, "rerank": ScoreRequest, "extract": ExtractRequest}

ANNOTATIONS: dict[str, Any] = {
    "readOnlyHint": True,
    "destructiveHint": False,
    "idempotentHint": True,
    "openWorldHint": False,
}


# ---------------------------------------------------------------------------------------------- helpers
def _fail(exc: SieError, items_name: str | None = None) -> ToolError:
    """The engine's message as a tool error, naming the tool's own parameter instead of the engine's."""
    message = str(exc)
    if items_name == "text" and message.startswith("items[0]"):  # one text was sent, not a list
        message = "text" + message[len("items[0]") :]
    elif items_name and message.startswith("items"):
        message = items_name + message[len("items") :]
    return ToolError(message)


def _check_count(name: str, values: Sequence[Any], limit: int) -> None:
    if not values:
        raise ToolError(f"{name} is empty; pass at least one text")
    if len(values) > limit:
        raise ToolError(
            f"{name} has {len(values):,} entries; at most {limit:,} are allowed per call on this server "
            "(split the work into several calls)"
        )


def _preview(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {plural or word + 's'}"


def _result(text: str, output: BaseModel) -> CallToolResult:
    # By wire (camelCase) names: the Python field names differ between mcp 1.x and 2.x.
    return CallToolResult.model_validate(
        {"content": [TextContent(type="text", text=text)], "structuredContent": output.model_dump(mode="json")}
    )


async def _with_progress(engine: Engine, ctx: Context, model: str, work: Awaitable[T], interval: float) -> T:
    """Await ``work``, sending a progress notification every ``interval`` seconds until it is done.

    The first call to a model waits for it to load (seconds, or minutes with a download); the
    notifications show the client life so it does not time out. ``report_progress`` sends nothing
    when the client gave no progress token.
    """
    task = asyncio.ensure_future(work)
    started = time.monotonic()
    beat = 0
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=interval)
            if done:
                return task.result()
            beat += 1
            doing = "running" if engine.model_state(model) == "loaded" else "loading model"
            await ctx.report_progress(beat, None, f"{doing} {model} ({time.monotonic() - started:.0f} s)")
    finally:
        if not task.done():
            task.cancel()
            task.add_done_callback(lambda t: t.cancelled() or t.exception())


def _encode_result(results: list[EncodeResult], output_types: Sequence[str], preview_lines: int) -> CallToolResult:
    """The encode tool's answer: the outputs in structuredContent, a summary an agent can read in the text part."""
    first = results[0]
    truncated = [i for i, r in enumerate(results) if r.truncated]
    output = EncodeOutput(
        model=first.model,
        count=len(results),
        dims=first.dims,
        dtype=first.dtype,
        vectors=[r.dense.tolist() for r in results if r.dense is not None],
        sparse=[_sparse_output(r.sparse) for r in results if r.sparse is not None]
        if "sparse" in output_types
        else None,
        multivectors=[
            MultivectorOutput(num_tokens=m.shape[0], token_dims=m.shape[1], values=m.astype(np.float32).tolist())
            for m in (r.multivector for r in results)
            if m is not None
        ]
        if "multivector" in output_types
        else None,
        tokens=[r.tokens for r in results],
        truncated=truncated,
    )
    n = _plural(len(results), "text")
    lines = []
    if output.vectors:
        lines.append(
            f"Encoded {n} with {first.model}: {_plural(len(results), 'vector')} of {first.dims} dimensions "
            f"({first.dtype}) in structuredContent.vectors."
        )
    if output.sparse is not None:
        lines.append(f"Sparse vectors of {n} from {first.model} in structuredContent.sparse; heaviest terms:")
        lines += [
            f"{i}. {_plural(len(v.indices), 'term')}: "
            + ", ".join(f"{t.token} {t.weight:.2f}" for t in v.top_terms[:_TERMS_SHOWN])
            for i, v in enumerate(output.sparse[:preview_lines])
        ]
    if output.multivectors is not None:
        lines.append(f"Token vectors of {n} from {first.model} in structuredContent.multivectors:")
        lines += [
            f"{i}. {m.num_tokens} x {m.token_dims} ({first.dtype})"
            for i, m in enumerate(output.multivectors[:preview_lines])
        ]
    if len(results) > preview_lines and (output.sparse is not None or output.multivectors is not None):
        lines.append(f"... {len(results) - preview_lines} more texts in structuredContent")
    if truncated:
        lines.append(f"{_plural(len(truncated), 'text')} exceeded the model's window and were cut: {truncated[:20]}.")
    return _result("\n".join(lines), output)


def _sparse_output(vector: SparseVector) -> SparseOutput:
    return SparseOutput(
        indices=vector.indices.tolist(),
        values=vector.values.astype(np.float64).tolist(),
        top_terms=[SparseTerm(token=t, weight=w) for t, w in vector.terms(_TOP_TERMS)],
    )


# ---------------------------------------------------------------------------------------------- descriptions
def _model_list(engine: Engine, task: str, limit: int = 8) -> str:
    ids = [s.id for s in engine.catalog if task in _tasks_of(s)]
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "") if ids else "none configured"


def _tasks_of(spec: Any) -> tuple[str, ...]:
    try:
        return family_of(spec).tasks
    except SieError:  # a misconfigured entry: its load will say what is wrong
        return (spec.task,)


def _descriptions(engine: Engine) -> dict[str, str]:
    d = engine.default_model
    policy = (
        " Any Hugging Face hub model id of the right kind is accepted too."
        if engine.config.allow_any_model
        else " Only the models list_models shows are accepted."
    )
    return {
        "encode": (
            "Embed texts with an embedding model, for semantic search, clustering and similarity: dense vectors "
            "(bi-encoders, sentence-transformers) by default; sparse term weights (SPLADE, output_types=['sparse']) "
            "for exact terms and names; per-token vectors (ColBERT, output_types=['multivector']) for late "
            "interaction - list_models shows each model's outputs. Results go to structuredContent (vectors, "
            "sparse, multivectors; one per text, in order); the text reply is a summary (a sparse vector's heaviest "
            "terms as words). Set is_query=true for search queries, false for documents. "
            f"Default model: {d('encode')}. Embedding models: {_model_list(engine, 'encode')}.{policy} "
            "Rerankers and extractors cannot encode."
        ),
        "rerank": (
            "Rank documents by relevance to a query with a reranker: a cross-encoder, or a late-interaction (ColBERT) "
            "model scored by MaxSim; returns the documents best first with their index, relevance (0-1) and raw "
            "score. Use it to reorder search results "
            f"before reading them. Default model: {d('score')}. Reranker models: {_model_list(engine, 'score')}."
            f"{policy} Embedding models and extractors cannot rerank."
        ),
        "extract": (
            "Extract from a text or texts: entities of the labels you name (e.g. person, organization, date, "
            "amount; each with text, label, score and start/end character offsets), relations between them "
            "(relation_labels, e.g. ['works for']: head —relation→ tail), classes (classes, e.g. ['invoice', "
            "'spam'], scored best first) and fields filled from an output_schema, as the model can: list_models "
            "says what each extractor finds (GLiNER: entities, any labels; spaCy: entities, fixed labels; NLI and "
            "GLiClass: classes; GLiREL: relations; GLiNER2: all four). Long texts are windowed, nothing is cut. "
            f"Default model: {d('extract')}. Extraction models: {_model_list(engine, 'extract')}.{policy} "
            "Embedding models and rerankers cannot extract."
        ),
        "list_models": (
            "List the models this server serves, with their task (encode → tool encode, score → tool rerank, "
            "extract → tool extract), whether each is the default or loaded, device, and a one-line description, "
            "so you can pick the model argument of the other tools."
        ),
    }


INSTRUCTIONS = (
    "sie-agents serves many models through one engine; name the model per call (model argument) or omit it for "
    "the task's default. encode: texts -> embedding vectors (embedding models). rerank: query + documents -> "
    "documents best first (reranker models). extract: text + labels / relation_labels / classes / output_schema -> "
    "entities with offsets, relations, classes, schema fields (extraction models). "
    "list_models shows the models, their tasks and which are loaded. The first call to a model loads it "
    "(seconds); later calls are fast."
)


def _capabilities(engine: Engine, model_id: str, task: str) -> dict[str, Any]:
    """What an extractor finds and, for a fixed-label one, its labels (from its catalog entry's family)."""
    spec = engine.catalog.get(model_id)
    if task != "extract" or spec is None:
        return {}
    try:
        family = family_of(spec)
    except SieError:
        return {}
    return {"finds": list(family.outputs), "labels": list(spec.labels) if family.labels == "fixed" else None}


def _extract_summary(per_text: list[ExtractedText], model_id: str, *, several: bool, limit: int) -> str:
    """The short text part: entities, relations (head —label→ tail), top classes and filled fields."""
    entities = [(t.index, e) for t in per_text for e in t.entities]
    relations = [(t.index, r) for t in per_text for r in t.relations]
    classified = [t for t in per_text if t.classifications]
    filled = [t for t in per_text if t.data]
    found = [_plural(len(entities), "entity", "entities")]
    if relations:
        found.append(_plural(len(relations), "relation"))
    if classified:
        found.append(f"classes for {_plural(len(classified), 'text')}")
    if filled:
        found.append(f"fields for {_plural(len(filled), 'text')}")
    head = f"Found {', '.join(found)} in {_plural(len(per_text), 'text')} with {model_id}"
    lines = [head + (":" if entities or relations or classified or filled else ".")]

    def where(index: int) -> str:
        return f"text {index} " if several else ""

    for index, e in entities[:limit]:
        lines.append(f"- {e.label}: {_preview(e.text, 80)!r} ({e.score:.2f}) at {where(index)}[{e.start}:{e.end}]")
    if len(entities) > limit:
        lines.append(f"... {len(entities) - limit} more entities in structuredContent.results")
    for index, r in relations[:limit]:
        head, tail = _preview(r.head, 60), _preview(r.tail, 60)
        lines.append(f"- {where(index)}{head!r} —{r.relation}→ {tail!r} ({r.score:.2f})")
    if len(relations) > limit:
        lines.append(f"... {len(relations) - limit} more relations in structuredContent.results")
    for t in classified[:limit]:
        top = ", ".join(f"{c.label} {c.score:.2f}" for c in t.classifications[:3])
        lines.append(f"- {where(t.index)}classes: {top}")
    for t in filled[:limit]:
        fields = "; ".join(f"{k}: {_preview(str(v), 60)}" for k, v in t.data.items())
        lines.append(f"- {where(t.index)}fields: {fields}")
    return "\n".join(lines)


def _extract_result(results: list[Any], several: bool, preview_lines: int) -> CallToolResult:
    per_text = [
        ExtractedText(
            index=i,
            entities=[
                EntityOutput(text=e.text, label=e.label, score=e.score, start=e.start, end=e.end) for e in r.entities
            ],
            relations=[RelationOutput(**rel.to_dict()) for rel in r.relations],
            classifications=[ClassOutput(label=c.label, score=c.score) for c in r.classifications],
            data=dict(r.data),
        )
        for i, r in enumerate(results)
    ]
    model_id = results[0].model
    text_part = _extract_summary(per_text, model_id, several=several, limit=preview_lines)
    return _result(text_part, ExtractOutput(model=model_id, results=per_text))


# ---------------------------------------------------------------------------------------------- strict arguments
def check_arguments(tool: str, arguments: dict[str, Any], allowed: Sequence[str]) -> None:
    """Check a tool call's arguments with the same rules (and messages) as the HTTP API.

    Strict types (no ``true`` for 1, no ``"10"`` for 10), bounds, and unknown arguments named; the request
    type of :mod:`sie_core.requests` decides. Limits of the engine's configuration are checked by the engine.

    Raises:
        ToolError: What was wrong and what is allowed.
    """
    unknown = [k for k in arguments if k not in allowed]
    if unknown:
        raise ToolError(f"unknown field {unknown[0]!r}; allowed: {', '.join(allowed)}")
    _check_tool_inputs(tool, arguments)
    request = TOOL_REQUESTS.get(tool)
    if request is None:
        if tool == "list_models" and not isinstance(arguments.get("task", ""), str | None):
            raise ToolError(f"task must be a string, got {type(arguments['task']).__name__}")
        return
    renames = TOOL_RENAMES.get(tool, {})
    data = {renames.get(k, k): v for k, v in arguments.items() if v is not None or k not in renames}
    if tool == "extract" and (arguments.get("text") is None) == (arguments.get("texts") is None):
        raise ToolError("pass either text (one string) or texts (a list of strings), not both and not neither")
    try:
        parse(request, data, where="the arguments")
    except InvalidInputError as exc:
        items_name = next((k for k in renames if k in arguments), next(iter(renames), "items"))
        raise _fail(exc, items_name) from None


#: The tool inputs whose type differs from the request's: (tool, argument) -> (a list of strings?, what it is).
_TOOL_INPUTS: dict[tuple[str, str], tuple[bool, str]] = {
    ("encode", "texts"): (True, "a list of strings"),
    ("rerank", "documents"): (True, "a list of strings"),
    ("rerank", "query"): (False, "a string"),
    ("extract", "text"): (False, "a string"),
    ("extract", "texts"): (True, "a list of strings"),
}


def _check_tool_inputs(tool: str, arguments: dict[str, Any]) -> None:
    for name, value in arguments.items():
        if isinstance(value, str) and (tool, name) != ("rerank", "query"):
            # The SDK would decode a string holding JSON ("null", "[...]", "{...}") into that value; a strict
            # API takes the value itself, as the HTTP API does.
            try:
                decoded = json.loads(value)
            except (ValueError, RecursionError):
                decoded = value
            if decoded is None or isinstance(decoded, list | dict):
                raise ToolError(f"{name} is a string holding JSON ({_preview(value, 40)!r}); send the value itself")
        shape = _TOOL_INPUTS.get((tool, name))
        if shape is None or value is None:
            continue
        is_list, what = shape
        if is_list and not isinstance(value, list):
            raise ToolError(f"{name} must be {what}, got {_kind(value)}")
        if not is_list and not isinstance(value, str):
            raise ToolError(f"{name} must be {what}, got {_kind(value)}")
        for i, entry in enumerate(value if is_list else ()):
            if not isinstance(entry, str):
                raise ToolError(f"{name}[{i}] must be a string, got {_kind(entry)}")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class _StrictServer(Server):
    """The SDK's server with every tool call's arguments checked strictly first (see :func:`check_arguments`)."""

    async def call_tool(self, name: str, arguments: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        allowed = self.__dict__.get("_sie_tool_args", {}).get(name)
        if allowed is not None:
            check_arguments(name, arguments or {}, allowed)
        return await super().call_tool(name, arguments, *args, **kwargs)


# ---------------------------------------------------------------------------------------------- server
def create_server(engine: Engine, settings: McpSettings | None = None) -> Any:
    """Build the MCP server (an ``MCPServer`` on mcp 2.x, a ``FastMCP`` on mcp 1.x) over ``engine``.

    Nothing is loaded here; each model loads on its first call. The caller owns ``engine`` and closes
    it after the server stops.

    Args:
        engine: The engine every tool calls.
        settings: MCP-layer options; defaults to :class:`McpSettings` defaults.

    Returns:
        The server object; run it with :func:`sie_mcp.run_stdio` or serve it over HTTP with
        :func:`sie_mcp.create_http_app`.
    """
    s = settings or McpSettings()
    server = _StrictServer(s.name, instructions=INSTRUCTIONS)
    lowlevel_server(server).version = __version__
    describe = _descriptions(engine)
    interval = s.progress_interval_s

    def default_id(task: str) -> str:
        name = engine.default_model(task)
        spec = engine.catalog.get(name)
        return spec.id if spec is not None else name

    async def encode(
        texts: Annotated[list[str], Field(description=TEXTS_HELP)],
        ctx: Context,
        model: Annotated[str | None, Field(description=MODEL_HELP)] = None,
        is_query: IsQuery = False,
        instruction: Instruction = None,
        normalize: Normalize = None,
        dims: Dims = None,
        output_dtype: OutputDtype = "float32",
        output_types: OutputTypes = ["dense"],  # noqa: B006 - never mutated; the schema shows the default
    ) -> Annotated[CallToolResult, EncodeOutput]:
        _check_count("texts", texts, s.max_items_per_call)
        name = model or default_id("encode")
        work = engine.aencode(
            model,
            texts,
            is_query=is_query,
            instruction=instruction,
            normalize=normalize,
            dims=dims,
            output_dtype=output_dtype,
            output_types=output_types,
        )
        try:
            results = await _with_progress(engine, ctx, name, work, interval)
        except SieError as exc:
            raise _fail(exc, "texts") from None
        return _encode_result(results, output_types, s.preview_lines)

    async def rerank(
        query: Annotated[str, Field(description=QUERY_HELP)],
        documents: Annotated[list[str], Field(description=DOCUMENTS_HELP)],
        ctx: Context,
        model: Annotated[str | None, Field(description=MODEL_HELP)] = None,
        top_k: TopK = None,
    ) -> Annotated[CallToolResult, RerankOutput]:
        _check_count("documents", documents, s.max_items_per_call)
        name = model or default_id("score")
        try:
            result = await _with_progress(
                engine, ctx, name, engine.ascore(model, query, documents, top_k=top_k), interval
            )
        except SieError as exc:
            raise _fail(exc, "documents") from None
        ranked = [
            RankedDocument(
                rank=e.rank + 1, index=e.index, relevance=e.relevance, score=e.score, document=documents[e.index]
            )
            for e in result.scores
        ]
        lines = [f"Ranked {_plural(len(documents), 'document')} with {result.model}, best first:"]
        lines += [
            f"{r.rank}. [index {r.index}] relevance {r.relevance:.3f} (score {r.score:.2f}): {_preview(r.document)}"
            for r in ranked[: s.preview_lines]
        ]
        if len(ranked) > s.preview_lines:
            lines.append(f"... {len(ranked) - s.preview_lines} more in structuredContent.results")
        return _result("\n".join(lines), RerankOutput(model=result.model, results=ranked))

    async def extract(
        ctx: Context,
        text: Annotated[str | None, Field(description=TEXT_HELP)] = None,
        texts: Annotated[list[str] | None, Field(description=EXTRACT_TEXTS_HELP)] = None,
        labels: Labels = None,
        relation_labels: RelationLabels = None,
        classes: Classes = None,
        output_schema: OutputSchema = None,
        model: Annotated[str | None, Field(description=MODEL_HELP)] = None,
        threshold: Threshold = 0.5,
        flat_ner: FlatNer = True,
        multi_label: MultiLabel = False,
    ) -> Annotated[CallToolResult, ExtractOutput]:
        if (text is None) == (texts is None):
            raise ToolError("pass either text (one string) or texts (a list of strings), not both and not neither")
        items: str | list[str] = text if text is not None else list(texts or [])
        if isinstance(items, list):
            _check_count("texts", items, s.max_items_per_call)
        name = model or default_id("extract")
        work = engine.aextract(
            model,
            items,
            labels=labels,
            relation_labels=relation_labels,
            classes=classes,
            output_schema=output_schema,
            threshold=threshold,
            flat_ner=flat_ner,
            multi_label=multi_label,
        )
        try:
            found_in = await _with_progress(engine, ctx, name, work, interval)
        except SieError as exc:
            raise _fail(exc, "text" if text is not None else "texts") from None
        results = found_in if isinstance(found_in, list) else [found_in]
        # A long text can carry tens of thousands of entities: shape them off the event loop, so that other
        # calls on this server (list_models, another model's encode) are not held up meanwhile.
        return await asyncio.to_thread(_extract_result, results, texts is not None, s.preview_lines)

    async def list_models(
        task: Annotated[str | None, Field(description=TASK_HELP)] = None,
    ) -> Annotated[CallToolResult, ListModelsOutput]:
        wanted = None
        if task is not None:
            wanted = TASK_NAMES.get(task.strip().lower())
            if wanted is None:
                raise ToolError(f"task {task!r} is not known; use encode, score (or rerank) or extract")
        try:
            infos = await engine.alist_models(wanted)
        except SieError as exc:
            raise _fail(exc) from None
        defaults = {t: default_id(t) for t in ("encode", "score", "extract")}

        def task_of(tasks: Sequence[str]) -> str:
            # A model with several tasks (a ColBERT encoder also reranks) is listed under the one asked for.
            return wanted if wanted is not None and wanted in tasks else tasks[0]

        entries = [
            ModelEntry(
                id=i.id,
                task=task_of(i.tasks),
                default=defaults.get(task_of(i.tasks)) == i.id,
                loaded=i.loaded,
                state=i.state,
                device=i.device,
                threads=i.threads,
                dims=i.dims,
                description=i.description,
                outputs=list(i.outputs) if "encode" in i.tasks else [],
                **_capabilities(engine, i.id, task_of(i.tasks)),
            )
            for i in infos
        ]
        lines = [f"{_plural(len(entries), 'model')} (task: encode → encode tool, score → rerank, extract → extract):"]
        for m in entries:
            flags = [f for f, on in (("default", m.default), (f"loaded on {m.device}", m.loaded)) if on]
            if m.state == "failed":
                flags.append("failed to load")
            mark = f" [{', '.join(flags)}]" if flags else ""
            if m.outputs and m.outputs != ["dense"]:
                mark += f" (outputs {', '.join(m.outputs)})"
            if m.finds:
                mark += f" (finds {', '.join(m.finds)}" + (f"; labels: {', '.join(m.labels)}" if m.labels else "") + ")"
            lines.append(f"- {m.task}: {m.id}{mark}" + (f" — {m.description}" if m.description else ""))
        output = ListModelsOutput(models=entries, defaults=defaults, allow_any_model=engine.config.allow_any_model)
        return _result("\n".join(lines), output)

    titles = {
        "encode": "Embed texts",
        "rerank": "Rerank documents",
        "extract": "Extract entities",
        "list_models": "List models",
    }
    tool_args: dict[str, list[str]] = {}
    for fn in (encode, rerank, extract, list_models):
        name = fn.__name__
        tool_args[name] = [p for p in inspect.signature(fn).parameters if p != "ctx"]
        annotations = ToolAnnotations(title=titles[name], **ANNOTATIONS)
        server.add_tool(fn, name=name, title=titles[name], description=describe[name], annotations=annotations)
    server.__dict__["_sie_tool_args"] = tool_args
    return server
