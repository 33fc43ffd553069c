"""An in-memory sparse (term-weight) index and reciprocal-rank fusion, for SIERetriever's hybrid search."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sie_core import SparseVector

__all__ = ["SparseIndex", "reciprocal_rank_fusion"]


class SparseIndex:
    """Documents' sparse vectors as three flat arrays (document, term, weight); never a dense matrix.

    Scoring a query is a binary search of each stored term in the query's (ascending) terms and one
    ``bincount``: O(total stored terms x log query terms), and nothing vocabulary-sized is ever allocated.
    """

    def __init__(self) -> None:
        self._docs = np.zeros(0, dtype=np.int64)
        self._terms = np.zeros(0, dtype=np.int64)
        self._weights = np.zeros(0, dtype=np.float32)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def extend(self, vectors: Sequence[SparseVector]) -> None:
        """Append documents' vectors, in corpus order."""
        if not vectors:
            return
        rows = np.concatenate([np.full(len(v), self._count + i, dtype=np.int64) for i, v in enumerate(vectors)])
        self._docs = np.concatenate([self._docs, rows])
        self._terms = np.concatenate([self._terms, *(v.indices.astype(np.int64) for v in vectors)])
        self._weights = np.concatenate([self._weights, *(v.values.astype(np.float32) for v in vectors)])
        self._count += len(vectors)

    def scores(self, query: SparseVector | None) -> np.ndarray:
        """The dot product of ``query`` with every document (0 for documents sharing no term), float64."""
        if query is None or len(query) == 0 or self._count == 0 or len(self._terms) == 0:
            return np.zeros(self._count, dtype=np.float64)
        positions = np.searchsorted(query.indices, self._terms)  # query indices are ascending
        positions = np.minimum(positions, len(query.indices) - 1)
        shared = query.indices[positions] == self._terms
        weights = np.where(shared, query.values[positions].astype(np.float64), 0.0) * self._weights
        return np.bincount(self._docs, weights=weights, minlength=self._count)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = 60) -> dict[int, float]:
    """Fuse rankings (best first) by ``sum(1 / (k + rank))`` with ranks from 1 (Cormack, Clarke, Büttcher 2009).

    Args:
        rankings: Each a list of document positions, best first.
        k: The fusion constant; larger values flatten the difference between ranks.

    Returns:
        Fused score by document position, for every document in any ranking.
    """
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + rank)
    return fused
