"""Learned sparse encoding (SPLADE) on torch, as sentence-transformers' ``SparseEncoder`` computes it.

Documents (and queries, unless the model is inference-free) go through the masked-LM transformer; each
text's vector is ``log1p(relu(logits))`` (twice ``log1p`` for ``log1p_relu`` models) pooled by max (or sum)
over its attended tokens, as ``SpladePooling`` does. Inference-free queries are a static weight per token
present (``SparseStaticEmbedding``). ``encode_query`` / ``encode_document`` of ``SparseEncoder`` are
``is_query=True`` / ``False`` here, with the same prompts and routes.

The transformer runs once per batch; its masked-LM head (the ``[tokens, vocabulary]`` logits) runs a few rows
at a time, and each chunk is reduced to its non-zero terms before the next is computed, so no
``[batch, vocabulary]`` matrix is ever kept for a whole batch. On CPU a BERT masked-LM runs packed
(``sie_core.adapters.packed_bert``): the transformer and the head see only the real tokens, never padding.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from ..catalog import ModelSpec
from ..config import EngineConfig
from ..errors import ModelLoadError
from ..padding import fixed_cost_for
from ..results import Vocabulary
from ..sources import ModelSource
from ._torch import parameter_bytes, prepare_torch, torch_dtype
from .base import stdout_to_stderr
from .multi import Encoded, MultiEncoderAdapter, top_terms
from .packed_bert import PackedBert
from .splade_files import SpladeSide, read_splade_layout, static_weights

__all__ = ["SpladeEncoder", "chunk_rows"]

#: Largest number of logits (rows x tokens x vocabulary) computed at once: 2**24 floats, 64 MB in fp32.
_LOGITS_BUDGET = 2**24
_MAX_CHUNK_ROWS = 8


def chunk_rows(width: int, vocabulary: int) -> int:
    """Rows whose logits are computed at once: at most 8, fewer for long texts (a 64 MB budget)."""
    return max(1, min(_MAX_CHUNK_ROWS, _LOGITS_BUDGET // max(1, width * vocabulary)))


def _split_head(model: Any) -> tuple[Any, Any] | None:
    """(encoder, masked-LM head) of architectures whose head is a plain function of the last hidden states."""
    kind = type(model).__name__
    if kind == "BertForMaskedLM":
        return model.bert, model.cls
    if kind in ("RobertaForMaskedLM", "XLMRobertaForMaskedLM", "CamembertForMaskedLM"):
        return model.roberta, model.lm_head
    if kind == "DistilBertForMaskedLM":

        def head(hidden: Any) -> Any:
            return model.vocab_projector(model.vocab_layer_norm(model.activation(model.vocab_transform(hidden))))

        return model.distilbert, head
    return None  # any other architecture: the whole model runs a few rows at a time


class _MlmSide:
    """A masked-LM transformer with SPLADE activation and pooling."""

    def __init__(self, side: SpladeSide, spec: ModelSpec, device: str, dtype: str) -> None:
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        with stdout_to_stderr():
            self.tokenizer: Any = AutoTokenizer.from_pretrained(str(side.folder), local_files_only=True)
            model = AutoModelForMaskedLM.from_pretrained(
                str(side.folder), local_files_only=True, trust_remote_code=spec.trust_remote_code
            )
        if dtype != "float32":
            model = model.to(torch_dtype(dtype))
        self.model: Any = model.to(device).eval()
        self.device = device
        self.side = side
        limit = side.max_length or self.tokenizer.model_max_length
        positions = getattr(model.config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:
            limit = min(int(limit), positions)
        self.max_length = int(limit)
        self.vocab_size = int(model.config.vocab_size)
        self.split = _split_head(model)
        packable = device == "cpu" and type(model).__name__ == "BertForMaskedLM"
        packable = packable and self.tokenizer.padding_side == "right" and PackedBert.supports(model.bert)
        self.packed = PackedBert(model.bert) if packable else None
        self.memory_bytes = parameter_bytes(model)

    def run(self, texts: list[str], max_active_dims: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
        import torch

        if self.side.lowercase:
            texts = [t.lower() for t in texts]
        inputs = self.tokenizer(
            texts, padding=True, truncation="longest_first", max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        mask = inputs["attention_mask"]
        if self.packed is not None and self.split is not None:
            return self._run_packed(inputs, self.packed, self.split[1], max_active_dims)
        rows, width = mask.shape
        step = chunk_rows(int(width), self.vocab_size)
        out: list[tuple[np.ndarray, np.ndarray]] = []
        with torch.inference_mode():
            hidden = self.split[0](**inputs)[0] if self.split is not None else None
            for start in range(0, rows, step):
                part = slice(start, start + step)
                if hidden is not None and self.split is not None:
                    logits = self.split[1](hidden[part])
                else:
                    logits = self.model(**{k: v[part] for k, v in inputs.items()}).logits
                out.extend(self._pool(logits, mask[part], max_active_dims))
        return out

    def _run_packed(
        self, inputs: Any, packed: PackedBert, head: Any, max_active_dims: int | None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The transformer and the head on the real tokens only, whole texts at a time within the logits budget."""
        import torch

        out: list[tuple[np.ndarray, np.ndarray]] = []
        with torch.inference_mode():
            states, lengths = packed.packed_states(
                inputs["input_ids"], inputs["attention_mask"], inputs.get("token_type_ids")
            )
            budget = max(1, _LOGITS_BUDGET // self.vocab_size)  # token rows of logits at once
            start = first = 0
            while first < len(lengths):
                last, rows = first + 1, lengths[first]
                while last < len(lengths) and last - first < _MAX_CHUNK_ROWS and rows + lengths[last] <= budget:
                    rows += lengths[last]
                    last += 1
                scores = self._activate(head(states[start : start + rows]))
                parts = scores.split(lengths[first:last])
                pooled = torch.stack([p.amax(dim=0) if self.side.pooling == "max" else p.sum(dim=0) for p in parts])
                out.extend(self._terms(pooled, max_active_dims))
                start, first = start + rows, last
        return out

    def _activate(self, logits: Any) -> Any:
        """SPLADE's activation, in place: ``log1p(relu(x))`` (twice ``log1p`` for ``log1p_relu``)."""
        scores = logits.relu_().log1p_()
        return scores.log1p_() if self.side.activation == "log1p_relu" else scores

    def _pool(self, logits: Any, mask: Any, max_active_dims: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
        """SpladePooling on a few rows, then only their non-zero terms leave the device."""
        scores = self._activate(logits * mask.unsqueeze(-1).to(logits.dtype))
        pooled = scores.amax(dim=1) if self.side.pooling == "max" else scores.sum(dim=1)
        return self._terms(pooled, max_active_dims)

    def _terms(self, pooled: Any, max_active_dims: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
        """The non-zero terms of each pooled ``[rows, vocabulary]`` row (the ``max_active_dims`` largest, if set)."""
        import torch

        if max_active_dims is not None and max_active_dims < pooled.shape[1]:
            top = torch.topk(pooled.abs(), k=max_active_dims, dim=1).indices
            pooled = torch.zeros_like(pooled).scatter_(1, top, pooled.gather(1, top))
        where = pooled.nonzero()
        values = pooled[where[:, 0], where[:, 1]].float().cpu().numpy()
        where_np = where.cpu().numpy()
        counts = np.bincount(where_np[:, 0], minlength=pooled.shape[0])
        bounds = np.concatenate([[0], np.cumsum(counts)])
        columns = where_np[:, 1].astype(np.int32)
        return [(columns[a:b], values[a:b]) for a, b in itertools.pairwise(bounds)]

    def count(self, texts: list[str]) -> list[int]:
        if self.side.lowercase:
            texts = [t.lower() for t in texts]
        ids = self.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return [len(x) for x in ids]


class _StaticSide:
    """Inference-free queries: one weight per distinct token present (``SparseStaticEmbedding``)."""

    def __init__(self, side: SpladeSide) -> None:
        from transformers import AutoTokenizer

        with stdout_to_stderr():
            self.tokenizer: Any = AutoTokenizer.from_pretrained(str(side.folder), local_files_only=True)
        vocab = self.tokenizer.get_vocab()
        self.weights = static_weights(side.folder, vocab, len(vocab))
        self.vocab_size = int(self.weights.shape[0])
        self.max_length = int(self.tokenizer.model_max_length)
        self.memory_bytes = int(self.weights.nbytes)

    def run(self, texts: list[str], max_active_dims: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
        ids = self.tokenizer(texts, add_special_tokens=False, truncation=True, verbose=False)["input_ids"]
        out = []
        for row in ids:
            present = np.unique(np.asarray(row, dtype=np.int64)).astype(np.int32)
            values = self.weights[present]
            keep = values != 0
            out.append(top_terms(present[keep], values[keep].astype(np.float32), max_active_dims))
        return out

    def count(self, texts: list[str]) -> list[int]:
        ids = self.tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        return [len(x) for x in ids]


class SpladeEncoder(MultiEncoderAdapter):
    """A SPLADE model (``SparseEncoder`` folder, Router folder, or bare masked-LM folder) on torch."""

    name = "splade"
    outputs = ("sparse",)

    def __init__(self, spec: ModelSpec, source: ModelSource, config: EngineConfig) -> None:
        super().__init__(spec, source, config)
        self.device, self.dtype = prepare_torch(config)
        layout = read_splade_layout(source.path)
        self.layout = layout
        document = _MlmSide(layout.document, spec, self.device, self.dtype)
        query: _MlmSide | _StaticSide
        if layout.query == layout.document:
            query = document
        elif layout.query.kind == "static":
            query = _StaticSide(layout.query)
        else:
            query = _MlmSide(layout.query, spec, self.device, self.dtype)
        self._sides = {True: query, False: document}
        self.document_side: _MlmSide | None = document
        if query.vocab_size != document.vocab_size:
            raise ModelLoadError(
                f"model {spec.id!r}: its query side has {query.vocab_size} terms, its document side "
                f"{document.vocab_size}; both must share one vocabulary"
            )
        self.dims = document.vocab_size
        self.max_active_dims = spec.options.get("max_active_dims", layout.max_active_dims)
        self.max_length = document.max_length
        self.prompts = dict(layout.prompts)
        tokens = document.tokenizer.convert_ids_to_tokens(list(range(len(document.tokenizer))))
        self.vocabulary = Vocabulary([*tokens, *(f"#{i}" for i in range(len(tokens), self.dims))][: self.dims])
        self.tokenizer = document.tokenizer
        self.memory_bytes = document.memory_bytes + (query.memory_bytes if query is not document else 0)
        # Packed, padding costs nothing, so a mixed batch stays one forward pass.
        packed = all(side.packed is not None for side in (query, document) if isinstance(side, _MlmSide))
        self.group_fixed_cost = None if packed else fixed_cost_for(self.device)

    def encode_items(
        self, texts: list[str], prompt: str | None, is_query: bool, output_types: tuple[str, ...]
    ) -> list[Encoded]:
        """Sparse vectors of a batch of one side."""
        side = self._sides[bool(is_query)]
        full = [prompt + t for t in texts] if prompt else texts
        counts = side.count(full)
        found = side.run(full, self.max_active_dims)
        limit = side.max_length
        return [Encoded(None, terms, None, n, n > limit) for terms, n in zip(found, counts)]

    def close(self) -> None:
        """Drop both sides' weights and give the memory back."""
        self._sides = {}
        self.document_side = None
        super().close()
