"""Adapters run one kind of model on one backend; they are imported only when such a model loads."""

from __future__ import annotations

import importlib

from ..catalog import ModelSpec
from ..config import EngineConfig
from ..errors import ModelLoadError
from ..sources import ModelSource
from .base import Adapter, EncoderAdapter, ExtractorAdapter, ScorerAdapter

__all__ = ["ADAPTERS", "Adapter", "EncoderAdapter", "ExtractorAdapter", "ScorerAdapter", "load_adapter"]

#: (task, backend) -> "module:Class", imported on first use.
ADAPTERS: dict[tuple[str, str], str] = {
    ("encode", "torch"): "sie_core.adapters.sentence_transformers:SentenceTransformersEncoder",
    ("score", "torch"): "sie_core.adapters.cross_encoder:CrossEncoderScorer",
    ("extract", "torch"): "sie_core.adapters.gliner:GlinerExtractor",
    ("encode", "onnx"): "sie_core.adapters.onnx_encoder:OnnxEncoder",
    ("score", "onnx"): "sie_core.adapters.onnx_scorer:OnnxScorer",
}

_INSTALL_HINTS = {
    "sentence_transformers": "pip install 'sie-agents[torch]'",
    "transformers": "pip install 'sie-agents[torch]'",
    "torch": "pip install 'sie-agents[torch]'",
    "gliner": "pip install 'sie-agents[gliner]'",
    "onnxruntime": "pip install 'sie-agents[onnx]'",
    "tokenizers": "pip install 'sie-agents[onnx]'",
}


def load_adapter(spec: ModelSpec, source: ModelSource, config: EngineConfig) -> Adapter:
    """Construct (and so load) the adapter for a model's task and backend.

    Raises:
        ModelLoadError: No adapter fits, a library is missing, or the model failed to load.
    """
    target = ADAPTERS.get((spec.task, source.backend))
    if target is None:
        supported = sorted(f"{t}/{b}" for t, b in ADAPTERS)
        raise ModelLoadError(
            f"model {spec.id!r}: no adapter runs task {spec.task!r} on backend {source.backend!r}; "
            f"supported: {', '.join(supported)}"
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
