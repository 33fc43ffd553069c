"""Encode with sentence-transformers (``SentenceTransformer``), on torch."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..catalog import ModelSpec
from ..config import EngineConfig
from ..errors import ModelLoadError
from ..padding import fixed_cost_for
from ..sources import ModelSource
from ._torch import parameter_bytes, prepare_torch, torch_dtype
from .base import EncoderAdapter, stdout_to_stderr
from .packed_bert import packed_pipeline, run_packed

__all__ = ["SentenceTransformersEncoder"]


class SentenceTransformersEncoder(EncoderAdapter):
    """A SentenceTransformer model; results equal ``SentenceTransformer.encode`` for the same prompt."""

    name = "sentence-transformers"

    def __init__(self, spec: ModelSpec, source: ModelSource, config: EngineConfig) -> None:
        super().__init__(spec, source, config)
        self.device, self.dtype = prepare_torch(config)
        from sentence_transformers import SentenceTransformer

        with stdout_to_stderr():
            model = SentenceTransformer(
                str(source.path),
                device=self.device,
                trust_remote_code=spec.trust_remote_code,
                local_files_only=True,
                **dict(spec.options),
            )
        if self.dtype != "float32":
            model = model.to(torch_dtype(self.dtype))
        model.eval()
        self.model: Any = model
        get_dims = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dims = get_dims()
        if not dims:
            raise ModelLoadError(f"model {spec.id!r} does not report an embedding dimension; it cannot encode")
        self.dims = int(dims)
        self.max_length = model.max_seq_length or spec.max_length
        self.prompts = dict(getattr(model, "prompts", None) or {})
        self.tokenizer: Any = model.tokenizer
        has_normalize = any(type(m).__name__ == "Normalize" for m in model)
        self.normalized = spec.normalize if spec.normalize is not None else has_normalize
        self.memory_bytes = parameter_bytes(model)
        self.packed = packed_pipeline(model) if self.device == "cpu" else None
        # Packed, padding costs nothing in the dense layers, so a mixed batch stays one forward pass.
        self.group_fixed_cost = None if self.packed is not None else fixed_cost_for(self.device)

    def encode(self, texts: list[str], prompt: str | None) -> tuple[np.ndarray, list[int]]:
        """Encode a batch in one forward pass (packed where the model allows) and count tokens per text."""
        if self.packed is not None:
            vectors = run_packed(self.model, self.packed, texts, "sentence_embedding", prompt).float().numpy()
        else:
            vectors = self.model.encode(
                texts,
                prompt=prompt,
                batch_size=len(texts),
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=False,
            )
        full = [prompt + t for t in texts] if prompt else texts
        ids = self.tokenizer(full, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return np.asarray(vectors, dtype=np.float32), [len(x) for x in ids]
