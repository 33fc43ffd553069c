"""Score with sentence-transformers ``CrossEncoder`` models, on torch."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..catalog import ModelSpec
from ..config import EngineConfig
from ..errors import ModelLoadError
from ..padding import fixed_cost_for
from ..sources import ModelSource
from ._torch import parameter_bytes, prepare_torch, torch_dtype
from .base import ScorerAdapter, stdout_to_stderr
from .packed_bert import packed_pipeline, run_packed

__all__ = ["CrossEncoderScorer"]


class CrossEncoderScorer(ScorerAdapter):
    """A cross-encoder reranker; raw scores equal ``CrossEncoder.predict`` with no activation."""

    name = "cross-encoder"

    def __init__(self, spec: ModelSpec, source: ModelSource, config: EngineConfig) -> None:
        super().__init__(spec, source, config)
        self.device, self.dtype = prepare_torch(config)
        import torch
        from sentence_transformers import CrossEncoder

        with stdout_to_stderr():
            model = CrossEncoder(
                str(source.path),
                device=self.device,
                trust_remote_code=spec.trust_remote_code,
                local_files_only=True,
                max_length=spec.max_length,
                **dict(spec.options),
            )
        if self.dtype != "float32":
            model = model.to(torch_dtype(self.dtype))
        model.eval()
        self.num_labels = int(model.num_labels)
        if self.num_labels not in (1, 2):
            raise ModelLoadError(
                f"model {spec.id!r} has {self.num_labels} output labels; a reranker needs 1 (a relevance "
                "logit) or 2 (not relevant / relevant)"
            )
        self.model: Any = model
        self.max_length = spec.max_length or getattr(model, "max_seq_length", None)
        self._identity = torch.nn.Identity()
        self.memory_bytes = parameter_bytes(model)
        self.packed = packed_pipeline(model) if self.device == "cpu" else None
        # Packed, padding costs nothing in the dense layers, so a mixed batch stays one forward pass.
        self.group_fixed_cost = None if self.packed is not None else fixed_cost_for(self.device)

    def score(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """Raw scores: the logit, or for two-label models the relevant-minus-irrelevant logit difference."""
        if self.packed is not None:
            logits = run_packed(self.model, self.packed, [list(p) for p in pairs], "scores").float().numpy()
        else:
            logits = self.model.predict(
                [list(p) for p in pairs],
                batch_size=len(pairs),
                show_progress_bar=False,
                activation_fn=self._identity,
                convert_to_numpy=True,
            )
        logits = np.asarray(logits, dtype=np.float32)
        if self.num_labels == 2:
            logits = logits[:, 1] - logits[:, 0]
        return logits.reshape(len(pairs))
