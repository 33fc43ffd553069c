"""Learned sparse encoding (SPLADE) with an ONNX graph through onnxruntime (never imports torch).

The graph written by ``sie-agents export-onnx`` ends in SPLADE pooling (output ``splade_pooled``,
``[rows, vocabulary]``); a plain masked-LM graph (output ``logits``, ``[rows, tokens, vocabulary]``) is pooled
here in numpy. Either way a batch runs a few rows at a time and each chunk is reduced to its non-zero terms
before the next runs. Inference-free queries use the static weight table and the tokenizer alone.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..catalog import ModelSpec
from ..config import EngineConfig
from ..errors import ModelLoadError
from ..results import Vocabulary
from ..sources import ModelSource
from ._onnx import ModelFiles, OnnxGraph, load_tokenizers
from .multi import Encoded, MultiEncoderAdapter, sparse_rows, top_terms
from .splade_files import SpladeSide, read_splade_layout, static_weights

__all__ = ["POOLED_OUTPUT", "OnnxSpladeEncoder", "pool_logits"]

logger = logging.getLogger(__name__)

#: The output of an exported SPLADE graph: pooled term weights, ``[rows, vocabulary]``.
POOLED_OUTPUT = "splade_pooled"
_LOGITS_BUDGET = 2**24
_MAX_CHUNK_ROWS = 8


def pool_logits(logits: np.ndarray, mask: np.ndarray, pooling: str, activation: str) -> np.ndarray:
    """SpladePooling in numpy: ``log1p(relu(logits * mask))`` (log1p twice for log1p_relu), max or sum over tokens."""
    scores = np.log1p(np.maximum(logits * mask[..., None].astype(logits.dtype), 0.0))
    if activation == "log1p_relu":
        scores = np.log1p(scores)
    return scores.max(axis=1) if pooling == "max" else scores.sum(axis=1)


class _Static:
    def __init__(self, side: SpladeSide) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(side.folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        self.weights = static_weights(side.folder, vocab, len(vocab))
        config = ModelFiles.read(side.folder).tokenizer_config
        limit = config.get("model_max_length")
        self.max_length = int(limit) if isinstance(limit, (int, float)) and 0 < limit < 1_000_000 else None


class OnnxSpladeEncoder(MultiEncoderAdapter):
    """A SPLADE model in ONNX; term weights equal the torch ``SparseEncoder``'s within float tolerance."""

    name = "onnx-splade"
    backend = "onnx"
    outputs = ("sparse",)

    def __init__(self, spec: ModelSpec, source: ModelSource, config: EngineConfig) -> None:
        super().__init__(spec, source, config)
        files = ModelFiles.read(source.path)
        layout = read_splade_layout(source.path, files.manifest)
        self.layout = layout
        if layout.query.kind == "mlm" and layout.query != layout.document:
            raise ModelLoadError(
                f"model {spec.id!r}: its query and document sides are two different transformers; the ONNX backend "
                "runs one graph per model, use backend 'torch' for it"
            )
        self.graph = OnnxGraph(spec, source, config)
        self.session = self.graph.session
        self.device, self.dtype, self.memory_bytes = self.graph.device, self.graph.dtype, self.graph.memory_bytes
        self.batch_tokens = self.graph.batch_tokens
        outputs = self.graph.outputs
        self._pooled = POOLED_OUTPUT in outputs
        self._output = POOLED_OUTPUT if self._pooled else ("logits" if "logits" in outputs else next(iter(outputs)))
        limit = layout.document.max_length or files.max_length(spec)
        self._limit = limit
        self.max_length = limit
        self.tokenizer, self._truncating, self._pad_id = load_tokenizers(source.path, files, limit)
        self._static = _Static(layout.query) if layout.query.kind == "static" else None
        self.max_active_dims = spec.options.get("max_active_dims", layout.max_active_dims)
        self.prompts = dict(layout.prompts)
        shape = outputs[self._output].shape
        last = shape[-1] if shape and isinstance(shape[-1], int) else None
        self.dims = int(last or files.config.get("vocab_size") or self.tokenizer.get_vocab_size(with_added_tokens=True))
        self._run_mlm(["warm up"])
        vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        by_id = {i: t for t, i in vocab.items()}
        self.vocabulary = Vocabulary([by_id.get(i, f"#{i}") for i in range(self.dims)])
        if self._static is not None:
            self.memory_bytes += int(self._static.weights.nbytes)

    def _run_mlm(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        if self.layout.document.lowercase:
            texts = [t.lower() for t in texts]
        encodings = self._truncating.encode_batch(texts) if len(texts) > 1 else [self._truncating.encode(texts[0])]
        feeds, lengths = self.graph.feeds(encodings, self._pad_id)
        width = int(lengths.max())
        step = max(1, min(_MAX_CHUNK_ROWS, _LOGITS_BUDGET // max(1, width * self.dims)))
        step *= max(1, self.graph.workers)  # each worker's part is at most the row budget
        found: list[tuple[np.ndarray, np.ndarray]] = []
        for start in range(0, len(encodings), step):
            stop = start + step
            part_width = int(lengths[start:stop].max())
            part = {k: np.ascontiguousarray(v[start:stop, :part_width]) for k, v in feeds.items()}
            pooled = self.graph.map_rows(self._pool, part, lengths[start:stop])
            found.extend(sparse_rows(pooled, self.max_active_dims))
        return found

    def _pool(self, feeds: dict[str, np.ndarray], lengths: np.ndarray) -> np.ndarray:
        out = self.graph.run(self._output, feeds)
        if self._pooled:
            return out
        side = self.layout.document
        return pool_logits(out, feeds["attention_mask"], side.pooling, side.activation).astype(np.float32)

    def _run_static(self, texts: list[str]) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[int]]:
        static = self._static
        assert static is not None
        found, counts = [], []
        for encoding in static.tokenizer.encode_batch(texts, add_special_tokens=False):
            ids = encoding.ids
            counts.append(len(ids))
            if static.max_length is not None:
                ids = ids[: static.max_length]
            present = np.unique(np.asarray(ids, dtype=np.int64)).astype(np.int32)
            values = static.weights[present]
            keep = values != 0
            found.append(top_terms(present[keep], values[keep].astype(np.float32), self.max_active_dims))
        return found, counts

    def encode_items(
        self, texts: list[str], prompt: str | None, is_query: bool, output_types: tuple[str, ...]
    ) -> list[Encoded]:
        """Sparse vectors of a batch of one side."""
        full = [prompt + t for t in texts] if prompt else texts
        if is_query and self._static is not None:
            found, counts = self._run_static(full)
            limit: Any = self._static.max_length
        else:
            lowered = [t.lower() for t in full] if self.layout.document.lowercase else full
            counts = [len(e.ids) for e in self.tokenizer.encode_batch(lowered)]
            found = self._run_mlm(full)
            limit = self._limit
        return [Encoded(None, terms, None, n, limit is not None and n > limit) for terms, n in zip(found, counts)]

    def close(self) -> None:
        """Stop the session's workers and give the memory back."""
        self.graph.close()
        super().close()
