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

__all__ = ["FAMILIES", "Family", "default_family", "detect_family", "family_of", "register"]


@dataclass(frozen=True)
class Family:
    """One kind of model.

    Attributes:
        name: The family's id, named by catalog entries (``family``).
        task: encode, score or extract.
        description: One line for listings.
        adapters: Backend (torch, onnx) -> ``"module:Class"`` of the adapter that runs it there.
        outputs: What it produces: dense / sparse / multivector for encoders, score, entities.
        options: The request options it honours; any other option set to a non-default value is refused.
        labels: ``free`` (any labels, zero-shot), ``fixed`` (its own label set) or ``none``.
    """

    name: str
    task: str
    description: str
    adapters: dict[str, str]
    outputs: tuple[str, ...]
    options: frozenset[str] = field(default_factory=frozenset)
    labels: Literal["free", "fixed", "none"] = "none"

    def check(self, request: Any, model: str) -> None:
        """Refuse a request this family cannot serve, naming what it can.

        Raises:
            InvalidInputError: An output it does not produce, or an option it does not honour.
        """
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
                )


FAMILIES: dict[str, Family] = {}
_REQUESTS: dict[str, Any] = {"encode": EncodeRequest, "score": ScoreRequest, "extract": ExtractRequest}


def register(family: Family) -> Family:
    """Add a family (the first one registered for a task is that task's default)."""
    if family.task not in TASKS:
        raise ValueError(f"family {family.name!r}: task {family.task!r} is not one of {', '.join(TASKS)}")
    unknown = family.options - set(OPTION_NAMES[_REQUESTS[family.task]])
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
    if family is None or family.task != spec.task:
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

    return default_family(detect_task(folder))


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
    )
)
