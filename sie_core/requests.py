"""Typed requests: every option of encode, score and extract, defined once.

Each option is an ``Annotated`` alias below (type, bounds, one-line description); the engine's requests
(:class:`EncodeRequest`, :class:`ScoreRequest`, :class:`ExtractRequest`), the SIE wire bodies, the OpenAI and
``/v1/rerank`` bodies, the MCP tools and the LangChain classes all use these aliases, so an option reads the
same everywhere. Validation is strict (no ``true`` for 1, no ``"10"`` for 10) and unknown fields are
rejected by name; :func:`parse` turns pydantic's errors into one :class:`~sie_core.InvalidInputError`
whose message says what was wrong and what is allowed.

Limits that depend on the engine's configuration (items per call, characters per text, labels per call,
a model's dimensions) are checked by the engine when it receives a request.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

from .errors import InvalidInputError

__all__ = [
    "BODY_RENAMES",
    "OPTION_NAMES",
    "EmbeddingsBody",
    "EncodeBody",
    "EncodeKwargs",
    "EncodeRequest",
    "ErrorEnvelope",
    "ExtractBody",
    "ExtractKwargs",
    "ExtractRequest",
    "RerankBody",
    "ScoreBody",
    "ScoreRequest",
    "TextItem",
    "describe",
    "invalid_input",
    "parse",
]

M = TypeVar("M", bound=BaseModel)

_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=False)
_NON_TEXT_KEYS = ("images", "image", "audio", "video", "document", "multivector")
#: Containers whose names are left out of messages, so an option reads the same in every front end.
_CONTAINERS = frozenset({"params", "options"})


# ---------------------------------------------------------------------- items
class TextItem(BaseModel):
    """One input text, shaped like SIE's ``Item`` (``{"text": ..., "id": ...}``)."""

    model_config = _STRICT

    text: str = Field(description="The text to encode, score or extract from.")
    id: str | None = Field(default=None, description="Caller's id for the item, echoed back in the result.")
    metadata: dict[str, Any] | None = Field(default=None, description="Free-form caller data; ignored.")


