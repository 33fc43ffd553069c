"""Agent tools: extract (SIEExtractor), rerank and search — each optionally letting the agent pick the model.

Every tool returns ``(content, artifact)`` (``response_format="content_and_artifact"``): a short text the
chat model reads, and the full structured result for code. When a tool is built with ``models=[...]`` its
input schema gains a ``model`` argument whose JSON schema is an enum of those ids, described one line per
model — this is how an agent chooses the model per task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.documents import Document
from langchain_core.tools import BaseTool, ToolException
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    create_model,
    field_validator,
)

from sie_core import Engine, ExtractResult, InvalidInputError, ScoreResult, SieError
from sie_core.requests import Classes, Labels, OutputSchema, RelationLabels, Threshold, TopK, describe

from ._engine import SIEEngineClient
from .retrievers import SIERetriever

__all__ = ["SIEExtractor", "SIERerankTool", "SIESearchTool"]

_SNIPPET = 500  # characters of each passage shown to the chat model
_MAX_LISTED = 25  # entities listed in an extract tool's text content


def model_choices_text(engine: Engine, models: Sequence[str]) -> str:
    """One line per model (``id: description``) for a tool's ``model`` argument."""
    lines = []
    for model in models:
        spec = engine.catalog.get(model)
        description = spec.description if spec is not None and spec.description else ""
        lines.append(f"- {model}: {description}" if description else f"- {model}")
    return "\n".join(lines)


def _with_model_arg(base: type[BaseModel], name: str, models: Sequence[str], engine: Engine) -> type[BaseModel]:
    """``base`` plus a ``model`` field whose type is ``Literal[*models]`` (an enum in the JSON schema)."""
    literal: Any = Literal.__getitem__(tuple(models))  # Literal[models] with the ids known only at run time
    # Pydantic writes a one-value Literal as "const"; the schema always says "enum" so every provider reads it.
    choice: Any = Annotated[literal, WithJsonSchema({"type": "string", "enum": list(models)})]
    description = "Which model to use (default: the first):\n" + model_choices_text(engine, models)
    return create_model(name, __base__=base, model=(choice, Field(default=models[0], description=description)))


