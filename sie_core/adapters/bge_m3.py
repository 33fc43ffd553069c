"""BGE-M3-style encoders on torch: dense, sparse and multi-vector outputs from one forward pass, as FlagEmbedding.

A BGE-M3 folder is a transformer (XLM-RoBERTa for ``BAAI/bge-m3``) plus two small heads saved beside it,
``sparse_linear.pt`` (hidden -> 1) and ``colbert_linear.pt`` (hidden -> token dims). From the last hidden
states, as ``FlagEmbedding.BGEM3FlagModel`` computes them:

* dense: the first token's state (CLS pooling), L2-normalised;
* sparse: ``relu(sparse_linear(h))`` per token; a term's weight is the largest over its occurrences, special
  tokens (CLS, end, padding, unknown) and zero weights left out;
* multi-vector: ``colbert_linear(h)`` for every attended token after the first, each row L2-normalised.

Only the outputs asked for are computed; sparse rows are reduced per text (never a ``[texts, vocabulary]``
matrix). Queries and documents are encoded the same way (BGE-M3 has no prompts); ``score`` ranks by MaxSim
over the multi-vectors.
"""

from __future__ import annotations

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
from .multi import Encoded, MultiEncoderAdapter

__all__ = ["BgeM3Encoder", "HEAD_FILES"]

#: The heads a BGE-M3 folder holds beside its transformer.
HEAD_FILES = ("sparse_linear.pt", "colbert_linear.pt")


def _linear(path: Any, spec: ModelSpec) -> Any:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        weight = state["weight"]
        layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias="bias" in state)
        layer.load_state_dict(state)
    except (OSError, RuntimeError, KeyError, AttributeError, TypeError) as exc:
        raise ModelLoadError(f"model {spec.id!r}: {path.name} is not a linear layer's weights ({exc})") from None
    return layer


class BgeM3Encoder(MultiEncoderAdapter):
    """A BGE-M3 folder (transformer + ``sparse_linear.pt`` + ``colbert_linear.pt``) on torch."""

    name = "bge-m3"
    outputs = ("dense", "sparse", "multivector")
    normalized = True

    def __init__(self, spec: ModelSpec, source: ModelSource, config: EngineConfig) -> None:
        super().__init__(spec, source, config)
        self.device, self.dtype = prepare_torch(config)
        import torch
        from transformers import AutoModel, AutoTokenizer

        folder = source.path
        missing = [name for name in HEAD_FILES if not (folder / name).is_file()]
        if missing:
            raise ModelLoadError(
                f"model {spec.id!r}: a BGE-M3 folder needs {' and '.join(HEAD_FILES)} beside the transformer; "
                f"{', '.join(missing)} missing in {folder}"
            )
        with stdout_to_stderr():
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            model = AutoModel.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=spec.trust_remote_code
            )
        self.sparse_head = _linear(folder / "sparse_linear.pt", spec)
        self.colbert_head = _linear(folder / "colbert_linear.pt", spec)
        parts = torch.nn.ModuleList([model, self.sparse_head, self.colbert_head])
        if self.dtype != "float32":
            parts = parts.to(torch_dtype(self.dtype))
        parts.to(self.device).eval()
        self.model: Any = model
        self.tokenizer: Any = tokenizer
        hidden = int(model.config.hidden_size)
        self.dense_dims = hidden
        self.token_dims = int(self.colbert_head.out_features)
        self.dims = len(tokenizer)
        limit = spec.max_length or tokenizer.model_max_length
        positions = getattr(model.config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:
            if model.config.model_type in ("xlm-roberta", "roberta", "camembert"):  # positions start after padding
                positions -= int(model.config.pad_token_id or 0) + 1
            limit = min(int(limit), positions)
        self.max_length = int(limit)
        special = (tokenizer.cls_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id)
        self._unused = np.array(sorted({int(t) for t in special if t is not None}), dtype=np.int64)
        tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self.vocabulary = Vocabulary(tokens)
        self.prompts = {}
        self.memory_bytes = parameter_bytes(parts)
        self.group_fixed_cost = fixed_cost_for(self.device)

    def output_dims(self) -> dict[str, int]:
        """Dense vector length, vocabulary size (sparse) and token-vector dimensions (multivector)."""
        return {"dense": self.dense_dims, "sparse": int(self.dims), "multivector": self.token_dims}

    def close(self) -> None:
        """Drop the transformer and both heads and give the memory back."""
        self.sparse_head = self.colbert_head = None
        super().close()

    def encode_items(
        self, texts: list[str], prompt: str | None, is_query: bool, output_types: tuple[str, ...]
    ) -> list[Encoded]:
        """The asked outputs of a batch (queries and documents alike)."""
        import torch

        full = [prompt + t for t in texts] if prompt else texts
        counts = [len(ids) for ids in self.tokenizer(full, truncation=False, verbose=False)["input_ids"]]
        inputs = self.tokenizer(
            full, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        wanted = set(output_types)
        with torch.inference_mode():
            states = self.model(**inputs).last_hidden_state
            dense = states[:, 0].float().cpu().numpy() if "dense" in wanted else None
            weights = torch.relu(self.sparse_head(states)).squeeze(-1) if "sparse" in wanted else None
            vectors = self.colbert_head(states[:, 1:]) if "multivector" in wanted else None
            kept = inputs["attention_mask"].sum(dim=1).tolist()
            rows = None
            if vectors is not None:  # the attended tokens after the first: n - 1 rows
                rows = [
                    torch.nn.functional.normalize(vectors[i, : n - 1].float(), dim=-1).cpu() for i, n in enumerate(kept)
                ]
            weight_rows = weights.float().cpu().numpy() if weights is not None else None
        ids = inputs["input_ids"].cpu().numpy()
        out = []
        for i, n in enumerate(counts):
            sparse = self._terms(ids[i, : kept[i]], weight_rows[i, : kept[i]]) if weight_rows is not None else None
            out.append(
                Encoded(
                    np.ascontiguousarray(dense[i], dtype=np.float32) if dense is not None else None,
                    sparse,
                    np.ascontiguousarray(rows[i].numpy(), dtype=np.float32) if rows is not None else None,
                    n,
                    n > int(self.max_length or n),
                )
            )
        return out

    def _terms(self, ids: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per distinct token id its largest weight, special tokens and zero weights left out (ascending ids)."""
        keep = (weights > 0) & ~np.isin(ids, self._unused)
        ids, weights = ids[keep], weights[keep]
        if not len(ids):
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
        order = np.argsort(ids, kind="stable")
        ids, weights = ids[order], weights[order]
        starts = np.flatnonzero(np.concatenate([[True], ids[1:] != ids[:-1]]))
        return ids[starts].astype(np.int32), np.maximum.reduceat(weights, starts).astype(np.float32)