def _describe(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _item(value: Any, where: str) -> Any:
    if isinstance(value, str):
        return {"text": value}
    if isinstance(value, Mapping):
        for key in _NON_TEXT_KEYS:
            if key in value:
                detail = {"where": where, "key": repr(key)}
                message = "{where} has {key}; this engine reads the 'text' of items only"
                raise PydanticCustomError("sie", message, detail)
        if "text" not in value:
            keys = ", ".join(sorted(repr(k) for k in value)) or "none"
            raise PydanticCustomError(
                "sie", "{where} has no 'text' (keys: {keys}); every item needs a text", {"where": where, "keys": keys}
            )
        return value
    raise PydanticCustomError(
        "sie",
        "{where} is of type {kind}; expected a string or an Item with 'text'",
        {"where": where, "kind": _describe(value)},
    )


def _items(value: Any) -> Any:
    if isinstance(value, (str, Mapping)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise PydanticCustomError(
            "sie", "items is of type {kind}; pass a string, an Item, or a list of them", {"kind": _describe(value)}
        )
    return [_item(v, f"items[{i}]") for i, v in enumerate(value)]


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _query(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        raise PydanticCustomError("sie", "query must be one string or Item, not a list", {})
    return _item(value, "query")


Items = Annotated[
    list[TextItem],
    BeforeValidator(_items),
    Field(min_length=1, description="The inputs: texts or items like {'text': '...', 'id': '...'}; one result each."),
]
Query = Annotated[TextItem, BeforeValidator(_query), Field(description="The query text or item to score against.")]

# ---------------------------------------------------------------------- options (each defined once)
ModelId = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=300,
        description="Model id (see list_models); omit to use the configured default model for the task.",
    ),
]
OutputType = Literal["dense", "sparse", "multivector"]
OutputTypes = Annotated[
    list[OutputType],
    BeforeValidator(_listed),
    Field(
        min_length=1,
        max_length=3,
        description="Which outputs to return: dense, sparse and/or multivector (each model produces the ones "
        "list_models names).",
    ),
]
Instruction = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=2000,
        description="Task instruction for instruction-tuned models; replaces the query/document prompt.",
    ),
]
IsQuery = Annotated[
    bool,
    Field(description="True for search queries (applies the model's query prompt); false for documents."),
]
Normalize = Annotated[
    bool | None,
    Field(description="L2-normalize the vectors; omit for the model's default."),
]
OutputDtype = Annotated[
    Literal["float32", "float16", "int8", "binary"],
    Field(description="float32, float16, int8 (scaled by 127), or binary (sign bits packed 8 per byte)."),
]
Dims = Annotated[
    int | None,
    Field(
        ge=1,
        le=65536,
        description="Keep only the first dims dimensions (Matryoshka truncation, re-normalized); omit for all.",
    ),
]
TopK = Annotated[
    int | None,
    Field(ge=1, le=100000, description="Return only the top_k most relevant items; omit for all."),
]
_Label = Annotated[str, Field(min_length=1, max_length=200)]
Labels = Annotated[
    Annotated[list[_Label], Field(min_length=1)] | None,
    BeforeValidator(lambda v: [v] if isinstance(v, str) else _listed(v)),
    Field(description="Entity types to find, in plain words, e.g. ['person', 'organization', 'date']."),
]
Threshold = Annotated[
    float,
    Field(ge=0.0, le=1.0, allow_inf_nan=False, description="Minimum confidence from 0 to 1; lower finds more."),
]
FlatNer = Annotated[bool, Field(description="No overlapping entities (true) or allow nested ones (false).")]
MultiLabel = Annotated[
    bool,
    Field(description="Allow one span to carry several labels, and one text several classes (independent scores)."),
]
RelationLabels = Annotated[
    Annotated[list[_Label], Field(min_length=1, max_length=100)] | None,
    BeforeValidator(lambda v: [v] if isinstance(v, str) else _listed(v)),
    Field(
        description="Relation types to find between the entities, in plain words, e.g. ['works for', 'located in'].",
    ),
]
Classes = Annotated[
    Annotated[list[_Label], Field(min_length=1, max_length=100)] | None,
    BeforeValidator(lambda v: [v] if isinstance(v, str) else _listed(v)),
    Field(
        description="Classes to sort each text into (zero-shot), e.g. ['invoice', 'complaint', 'spam']; "
        "each class is scored, best first.",
    ),
]
_FIELD_TYPES = ("string", "number", "integer", "boolean", "array")
_FIELD_KEYS = frozenset({"type", "description", "enum", "items", "title"})
_SCHEMA_KEYS = frozenset({"type", "properties", "required", "additionalProperties", "description", "title"})


def _output_schema(value: Any) -> Any:
    """Check an output schema's shape: an object with named fields, each with a type and a description."""
    if value is None or not isinstance(value, Mapping):
        return value
    unknown = sorted(set(value) - _SCHEMA_KEYS)
    if unknown:
        raise PydanticCustomError(
            "sie",
            "output_schema has unknown key(s) {keys}; allowed: {allowed}",
            {"keys": ", ".join(map(repr, unknown)), "allowed": ", ".join(sorted(_SCHEMA_KEYS))},
        )
    if value.get("type", "object") != "object":
        raise PydanticCustomError("sie", "output_schema.type must be 'object' (a schema of named fields)", {})
    fields = value.get("properties")
    if not isinstance(fields, Mapping) or not fields:
        raise PydanticCustomError(
            "sie",
            "output_schema needs 'properties': the fields to fill, e.g. "
            "{'total': {'type': 'string', 'description': 'the amount due'}}",
            {},
        )
    if len(fields) > 64:
        raise PydanticCustomError("sie", "output_schema has {n} properties; at most 64 are allowed", {"n": len(fields)})
    for name, spec in fields.items():
        where = f"output_schema.properties[{name!r}]"
        if not isinstance(name, str) or not name.strip() or len(name) > 200 or any(c in name for c in ":|[]"):
            raise PydanticCustomError(
                "sie", "{where}: a field name must be 1-200 characters without : | [ ]", {"where": where}
            )
        if not isinstance(spec, Mapping):
            raise PydanticCustomError(
                "sie", "{where} must be an object with a type and a description", {"where": where}
            )
        extra = sorted(set(spec) - _FIELD_KEYS)
        if extra:
            raise PydanticCustomError(
                "sie",
                "{where} has unknown key(s) {keys}; allowed: {allowed}",
                {"where": where, "keys": ", ".join(map(repr, extra)), "allowed": ", ".join(sorted(_FIELD_KEYS))},
            )
        kind = spec.get("type", "string")
        if kind not in _FIELD_TYPES:
            raise PydanticCustomError(
                "sie",
                "{where}.type {kind} is not supported; use one of {allowed}",
                {"where": where, "kind": repr(kind), "allowed": ", ".join(_FIELD_TYPES)},
            )
        description = spec.get("description", "")
        if not isinstance(description, str) or len(description) > 1000:
            raise PydanticCustomError(
                "sie", "{where}.description must be a string of at most 1000 characters", {"where": where}
            )
        choices = spec.get("enum")
        if choices is not None and (
            not isinstance(choices, list)
            or not choices
            or not all(isinstance(c, str) and c.strip() and len(c) <= 200 for c in choices)
        ):
            raise PydanticCustomError(
                "sie", "{where}.enum must be a non-empty list of strings (the allowed values)", {"where": where}
            )
    required = value.get("required", [])
    if not isinstance(required, list) or any(r not in fields for r in required):
        raise PydanticCustomError("sie", "output_schema.required must list names of its properties", {})
    return dict(value)


