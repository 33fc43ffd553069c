"""Adapters run one model family on one backend; they are imported only when such a model loads.

Which adapter runs which family on which backend is registered in :mod:`sie_core.families`.
"""

from __future__ import annotations

import importlib

from ..catalog import ModelSpec
from ..config import EngineConfig
from ..errors import ModelLoadError
from ..families import FAMILIES, family_of
from ..sources import ModelSource
from .base import Adapter, EncoderAdapter, ExtractorAdapter, ScorerAdapter

__all__ = ["ADAPTERS", "Adapter", "EncoderAdapter", "ExtractorAdapter", "ScorerAdapter", "load_adapter"]

#: (task, backend) -> "module:Class" of each task's default family (what a backend can run for a task).
ADAPTERS: dict[tuple[str, str], str] = {
    (family.task, backend): target
    for family in reversed(FAMILIES.values())
    for backend, target in family.adapters.items()
}

_INSTALL_HINTS = {
    "sentence_transformers": "pip install 'sie-agents[torch]'",
    "transformers": "pip install 'sie-agents[torch]'",
    "torch": "pip install 'sie-agents[torch]'",
    "gliner": "pip install 'sie-agents[gliner]'",
    "spacy": "pip install 'sie-agents[spacy]'",
    "gliclass": "pip install 'sie-agents[gliclass]'",
    "glirel": "pip install 'sie-agents[glirel]'",
    "loguru": "pip install 'sie-agents[glirel]'",
    "gliner2": "pip install 'sie-agents[gliner2]'",
    "onnxruntime": "pip install 'sie-agents[onnx]'",
    "tokenizers": "pip install 'sie-agents[onnx]'",
}


def load_adapter(spec: ModelSpec, source: ModelSource, config: EngineConfig) -> Adapter:
    """Construct (and so load) the adapter for a model's family and backend.

    Raises:
        ModelLoadError: No adapter fits, a library is missing, or the model failed to load.
    """
    family = family_of(spec)
    target = family.adapters.get(source.backend)
    if target is None:
        raise ModelLoadError(
            f"model {spec.id!r}: the {family.name} family has no adapter for the {source.backend!r} backend; "
            f"it runs on: {', '.join(family.adapters)}"
        )
    module_name, class_name = target.split(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
        adapter: Adapter = cls(spec, source, config)
        return adapter
    except ModelLoadError:
        raise
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        hint = _INSTALL_HINTS.get(missing, "pip install 'sie-agents[all]'")
        raise ModelLoadError(
            f"model {spec.id!r} needs the Python package {missing or exc}, which is not installed; run: {hint}"
        ) from exc
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        raise ModelLoadError(f"model {spec.id!r} failed to load from {source.origin}: {detail}") from exc
