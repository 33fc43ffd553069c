"""Encode with an ONNX graph through onnxruntime, tokenizing with ``tokenizers`` (never imports torch)."""

from __future__ import annotations

import logging

import numpy as np

from ..catalog import ModelSpec
from ..config import EngineConfig
from ..errors import ModelLoadError
from ..sources import ModelSource
from ._onnx import ModelFiles, OnnxGraph, load_tokenizers
from .base import EncoderAdapter

__all__ = ["OnnxEncoder"]

logger = logging.getLogger(__name__)

_TOKEN_OUTPUTS = ("last_hidden_state", "token_embeddings", "hidden_states")
_POOLED_OUTPUTS = ("sentence_embedding", "embeddings", "text_embeds")


class OnnxEncoder(EncoderAdapter):
    """A transformer encoder exported to ONNX, pooled and prompted like its sentence-transformers original.

    Pooling (mean, CLS or last token) comes from the catalog entry, the export manifest or the
    sentence-transformers ``Pooling`` module; prompts from ``config_sentence_transformers.json`` (or the
    catalog). A sentence-transformers ``Normalize`` module is applied here, as part of the model's own output,
    exactly like ``SentenceTransformer.encode``. Graphs that output a pooled sentence embedding are not pooled again.
    """

    name = "onnx-encoder"
    backend = "onnx"

    def __init__(self, spec: ModelSpec, source: ModelSource, config: EngineConfig) -> None:
        super().__init__(spec, source, config)
        files = ModelFiles.read(source.path)
        unsupported = files.unsupported_modules()
        if unsupported:
            raise ModelLoadError(
                f"model {spec.id!r} has sentence-transformers modules {', '.join(unsupported)} that its ONNX "
                "graph does not include; use backend 'torch' for it"
            )
        self.graph = OnnxGraph(spec, source, config)
        self.session = self.graph.session
        self.device, self.dtype, self.memory_bytes = self.graph.device, self.graph.dtype, self.graph.memory_bytes
        self.batch_tokens = self.graph.batch_tokens
        self.output, self.pooled = self._pick_output(spec)
        self.pooling = files.pooling_mode(spec)
        self._limit = files.max_length(spec)
        self.max_length = self._limit
        self.tokenizer, self._truncating, self._pad_id = load_tokenizers(source.path, files, self._limit)
        self.prompts, self._default_prompt = files.prompts()
        # A Normalize module is part of the model's own output, as in sentence-transformers' encode.
        manifest_normalize = files.manifest.get("normalize")
        self._unit = bool(manifest_normalize) if manifest_normalize is not None else files.has_normalize()
        self.normalized = spec.normalize if spec.normalize is not None else self._unit
        probe, _ = self.encode(["dimension probe"], None)  # also warms the session up before the first request
        self.dims = int(probe.shape[1])
        if spec.dims is not None and spec.dims != self.dims:
            logger.warning("model %s: the catalog says %d dims, the ONNX graph gives %d", spec.id, spec.dims, self.dims)

    def _pick_output(self, spec: ModelSpec) -> tuple[str, bool]:
        outputs = self.graph.outputs
        for name in _TOKEN_OUTPUTS:
            if name in outputs and len(outputs[name].shape) == 3:
                return name, False
        for name, output in outputs.items():
            if len(output.shape) == 3:
                return name, False
        for name in _POOLED_OUTPUTS:
            if name in outputs and len(outputs[name].shape) == 2:
                return name, True
        raise ModelLoadError(
            f"model {spec.id!r}: the ONNX graph's outputs ({', '.join(outputs)}) hold neither token states nor a "
            "sentence embedding, so it cannot encode"
        )

    def encode(self, texts: list[str], prompt: str | None) -> tuple[np.ndarray, list[int]]:
        """Tokenize (prompt first), run the graph on the padded batch, and pool the token states."""
        if prompt is None and self._default_prompt:
            prompt = self.prompts.get(self._default_prompt)
        full = [prompt + t for t in texts] if prompt else texts
        # encode_batch hands work to a thread pool: for the common one-text call, encode alone is cheaper.
        encodings = [self.tokenizer.encode(full[0])] if len(full) == 1 else self.tokenizer.encode_batch(full)
        counts = [len(e.ids) for e in encodings]
        over = [i for i, n in enumerate(counts) if n > self._limit]
        if over:
            for i, cut in zip(over, self._truncating.encode_batch([full[i] for i in over])):
                encodings[i] = cut
        feeds, lengths = self.graph.feeds(encodings, self._pad_id)
        return self.graph.map_rows(self._forward, feeds, lengths), counts

    def _forward(self, feeds: dict[str, np.ndarray], lengths: np.ndarray) -> np.ndarray:
        """Run the graph on padded rows and pool (and, like the model, normalize) their token states."""
        states = self.graph.run(self.output, feeds)
        if self.pooled:
            vectors = states
        elif self.pooling == "cls":
            vectors = states[:, 0]
        elif self.pooling == "last":
            vectors = states[np.arange(len(lengths)), lengths - 1]
        else:
            mask = feeds["attention_mask"].astype(np.float32)
            vectors = np.einsum("bld,bl->bd", states, mask) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        if self._unit:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def close(self) -> None:
        """Stop the session's workers and give the memory back."""
        self.graph.close()
        super().close()