OutputSchema = Annotated[
    dict[str, Any] | None,
    BeforeValidator(_output_schema),
    Field(
        description="Fields to fill from each text, as a JSON-Schema object: {'type': 'object', 'properties': "
        "{'total': {'type': 'string', 'description': 'amount due'}, 'status': {'type': 'string', 'enum': ['paid', "
        "'open']}}}; types string, number, integer, boolean or array (of strings).",
    ),
]
Profile = Annotated[
    Literal["default"] | None,
    Field(description="SIE's model profile; only the default profile is served here."),
]


# ---------------------------------------------------------------------- engine requests
class _Request(BaseModel):
    model_config = _STRICT

    model: ModelId = None
    items: Items

    @property
    def texts(self) -> list[str]:
        """The texts of the items, in order."""
        return [item.text for item in self.items]

    @property
    def ids(self) -> list[str | None]:
        """The items' ids (None where none was given), in order."""
        return [item.id for item in self.items]


class EncodeRequest(_Request):
    """An encode call: texts in, one vector (or sparse / multi-vector output) per text out."""

    output_types: OutputTypes = ["dense"]
    instruction: Instruction = None
    is_query: IsQuery = False
    normalize: Normalize = None
    output_dtype: OutputDtype = "float32"
    dims: Dims = None


class ScoreRequest(_Request):
    """A score call: one query and candidate items, ranked best first."""

    query: Query
    top_k: TopK = None


class ExtractRequest(_Request):
    """An extract call: texts in; entities, relations, classes and schema fields out, as the model can.

    Which of ``labels``, ``relation_labels``, ``classes`` and ``output_schema`` a model takes (and needs) is
    its family's (see :mod:`sie_core.families`); the others are refused by name before anything is queued.
    """

    labels: Labels = None
    relation_labels: RelationLabels = None
    classes: Classes = None
    output_schema: OutputSchema = None
    threshold: Threshold = 0.5
    flat_ner: FlatNer = True
    multi_label: MultiLabel = False


class EncodeKwargs(TypedDict, total=False):
    """The keyword options of ``Engine.encode`` (for typing its overloads)."""

    output_types: Sequence[OutputType]
    instruction: str | None
    is_query: bool
    normalize: bool | None
    output_dtype: str
    dims: int | None


class ExtractKwargs(TypedDict, total=False):
    """The keyword options of ``Engine.extract`` (which ones a model needs is its family's)."""

    labels: Sequence[str] | str | None
    relation_labels: Sequence[str] | str | None
    classes: Sequence[str] | str | None
    output_schema: Mapping[str, Any] | None
    threshold: float
    flat_ner: bool
    multi_label: bool


#: The options of each request (what every front end must describe the same way).
OPTION_NAMES: dict[type[_Request], tuple[str, ...]] = {
    cls: tuple(name for name in cls.model_fields if name not in ("model", "items", "query"))
    for cls in (EncodeRequest, ScoreRequest, ExtractRequest)
}


# ---------------------------------------------------------------------- SIE wire bodies
class _Body(BaseModel):
    model_config = _STRICT


class EncodeOptions(_Body):
    """``params.options`` of an encode body."""

    is_query: IsQuery = False
    normalize: Normalize = None
    dims: Dims = None
    profile: Profile = None