class _SIETool(SIEEngineClient, BaseTool):
    """Shared behaviour: engine resolution, model choice, and engine errors turned into tool errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), arbitrary_types_allowed=True)

    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    handle_tool_error: bool | str | Callable[[ToolException], str] | None = True
    """Engine errors reach the chat model as the tool's answer (so it can correct the call) instead of raising."""
    models: list[str] | None = None
    """Models the agent may choose from per call (adds an enum ``model`` argument); None: the tool's ``model``."""

    @field_validator("models")
    @classmethod
    def _check_models(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value or not all(isinstance(m, str) and m.strip() for m in value):
                raise InvalidInputError("models must be a non-empty list of model id strings")
            if len(set(value)) != len(value):
                raise InvalidInputError(f"models lists a model twice: {value}")
        return value

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        if self.models:
            base = self.args_schema
            assert isinstance(base, type) and issubclass(base, BaseModel)
            self.args_schema = _with_model_arg(base, f"{base.__name__}WithModel", self.models, self.client)

    def _pick(self, model: str | None, default: str | None) -> str | None:
        if model is None:
            return self.models[0] if self.models else default
        if self.models and model not in self.models:
            raise ToolException(f"model {model!r} is not offered by this tool; use one of {', '.join(self.models)}")
        return model


class ExtractInput(BaseModel):
    """Arguments of the extract tool."""

    text: str = Field(description="The text to find entities in.")
    labels: list[str] | None = Field(
        default=None,
        description="Entity types to find, e.g. ['person', 'organization', 'date']; default: the tool's labels.",
    )
    classes: list[str] | None = Field(
        default=None,
        description="Classes to score the text against, e.g. ['invoice', 'complaint'] (classification models); "
        "default: the tool's classes.",
    )
    relation_labels: list[str] | None = Field(
        default=None,
        description="Relation types to find between entities, e.g. ['works for'] (relation models); default: "
        "the tool's.",
    )


class SIEExtractor(_SIETool):
    """Zero-shot entity extraction (GLiNER-style) as an agent tool: any labels, named per call if wanted.

    The content the chat model reads is one short line per entity, relation (``head —relation→ tail``), the
    top classes and the filled fields; the artifact holds the full result (``model``, ``labels``, ``entities``
    with ``text``, ``label``, ``score``, ``start``, ``end``, and ``relations``, ``classifications`` and ``data``
    as SIE's ``ExtractResult`` names them).

    Args:
        model: Extract model id; None uses the engine's default extractor.
        labels: Entity types found when a call names none.
        relation_labels: Relation types (GLiREL, GLiNER2) found when a call names none.
        classes: Classes (NLI, GLiClass, GLiNER2) scored when a call names none.
        threshold: Minimum confidence, 0..1.
        options: More engine extract options: ``flat_ner`` (no overlapping spans, default True),
            ``multi_label`` (one span may carry several labels, a text several classes; default False) and
            ``output_schema`` (fields to fill, GLiNER2: a JSON-Schema object; not a field of its own, since a
            LangChain tool's ``output_schema`` is its result's schema).
        models: Models the agent may choose from per call (adds an enum ``model`` argument).
        engine: An existing :class:`sie_core.Engine`; by default the process-wide shared one.
        base_url: URL of a remote SIE-compatible server instead of in-process models.
        api_key: Bearer token for ``base_url``.

    Example:
        >>> from sie_langchain import SIEExtractor
        >>> extractor = SIEExtractor(labels=["person", "organization", "location"])
        >>> extractor.invoke({"text": "Alice Smith works for Globex in Paris."})  # doctest: +SKIP
        'person: Alice Smith (0.97)...'
    """

    name: str = "sie_extract"
    description: str = (
        "Extract entities from a text: pass the text and the entity types (labels) to find, e.g. "
        "['person', 'organization', 'date', 'amount']. Returns each entity found with its label and confidence."
    )
    args_schema: Any = ExtractInput

    model: str | None = None
    """Extract model id; None uses the engine's default extractor."""
    labels: list[str] = Field(
        default_factory=lambda: ["person", "organization", "location"], description=describe(Labels)
    )
    """Entity types found when a call names none."""
    relation_labels: RelationLabels = None
    """Relation types found when a call names none."""
    classes: Classes = None
    """Classes scored when a call names none."""
    threshold: Threshold = 0.5
    """Minimum confidence for an entity, 0..1."""
    options: dict[str, Any] | None = None
    """More extract options: ``flat_ner`` and ``multi_label`` (booleans), ``output_schema`` (an object)."""

    @field_validator("options")
    @classmethod
    def _check_options(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        allowed = {"flat_ner", "multi_label", "output_schema"}
        unknown = sorted(set(value or {}) - allowed)
        if unknown:
            raise InvalidInputError(
                f"unknown extract option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
            )
        for key, flag in (value or {}).items():
            if key == "output_schema":
                try:
                    TypeAdapter(OutputSchema).validate_python(flag)
                except ValidationError as exc:
                    raise InvalidInputError(f"extract option output_schema: {exc.errors()[0]['msg']}") from None
                continue
            if not isinstance(flag, bool):
                raise InvalidInputError(f"extract option {key} must be true or false, got {flag!r}")
        return value

    def _call_args(
        self,
        labels: list[str] | None,
        model: str | None,
        classes: list[str] | None = None,
        relation_labels: list[str] | None = None,
    ) -> tuple[str | None, dict[str, Any]]:
        options = self.options or {}
        classes = classes or self.classes
        relation_labels = relation_labels or self.relation_labels
        # The default entity labels go along only when the call asks for entities at all (a classifier has none).
        output_schema = options.get("output_schema")
        other_kinds = bool(classes or output_schema) and not relation_labels
        default_labels = self.labels if "labels" in self.model_fields_set or not other_kinds else None
        kwargs = {
            "labels": labels or default_labels,
            "threshold": self.threshold,
            "flat_ner": options.get("flat_ner", True),
            "multi_label": options.get("multi_label", False),
        }
        for key, value in (
            ("classes", classes),
            ("relation_labels", relation_labels),
            ("output_schema", output_schema),
        ):
            if value is not None:
                kwargs[key] = value
        return self._pick(model, self.model), kwargs

    def _run(
        self,
        text: str,
        labels: list[str] | None = None,
        model: str | None = None,
        run_manager: CallbackManagerForToolRun | None = None,
        classes: list[str] | None = None,
        relation_labels: list[str] | None = None,
    ) -> tuple[str, dict[str, Any]]:
        name, kwargs = self._call_args(labels, model, classes, relation_labels)
        try:
            result = self.client.extract(name, text, **kwargs)
        except SieError as exc:
            raise ToolException(str(exc)) from exc
        return _extract_output(result, kwargs["labels"])

    async def _arun(
        self,
        text: str,
        labels: list[str] | None = None,
        model: str | None = None,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
        classes: list[str] | None = None,
        relation_labels: list[str] | None = None,
    ) -> tuple[str, dict[str, Any]]:
        name, kwargs = self._call_args(labels, model, classes, relation_labels)
        try:
            result = await self.client.aextract(name, text, **kwargs)
        except SieError as exc:
            raise ToolException(str(exc)) from exc
        return _extract_output(result, kwargs["labels"])


def _extract_output(result: ExtractResult, labels: Sequence[str] | None) -> tuple[str, dict[str, Any]]:
    entities = [e.to_dict() for e in result.entities]
    artifact = {
        "model": result.model,
        "labels": list(labels or []),
        "entities": entities,
        "relations": [r.to_dict() for r in result.relations],
        "classifications": [c.to_dict() for c in result.classifications],
        "data": dict(result.data),
    }
    lines = [f"{e['label']}: {e['text']} ({e['score']:.2f})" for e in entities[:_MAX_LISTED]]
    if len(entities) > _MAX_LISTED:
        lines.append(f"... and {len(entities) - _MAX_LISTED} more")
    lines += [f"{r.head} —{r.relation}→ {r.tail} ({r.score:.2f})" for r in result.relations[:_MAX_LISTED]]
    if len(result.relations) > _MAX_LISTED:
        lines.append(f"... and {len(result.relations) - _MAX_LISTED} more relations")
    if result.classifications:
        lines.append("classes: " + ", ".join(f"{c.label} {c.score:.2f}" for c in result.classifications[:5]))
    lines += [f"{name}: {value}" for name, value in result.data.items()]
    if not lines:
        return f"No entities found for labels: {', '.join(labels or [])}.", artifact
    return "\n".join(lines), artifact


class RerankInput(BaseModel):
    """Arguments of the rerank tool."""

    query: str = Field(description="What the passages should answer or be about.")
    documents: list[str] = Field(description="The candidate passages to order by relevance to the query.")
    top_k: TopK = None


class SIERerankTool(_SIETool):
    """Rerank candidate passages against a query with a cross-encoder, as an agent tool.

    The content lists the passages best first with their index in the input and relevance (0..1); the
    artifact holds ``model`` and ``results`` (``index``, ``relevance_score``, ``score`` (logit), ``text``).

    Args:
        model: Score model id; None uses the engine's default reranker.
        top_k: Default number of passages to keep when a call names none.
        models: Models the agent may choose from per call (adds an enum ``model`` argument).
        engine / base_url / api_key: As for every sie_langchain class.
    """

    name: str = "sie_rerank"
    description: str = (
        "Order candidate passages by how well they answer a query (cross-encoder reranking). "
        "Pass the query and the passages; returns them best first with a relevance score from 0 to 1."
    )
    args_schema: Any = RerankInput

    model: str | None = None
    """Score model id; None uses the engine's default reranker."""
    top_k: TopK = None
    """Passages to keep when a call names no ``top_k``."""

    def _run(
        self,
        query: str,
        documents: list[str],
        top_k: int | None = None,
        model: str | None = None,
        run_manager: CallbackManagerForToolRun | None = None,
    ) -> tuple[str, dict[str, Any]]:
        try:
            result = self.client.score(self._pick(model, self.model), query, documents, top_k=top_k or self.top_k)
        except SieError as exc:
            raise ToolException(str(exc)) from exc
        return _rerank_output(result, documents)

    async def _arun(
        self,
        query: str,
        documents: list[str],
        top_k: int | None = None,
        model: str | None = None,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
    ) -> tuple[str, dict[str, Any]]:
        try:
            name = self._pick(model, self.model)
            result = await self.client.ascore(name, query, documents, top_k=top_k or self.top_k)
        except SieError as exc:
            raise ToolException(str(exc)) from exc
        return _rerank_output(result, documents)


def _rerank_output(result: ScoreResult, documents: Sequence[str]) -> tuple[str, dict[str, Any]]:
    results = [
        {"index": e.index, "relevance_score": e.relevance, "score": e.score, "text": documents[e.index]}
        for e in result.scores
    ]
    lines = [
        f"{rank + 1}. [document {e.index}] relevance {e.relevance:.3f}: {_snippet(documents[e.index])}"
        for rank, e in enumerate(result.scores)
    ]
    return "\n".join(lines), {"model": result.model, "results": results}


class SearchInput(BaseModel):
    """Arguments of the search tool."""

    query: str = Field(description="What to search the corpus for.")
    k: int | None = Field(default=None, ge=1, le=100, description="How many passages to return.")


class SIESearchTool(_SIETool):
    """Search a :class:`SIERetriever`'s corpus, as an agent tool.

    The content lists the passages found, best first, with their id and similarity; the artifact holds
    ``model`` and ``documents`` (``id``, ``text``, ``metadata``).

    Args:
        retriever: The retriever whose corpus is searched (its ``k``, ``rerank_model`` and engine apply).
        models: Encode models the agent may choose from per call (own index only).
    """

    name: str = "sie_search"
    description: str = (
        "Search the document collection for passages about a query (semantic search). "
        "Returns the best passages with their ids."
    )
    args_schema: Any = SearchInput

    retriever: SIERetriever
    """The retriever whose corpus is searched."""

    def __init__(self, **data: Any) -> None:
        retriever = data.get("retriever")
        if data.get("engine") is None and isinstance(retriever, SIERetriever) and data.get("base_url") is None:
            data["engine"] = retriever.client  # model descriptions come from the engine that searches
        super().__init__(**data)
        if self.models and self.retriever.vectorstore is not None and len(self.models) > 1:
            raise InvalidInputError(
                "a retriever over a vectorstore searches with the store's embeddings; offer no models"
            )

    def _model(self, model: str | None) -> str | None:
        if self.retriever.vectorstore is not None:
            return None
        return self._pick(model, None)

    def _used_model(self, model: str | None) -> str | None:
        """The encode model that searched (None for a vector store, whose embeddings are its own)."""
        return None if self.retriever.vectorstore is not None else self.retriever._model_name(model)

    def _run(
        self,
        query: str,
        k: int | None = None,
        model: str | None = None,
        run_manager: CallbackManagerForToolRun | None = None,
    ) -> tuple[str, dict[str, Any]]:
        try:
            name = self._model(model)
            docs = self.retriever.search(query, k=k, model=name)
        except SieError as exc:
            raise ToolException(str(exc)) from exc
        return _search_output(docs, self._used_model(name))

    async def _arun(
        self,
        query: str,
        k: int | None = None,
        model: str | None = None,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
    ) -> tuple[str, dict[str, Any]]:
        try:
            name = self._model(model)
            docs = await self.retriever.asearch(query, k=k, model=name)
        except SieError as exc:
            raise ToolException(str(exc)) from exc
        return _search_output(docs, self._used_model(name))


def _search_output(docs: Sequence[Document], model: str | None) -> tuple[str, dict[str, Any]]:
    documents = [{"id": d.id, "text": d.page_content, "metadata": d.metadata} for d in docs]
    if not documents:
        return "No passages found.", {"model": model, "documents": []}
    lines = []
    for rank, d in enumerate(docs):
        score = d.metadata.get("relevance_score", d.metadata.get("similarity_score"))
        shown = f" score {score:.3f}" if isinstance(score, float) else ""
        lines.append(f"{rank + 1}. [id {d.id}]{shown}: {_snippet(d.page_content)}")
    return "\n".join(lines), {"model": model, "documents": documents}


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET else text[: _SNIPPET - 1] + "…"
