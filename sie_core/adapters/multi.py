"""Encoders whose outputs are not one dense vector: learned sparse (SPLADE) and multi-vector (ColBERT).

Such an adapter answers one batch with one :class:`Encoded` per text, holding only the outputs asked for.
Sparse outputs leave the adapter as (indices, values) of the non-zero terms: no ``[texts, vocabulary]``
matrix is kept for a batch. Multi-vector outputs are one L2-normalised row per kept token.

MaxSim, the late-interaction score the engine's ``score`` uses on multi-vector models, is
:func:`sie_core.vectors.maxsim` (re-exported here).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Hashable, Sequence
from typing import NamedTuple

import numpy as np

from ..results import Vocabulary
from ..vectors import maxsim
from .base import EncoderAdapter

__all__ = ["Encoded", "MultiEncoderAdapter", "maxsim", "sparse_rows", "top_terms"]


class Encoded(NamedTuple):
    """What an encoder produced for one text (None for outputs that were not asked for).

    Attributes:
        dense: Float32 vector (the model's own output, before the engine's dtype and truncation).
        sparse: ``(indices, values)``: int32 ascending term ids and their float32 non-zero weights.
        multivector: Float32 ``[tokens, token_dims]``, one L2-normalised row per kept token.
        tokens: The text's token count (prompt and special tokens included), before truncation.
        truncated: Whether the text was cut to the model's length for its side (query or document).
    """

    dense: np.ndarray | None
    sparse: tuple[np.ndarray, np.ndarray] | None
    multivector: np.ndarray | None
    tokens: int
    truncated: bool


class MultiEncoderAdapter(EncoderAdapter):
    """An encoder with sparse and/or multi-vector outputs.

    Texts share a forward pass only with texts of the same prompt, side (query or document) and outputs; the
    batch key is :meth:`group`, and the compute thread calls :meth:`encode_items` with it.

    Attributes:
        outputs: The output types it produces.
        dims: The sparse vocabulary size, or the multi-vector token dimensions.
        vocabulary: Token strings by term id (sparse encoders), to show terms as words.
    """

    outputs: tuple[str, ...] = ()
    vocabulary: Vocabulary | None = None

    def group(self, prompt: str | None, *, is_query: bool, output_types: Sequence[str]) -> Hashable:
        """The batch key: texts share a forward pass only with texts of the same prompt, side and outputs."""
        return ("multi", prompt, bool(is_query), tuple(sorted(set(output_types))))

    def cost_for(self, text: str, *, is_query: bool) -> int:
        """Estimated (padded) tokens of one text on its side, used to size batches."""
        return self.cost(text)

    def output_dims(self) -> dict[str, int]:
        """Dimensions per output: vocabulary size for sparse, token dimensions for multivector."""
        return {name: int(self.dims) for name in self.outputs}

    @abstractmethod
    def encode_items(
        self, texts: list[str], prompt: str | None, is_query: bool, output_types: tuple[str, ...]
    ) -> list[Encoded]:
        """Encode a batch: one :class:`Encoded` per text, in order, holding only ``output_types``."""

    def run_group(self, group: Hashable, texts: list[str]) -> list[Encoded]:
        """Run one batch formed under a :meth:`group` key (what the compute thread calls)."""
        key: tuple[str, str | None, bool, tuple[str, ...]] = group  # type: ignore[assignment]
        return self.encode_items(texts, key[1], key[2], key[3])

    def encode(self, texts: list[str], prompt: str | None) -> tuple[np.ndarray, list[int]]:
        """Dense vectors, for multi-output models that also produce dense ones."""
        if "dense" not in self.outputs:
            raise TypeError(f"{type(self).__name__} produces {', '.join(self.outputs)}, not dense vectors")
        items = self.encode_items(texts, prompt, False, ("dense",))
        return np.stack([i.dense for i in items if i.dense is not None]), [i.tokens for i in items]


def sparse_rows(pooled: np.ndarray, max_active_dims: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(indices, values)`` of the non-zero entries of each row of a small ``[rows, vocabulary]`` chunk.

    With ``max_active_dims``, only that many largest (by absolute value) entries of each row are kept, as
    ``sentence_transformers.util.select_max_active_dims`` does.
    """
    out = []
    for row in pooled:
        (indices,) = np.nonzero(row)
        out.append(top_terms(indices.astype(np.int32), row[indices].astype(np.float32), max_active_dims))
    return out


def top_terms(indices: np.ndarray, values: np.ndarray, max_active_dims: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Keep the ``max_active_dims`` largest (absolute) weights of one sparse vector, indices still ascending."""
    if max_active_dims is None or len(indices) <= max_active_dims:
        return indices, values
    keep = np.sort(np.argsort(-np.abs(values), kind="stable")[:max_active_dims])
    return indices[keep], values[keep]