class EncodeParams(_Body):
    """``params`` of an encode body."""

    output_types: OutputTypes = ["dense"]
    instruction: Instruction = None
    output_dtype: OutputDtype = "float32"
    dims: Dims = None
    options: EncodeOptions = EncodeOptions()


class EncodeBody(_Body):
    """``POST /v1/encode/{model}``: what SIE's client sends."""

    items: Items
    params: EncodeParams = EncodeParams()

    def to_request(self, model: str | None) -> EncodeRequest:
        """The engine request for this body (``model`` from the path)."""
        p = self.params
        return EncodeRequest.model_construct(
            model=model,
            items=self.items,
            output_types=p.output_types,
            instruction=p.instruction,
            is_query=p.options.is_query,
            normalize=p.options.normalize,
            output_dtype=p.output_dtype,
            dims=p.options.dims if p.options.dims is not None else p.dims,
        )

    @classmethod
    def from_request(cls, request: EncodeRequest) -> EncodeBody:
        """The wire body for an engine request (what the remote backend sends)."""
        options = EncodeOptions.model_construct(
            is_query=request.is_query, normalize=request.normalize, dims=request.dims, profile=None
        )
        params = EncodeParams.model_construct(
            output_types=request.output_types,
            instruction=request.instruction,
            output_dtype=request.output_dtype,
            dims=None,
            options=options,
        )
        return cls.model_construct(items=request.items, params=params)


class ScoreOptions(_Body):
    """``options`` of a score body."""

    top_k: TopK = None
    profile: Profile = None


class ScoreBody(_Body):
    """``POST /v1/score/{model}``."""

    query: Query
    items: Items
    top_k: TopK = None
    options: ScoreOptions = ScoreOptions()

    def to_request(self, model: str | None) -> ScoreRequest:
        """The engine request for this body."""
        top_k = self.top_k if self.top_k is not None else self.options.top_k
        return ScoreRequest.model_construct(model=model, items=self.items, query=self.query, top_k=top_k)

    @classmethod
    def from_request(cls, request: ScoreRequest) -> ScoreBody:
        """The wire body for an engine request (``top_k`` is applied by the caller, so any SIE server works)."""
        return cls.model_construct(query=request.query, items=request.items, top_k=None, options=ScoreOptions())


class ExtractOptions(_Body):
    """``params.options`` of an extract body (SIE's client passes its ``options`` dict here as it is)."""

    threshold: Threshold = 0.5
    flat_ner: FlatNer = True
    multi_label: MultiLabel = False
    relation_labels: RelationLabels = None
    classes: Classes = None
    profile: Profile = None


class ExtractParams(_Body):
    """``params`` of an extract body (SIE's client sends ``labels`` and ``output_schema`` here)."""

    labels: Labels = None
    relation_labels: RelationLabels = None
    classes: Classes = None
    output_schema: OutputSchema = None
    threshold: Threshold = 0.5
    options: ExtractOptions = ExtractOptions()


class ExtractBody(_Body):
    """``POST /v1/extract/{model}``."""

    items: Items
    params: ExtractParams = ExtractParams()

    def to_request(self, model: str | None) -> ExtractRequest:
        """The engine request for this body (an option set in ``params.options`` wins over ``params``)."""
        p = self.params
        threshold = p.options.threshold if "threshold" in p.options.model_fields_set else p.threshold
        return ExtractRequest.model_construct(
            model=model,
            items=self.items,
            labels=p.labels,
            relation_labels=p.options.relation_labels if p.options.relation_labels is not None else p.relation_labels,
            classes=p.options.classes if p.options.classes is not None else p.classes,
            output_schema=p.output_schema,
            threshold=threshold,
            flat_ner=p.options.flat_ner,
            multi_label=p.options.multi_label,
        )

    @classmethod
    def from_request(cls, request: ExtractRequest) -> ExtractBody:
        """The wire body for an engine request."""
        options = ExtractOptions.model_construct(
            threshold=request.threshold,
            flat_ner=request.flat_ner,
            multi_label=request.multi_label,
            relation_labels=None,
            classes=None,
            profile=None,
        )
        params = ExtractParams.model_construct(
            labels=request.labels,
            relation_labels=request.relation_labels,
            classes=request.classes,
            output_schema=request.output_schema,
            threshold=request.threshold,
            options=options,
        )
        return cls.model_construct(items=request.items, params=params)


# ---------------------------------------------------------------------- OpenAI and rerank bodies
_QUERY_INPUT_TYPES = {"query": True, "search_query": True}


