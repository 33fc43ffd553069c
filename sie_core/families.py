"""Model families: what kind of model a catalog entry is, what it can do, and which adapter runs it per backend.

A family is registered once with its task, the outputs it produces, the request options it honours, whether
its labels are free (zero-shot) or fixed, and one adapter per backend (``"module:Class"``, imported only when
such a model loads). A request that asks a model for something its family cannot do fails with an
:class:`~sie_core.InvalidInputError` naming what it can, before anything is queued.

Adding a family is one adapter module, one :func:`register` call here, and catalog entries naming it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import InvalidInputError, ModelLoadError
from .requests import OPTION_NAMES, EncodeRequest, ExtractRequest, ScoreRequest
from .types import TASKS

__all__ = ["FAMILIES", "Family", "default_family", "detect_family", "encoder_family", "family_of", "register"]


@dataclass(frozen=True)
class Family:
    """One kind of model.

    Attributes:
        name: The family's id, named by catalog entries (``family``).
        task: encode, score or extract.
        description: One line for listings.
        adapters: Backend (torch, onnx) -> ``"module:Class"`` of the adapter that runs it there.
        outputs: What it produces: dense / sparse / multivector for encoders, score, and for extractors
            entities, relations, classifications and data (schema fields).
        options: The request options it honours; any other option set to a non-default value is refused.
        labels: ``free`` (any labels, zero-shot), ``fixed`` (its own label set) or ``none``.
        extra_tasks: Tasks it serves besides ``task`` (a late-interaction encoder also scores).
        needs: Extract options of which a request must give at least one (e.g. GLiNER needs labels).
        labels_as: For a family that finds no entities: the option that ``labels`` fill when given alone,
            as SIE's own server reads them (its client sends an NLI model's classes as ``labels``).
        entity_model: For a relation family: finds the entities first, with the request's ``labels``, unless
            the items carry them in ``metadata.entities`` (the catalog entry's ``options.entity_model`` wins).
    """

    name: str
    task: str
    description: str
    adapters: dict[str, str]
    outputs: tuple[str, ...]
    options: frozenset[str] = field(default_factory=frozenset)
    labels: Literal["free", "fixed", "none"] = "none"
    extra_tasks: tuple[str, ...] = ()
    needs: frozenset[str] = field(default_factory=frozenset)
    labels_as: str | None = None
    entity_model: str | None = None

    @property
    def tasks(self) -> tuple[str, ...]:
        """Every task it serves, its main ``task`` first."""
        return (self.task, *self.extra_tasks)

    def prepare(self, request: Any) -> Any:
        """The request as this family reads it (``labels`` given alone moved to ``labels_as``)."""
        if (
            self.labels_as is not None
            and isinstance(request, ExtractRequest)
            and request.labels
            and getattr(request, self.labels_as) is None
        ):
            return request.model_copy(update={self.labels_as: request.labels, "labels": None})
        return request

    def check(self, request: Any, model: str) -> None:
        """Refuse a request this family cannot serve, naming what it can.

        Raises:
            InvalidInputError: An output it does not produce, an option it does not honour, or none of the
                inputs it needs.
        """
        request = self.prepare(request)
        if isinstance(request, EncodeRequest):
            missing = [o for o in request.output_types if o not in self.outputs]
            if missing:
                raise InvalidInputError(
                    f"model {model!r} ({self.name} family) cannot produce output_types {missing}; "
                    f"it produces: {', '.join(self.outputs)}"
                )
        fields = type(request).model_fields
        for name in OPTION_NAMES.get(type(request), ()):
            if name in self.options or name == "output_types":
                continue
            if getattr(request, name) != fields[name].default:
                honoured = ", ".join(sorted(self.options)) or "none"
                raise InvalidInputError(
                    f"model {model!r} ({self.name} family) does not support the option {name}; it supports: {honoured}"
                    + (f" (it finds: {', '.join(self.outputs)})" if self.task == "extract" else "")
                )
        if self.needs and not any(getattr(request, name, None) for name in self.needs):
            if self.needs == {"labels"}:
                raise InvalidInputError(
                    "labels are missing; name at least one entity type to extract, e.g. ['person', 'organization'] "
                    f"(model {model!r} is a {self.name} model)"
                )
            wanted = " or ".join(sorted(self.needs))
            raise InvalidInputError(
                f"model {model!r} ({self.name} family) needs {wanted}: {_NEEDS_HELP.get(wanted, 'give at least one')}"
            )


_NEEDS_HELP = {
    "classes": "name the classes to score each text against, e.g. ['invoice', 'complaint', 'spam']",
    "relation_labels": "name the relation types to find, e.g. ['works for', 'located in']",
    "classes or labels or output_schema or relation_labels": (
        "name entity labels, classes, relation_labels, or an output_schema of fields to fill"
    ),
}

FAMILIES: dict[str, Family] = {}
_REQUESTS: dict[str, Any] = {"encode": EncodeRequest, "score": ScoreRequest, "extract": ExtractRequest}


def register(family: Family) -> Family:
    """Add a family (the first one registered for a task is that task's default)."""
    for task in family.tasks:
        if task not in TASKS:
            raise ValueError(f"family {family.name!r}: task {task!r} is not one of {', '.join(TASKS)}")
    unknown = family.options - {name for task in family.tasks for name in OPTION_NAMES[_REQUESTS[task]]}
    if unknown:
        raise ValueError(f"family {family.name!r}: options {sorted(unknown)} are not {family.task} options")
    FAMILIES[family.name] = family
    return family


def families_for(task: str) -> Iterator[Family]:
    """The families of one task, default first."""
    return (f for f in FAMILIES.values() if f.task == task)


def default_family(task: str) -> Family:
    """The family a model of ``task`` belongs to when its catalog entry names none."""
    for family in families_for(task):
        return family
    raise ModelLoadError(f"no model family serves the task {task!r}")


def family_of(spec: Any) -> Family:
    """The family of a :class:`~sie_core.ModelSpec` (its ``family``, else its task's default).

    Raises:
        ModelLoadError: The entry names a family that is not registered, or one of another task.
    """
    name = getattr(spec, "family", None)
    if name is None:
        return default_family(spec.task)
    family = FAMILIES.get(name)
    if family is None or spec.task not in family.tasks:
        known = ", ".join(f.name for f in families_for(spec.task)) or "none"
        raise ModelLoadError(
            f"model {spec.id!r}: family {name!r} does not serve {spec.task}; {spec.task} families: {known}"
        )
    return family


def detect_family(folder: Path) -> Family:
    """The family of an uncatalogued model folder, from its files.

    Raises:
        UnknownModelError: The folder does not look like a model any family runs.
    """
    from .sources import detect_task

    task = detect_task(folder)
    named = encoder_family(folder) if task == "encode" else None
    return FAMILIES[named] if named is not None else default_family(task)


def encoder_family(folder: Path) -> str | None:
    """``splade``, ``colbert`` or ``bge-m3`` when an encoder folder's files say so (else None: dense).

    An export manifest names its family; a sentence-transformers ``SparseEncoder`` (or a pipeline with
    ``SpladePooling`` / ``SparseStaticEmbedding``) is SPLADE; a PyLate folder (``model_type`` ColBERT, or a
    ``pylate`` Dense module) and a Stanford checkpoint (``HF_ColBERT``) are ColBERT. A bare masked-LM folder
    stays dense, as ``SentenceTransformer`` reads it.
    """
    import json

    def read(name: str) -> Any:
        try:
            return json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    named = read("sie_export.json").get("family") if isinstance(read("sie_export.json"), dict) else None
    if named in ("splade", "colbert"):
        return str(named)
    if all((folder / name).is_file() for name in ("sparse_linear.pt", "colbert_linear.pt")):
        return "bge-m3"  # its sentence-transformers files (if any) describe the dense output only
    st_model = read("config_sentence_transformers.json")
    model_type = str(st_model.get("model_type", "")) if isinstance(st_model, dict) else ""
    if model_type == "SparseEncoder":
        return "splade"
    if model_type == "ColBERT":
        return "colbert"
    modules = read("modules.json")
    types = (
        " ".join(str(m.get("type", "")) for m in modules if isinstance(m, dict)) if isinstance(modules, list) else ""
    )
    if "SpladePooling" in types or "SparseStaticEmbedding" in types or "sparse_encoder" in types:
        return "splade"
    if "pylate" in types:
        return "colbert"
    config = read("config.json")
    if isinstance(config, dict) and "HF_ColBERT" in (config.get("architectures") or []):
        return "colbert"
    return None


_ENCODE_OPTIONS = frozenset({"instruction", "is_query", "normalize", "output_dtype", "dims"})

register(
    Family(
        name="dense",
        task="encode",
        description="dense bi-encoder (sentence-transformers; mean, CLS or last-token pooling)",
        adapters={
            "torch": "sie_core.adapters.sentence_transformers:SentenceTransformersEncoder",
            "onnx": "sie_core.adapters.onnx_encoder:OnnxEncoder",
        },
        outputs=("dense",),
        options=_ENCODE_OPTIONS,
    )
)
register(
    Family(
        name="cross-encoder",
        task="score",
        description="cross-encoder reranker (one relevance logit per query-document pair)",
        adapters={
            "torch": "sie_core.adapters.cross_encoder:CrossEncoderScorer",
            "onnx": "sie_core.adapters.onnx_scorer:OnnxScorer",
        },
        outputs=("score",),
        options=frozenset({"top_k"}),
    )
)
register(
    Family(
        name="gliner",
        task="extract",
        description="GLiNER zero-shot span extraction (any labels)",
        adapters={"torch": "sie_core.adapters.gliner:GlinerExtractor"},
        outputs=("entities",),
        options=frozenset({"labels", "threshold", "flat_ner", "multi_label"}),
        labels="free",
        needs=frozenset({"labels"}),
    )
)
register(
    Family(
        name="spacy",
        task="extract",
        description="spaCy NER pipeline (fixed labels; plain words like person or date are mapped to them)",
        adapters={"torch": "sie_core.adapters.spacy:SpacyExtractor"},
        outputs=("entities",),
        options=frozenset({"labels", "threshold"}),
        labels="fixed",
    )
)
register(
    Family(
        name="nli",
        task="extract",
        description="zero-shot text classification with an NLI model (transformers' zero-shot-classification)",
        adapters={"torch": "sie_core.adapters.nli:NliClassifier"},
        outputs=("classifications",),
        options=frozenset({"classes", "multi_label"}),
        needs=frozenset({"classes"}),
        labels_as="classes",
    )
)
register(
    Family(
        name="gliclass",
        task="extract",
        description="GLiClass zero-shot text classification (any classes, single or multi-label)",
        adapters={"torch": "sie_core.adapters.gliclass:GliClassClassifier"},
        outputs=("classifications",),
        options=frozenset({"classes", "multi_label"}),
        needs=frozenset({"classes"}),
        labels_as="classes",
    )
)
register(
    Family(
        name="glirel",
        task="extract",
        description="GLiREL zero-shot relation extraction between entities (found with the labels, or given)",
        adapters={"torch": "sie_core.adapters.glirel:GlirelExtractor"},
        outputs=("relations", "entities"),
        options=frozenset({"labels", "relation_labels", "threshold"}),
        labels="free",
        needs=frozenset({"relation_labels"}),
        entity_model="en_core_web_sm",
    )
)
register(
    Family(
        name="gliner2",
        task="extract",
        description="GLiNER2: entities, classification, relations and schema fields in one model",
        adapters={"torch": "sie_core.adapters.gliner2:Gliner2Extractor"},
        outputs=("entities", "classifications", "relations", "data"),
        options=frozenset({"labels", "relation_labels", "classes", "output_schema", "threshold", "multi_label"}),
        labels="free",
        needs=frozenset({"labels", "relation_labels", "classes", "output_schema"}),
    )
)
register(
    Family(
        name="splade",
        task="encode",
        description="learned sparse encoder (SPLADE: masked-LM head, log1p(relu(logits)), max over tokens)",
        adapters={
            "torch": "sie_core.adapters.splade:SpladeEncoder",
            "onnx": "sie_core.adapters.onnx_splade:OnnxSpladeEncoder",
        },
        outputs=("sparse",),
        options=frozenset({"instruction", "is_query"}),
    )
)
register(
    Family(
        name="colbert",
        task="encode",
        description="late-interaction encoder (ColBERT: one vector per token; scores by MaxSim)",
        adapters={
            "torch": "sie_core.adapters.colbert:ColbertEncoder",
            "onnx": "sie_core.adapters.onnx_colbert:OnnxColbertEncoder",
        },
        outputs=("multivector",),
        options=frozenset({"instruction", "is_query", "output_dtype", "top_k"}),
        extra_tasks=("score",),
    )
)
register(
    Family(
        name="bge-m3",
        task="encode",
        description="BGE-M3-style encoder: dense (CLS), sparse (token weights) and multi-vector from one pass; "
        "scores by MaxSim",
        adapters={"torch": "sie_core.adapters.bge_m3:BgeM3Encoder"},
        outputs=("dense", "sparse", "multivector"),
        options=frozenset({"instruction", "is_query", "normalize", "output_dtype", "dims", "top_k"}),
        extra_tasks=("score",),
    )
)
