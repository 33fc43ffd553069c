"""Score (query, document) pairs with a cross-encoder exported to ONNX (never imports torch)."""

from __future__ import annotations

import numpy as np

from ..catalog import ModelSpec
from ..config import EngineConfig
from ..errors import ModelLoadError
from ..sources import ModelSource
from ._onnx import ModelFiles, OnnxGraph, load_tokenizers
from .base import ScorerAdapter

__all__ = ["OnnxScorer"]


class OnnxScorer(ScorerAdapter):
    """A cross-encoder reranker in ONNX; raw scores equal the torch ``CrossEncoder``'s logits.

    Pairs are tokenized together (``[CLS] query [SEP] document [SEP]`` with segment ids where the graph takes
    them) and cut longest-first to the model's max length. Two-label models score relevant minus irrelevant.
    """

    name = "onnx-cross-encoder"
    backend = "onnx"

    def __init__(self, spec: ModelSpec, source: ModelSource, config: EngineConfig) -> None:
        super().__init__(spec, source, config)
        files = ModelFiles.read(source.path)
        self.graph = OnnxGraph(spec, source, config)
        self.session = self.graph.session
        self.device, self.dtype, self.memory_bytes = self.graph.device, self.graph.dtype, self.graph.memory_bytes
        self.batch_tokens = self.graph.batch_tokens
        outputs = self.graph.outputs
        self.output = "logits" if "logits" in outputs else next(iter(outputs))
        self.max_length = files.max_length(spec)
        self.tokenizer, self._truncating, self._pad_id = load_tokenizers(source.path, files, self.max_length)
        self.num_labels = 1
        probe = self._logits([("probe query", "probe document")])  # also warms the session up
        self.num_labels = int(probe.shape[1]) if probe.ndim == 2 else 1
        if probe.ndim > 2 or self.num_labels not in (1, 2):
            raise ModelLoadError(
                f"model {spec.id!r}: its ONNX graph gives {self.num_labels} outputs per pair (shape "
                f"{list(probe.shape)}); a reranker needs 1 (a relevance logit) or 2 (not relevant / relevant)"
            )

    def _logits(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        encodings = self._truncating.encode_batch(pairs)
        feeds, lengths = self.graph.feeds(encodings, self._pad_id)
        return self.graph.map_rows(lambda part, _lengths: self.graph.run(self.output, part), feeds, lengths)

    def score(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """Raw scores: the logit, or for two-label models the relevant-minus-irrelevant logit difference."""
        logits = self._logits(pairs)
        if logits.ndim == 1:
            return logits
        if self.num_labels == 2:
            return (logits[:, 1] - logits[:, 0]).astype(np.float32)
        return logits.reshape(len(pairs))

    def close(self) -> None:
        """Stop the session's workers and give the memory back."""
        self.graph.close()
        super().close()