def _openai_input(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, (int, list)) and not isinstance(v, bool) for v in value):
        raise PydanticCustomError(
            "sie", "input holds token ids; this server embeds text only: send a string or a list of strings", {}
        )
    return value


class EmbeddingsBody(_Body):
    """``POST /v1/embeddings`` (OpenAI): ``input`` is ``items``, ``dimensions`` is ``dims``."""

    input: Annotated[
        list[str],
        BeforeValidator(_openai_input),
        Field(min_length=1, description="A string or a list of strings to embed."),
    ]
    model: ModelId = None
    dimensions: Dims = None
    encoding_format: Annotated[
        Literal["float", "base64"], Field(description="float (lists) or base64 (little-endian float32 bytes).")
    ] = "float"
    user: Annotated[str | None, Field(max_length=1000, description="OpenAI's end-user id; ignored.")] = None
    input_type: Annotated[
        Literal["query", "search_query", "document", "search_document", "passage"] | None,
        Field(description="query / search_query apply the model's query prompt; the others its document prompt."),
    ] = None

    def to_request(self, model: str | None = None) -> EncodeRequest:
        """The engine request for this body."""
        return EncodeRequest.model_construct(
            model=model or self.model,
            items=[TextItem.model_construct(text=t, id=None, metadata=None) for t in self.input],
            output_types=["dense"],
            instruction=None,
            is_query=_QUERY_INPUT_TYPES.get(self.input_type or "", False),
            normalize=None,
            output_dtype="float32",
            dims=self.dimensions,
        )


class RerankBody(_Body):
    """``POST /v1/rerank`` (Cohere / Jina style): ``documents`` is ``items``, ``top_n`` is ``top_k``."""

    query: Annotated[str, Field(description="The search query.")]
    documents: Annotated[
        list[TextItem],
        BeforeValidator(lambda v: [_item(d, f"documents[{i}]") for i, d in enumerate(v)] if isinstance(v, list) else v),
        Field(min_length=1, description="Candidate documents: strings or {'text': ...} objects."),
    ]
    model: ModelId = None
    top_n: TopK = None
    return_documents: Annotated[bool, Field(description="Include each document's text in its result.")] = False
    max_chunks_per_doc: Annotated[int | None, Field(ge=1, description="Accepted for Cohere clients; unused.")] = None

    def to_request(self, model: str | None = None) -> ScoreRequest:
        """The engine request for this body."""
        return ScoreRequest.model_construct(
            model=model or self.model,
            items=self.documents,
            query=TextItem.model_construct(text=self.query, id=None, metadata=None),
            top_k=self.top_n,
        )


#: Options a front end offers under another name: (body, its field) -> the request's option.
BODY_RENAMES: dict[tuple[type[BaseModel], str], str] = {
    (EmbeddingsBody, "input"): "items",
    (EmbeddingsBody, "dimensions"): "dims",
    (RerankBody, "documents"): "items",
    (RerankBody, "top_n"): "top_k",
}


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str = Field(description="Stable machine-readable code, e.g. INVALID_INPUT or MODEL_NOT_FOUND.")
    message: str = Field(description="What was wrong and what is allowed.")


class ErrorEnvelope(BaseModel):
    """Every error answer of the HTTP API."""

    error: ErrorDetail


# ---------------------------------------------------------------------- validation
def describe(option: Any) -> str:
    """The description of an option alias (for a front end that narrows its type but keeps its meaning)."""
    for meta in getattr(option, "__metadata__", ()):
        if getattr(meta, "description", None):
            return str(meta.description)
    raise ValueError(f"{option!r} has no description")


def parse(cls: type[M], data: Any, *, where: str = "the request") -> M:
    """Validate untrusted ``data`` as ``cls``.

    Raises:
        InvalidInputError: Not an object, a wrong type, a value out of bounds, or an unknown field; the
            message names the field, what was wrong and what is allowed.
    """
    if not isinstance(data, Mapping):
        raise InvalidInputError(f"{where} must be an object (a map), not {_describe(data)}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise invalid_input(exc, cls) from None


def invalid_input(exc: ValidationError, cls: type[BaseModel]) -> InvalidInputError:
    """One InvalidInputError for a pydantic error (its first problem, which is what a caller fixes first)."""
    errors = exc.errors(include_url=False)
    return InvalidInputError(_message(errors[0], cls) if errors else str(exc))


def _name(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _CONTAINERS:
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "the request"


def _model_at(cls: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    """The (nested) model that ``loc`` points into."""
    current: type[BaseModel] = cls
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return None
        nested = [a for a in _flatten(field.annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not nested:
            return None
        current = nested[0]
    return current


def _fields_at(cls: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    model = _model_at(cls, loc)
    return list(model.model_fields) if model is not None else []


def _bounds(cls: type[BaseModel], loc: Sequence[Any]) -> tuple[Any, Any]:
    """The (ge, le) bounds of the field at ``loc``, where it has them."""
    model = _model_at(cls, loc[:-1]) if loc and isinstance(loc[-1], str) else None
    field = model.model_fields.get(loc[-1]) if model is not None else None
    ge = le = None
    for meta in field.metadata if field is not None else ():
        ge = getattr(meta, "ge", ge)
        le = getattr(meta, "le", le)
    return ge, le


def _flatten(annotation: Any) -> list[Any]:
    args = getattr(annotation, "__args__", None)
    if not args:
        return [annotation]
    return [a for arg in args for a in _flatten(arg)]


_REPR = reprlib.Repr()  # bounded depth and length: a value nested 3,000 deep must not overflow the stack
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 60, 60


def _shown(value: Any) -> str:
    text = _REPR.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _message(error: Mapping[str, Any], cls: type[BaseModel]) -> str:
    kind = error["type"]
    loc = tuple(error.get("loc", ()))
    name = _name(loc)
    ctx = error.get("ctx") or {}
    value = error.get("input")
    ge, le = _bounds(cls, loc)
    if kind == "sie":
        return str(error["msg"])
    if name == "labels" and (kind == "too_short" or value is None):
        return "labels are missing; name at least one entity type to extract, e.g. ['person', 'organization']"
    if kind == "extra_forbidden":
        allowed = ", ".join(_fields_at(cls, loc[:-1])) or "none"
        return f"unknown field {name!r}; allowed: {allowed}"
    if kind == "missing":
        return f"{name} is required"
    if kind == "bool_type":
        return f"{name} must be true or false, got {_shown(value)}"
    if kind in ("int_type", "int_parsing", "int_from_float") or (ge == 1 and le is not None and "than" in kind):
        what = "a positive integer" if ge == 1 else "an integer"
        return (
            f"{name} must be {what}"
            + (f" up to {le:,}" if le is not None and ge == 1 else "")
            + f", got {_shown(value)}"
        )
    if kind in ("float_type", "float_parsing", "finite_number"):
        span = f" from {ge:g} to {le:g}" if ge is not None and le is not None else ""
        return f"{name} must be a number{span}, got {_shown(value)}"
    if "than" in kind and ge is not None and le is not None:
        return f"{name} must be between {ge:g} and {le:g}, got {_shown(value)}"
    if kind in ("greater_than_equal", "greater_than"):
        return f"{name} must be at least {ctx.get('ge', ctx.get('gt'))}, got {_shown(value)}"
    if kind in ("less_than_equal", "less_than"):
        return f"{name} must be at most {ctx.get('le', ctx.get('lt'))}, got {_shown(value)}"
    if kind == "string_unicode" and isinstance(value, str):
        position = next((i for i, c in enumerate(value) if 0xD800 <= ord(c) <= 0xDFFF), 0)
        return (
            f"{name} contains a lone surrogate (U+{ord(value[position]):04X}) at character {position:,}; "
            "texts must be valid Unicode (UTF-8 encodable)"
        )
    if kind in ("string_type", "string_unicode"):
        return f"{name} must be a string, got {_describe(value)}"
    if kind in ("list_type", "tuple_type"):
        return f"{name} must be a list, got {_describe(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{name} must be an object, got {_describe(value)}"
    if kind == "literal_error":
        allowed = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"{name} {_shown(value)} is not supported; use one of {allowed}"
    if kind == "too_short":
        return f"{name} is empty; pass at least one " + ("text" if name == "items" else "entry")
    if kind == "too_long":
        return f"{name} has too many entries; at most {ctx.get('max_length')} are allowed"
    if kind == "string_too_short":
        return f"{name} must be a non-empty string"
    if kind == "string_too_long":
        return f"{name} has more than {ctx.get('max_length')} characters; shorten it"
    return f"{name}: {error.get('msg', 'invalid value')}"
