"""Hybrid retrieval outputs: results of sparse (SPLADE) and multi-vector (ColBERT) encoders, and MaxSim scoring.

A multi-output encoder answers a batch with one :class:`~sie_core.adapters.multi.Encoded` per text; here they
become :class:`~sie_core.results.EncodeResult` s holding only the outputs that were asked for, and a
late-interaction model's query and document vectors become a ranked :class:`~sie_core.results.ScoreResult`.

``relevance`` for MaxSim: the score divided by the number of query vectors, i.e. the mean over query tokens
of the best cosine with any document token, clipped to 0..1. It keeps the ranking of ``score`` for one query
and is comparable across queries of different lengths; unlike a cross-encoder's sigmoid it is not a
probability (unrelated passages of a real ColBERT model still reach 0.5-0.7).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .adapters.multi import Encoded, MultiEncoderAdapter, maxsim
from .requests import EncodeRequest
from .results import EncodeResult, ScoreEntry, SparseVector
from .vectors import finish_vectors

__all__ = ["encode_results", "finish_multivector", "maxsim_entries", "wanted_outputs"]


def wanted_outputs(request: EncodeRequest) -> tuple[str, ...]:
    """The distinct output types a request asks for, sorted (the batch key part)."""
    return tuple(sorted(set(request.output_types)))


def finish_multivector(rows: np.ndarray, output_dtype: str) -> np.ndarray:
    """A multi-vector in the asked dtype: float32 as is, float16 (half the memory), int8 or packed bits."""
    if output_dtype == "float32":
        return rows
    if output_dtype == "float16":
        return rows.astype(np.float16)
    if rows.shape[0] == 0:
        width = rows.shape[1] if output_dtype == "int8" else (rows.shape[1] + 7) // 8
        return np.zeros((0, width), dtype=np.int8 if output_dtype == "int8" else np.uint8)
    return finish_vectors(rows, normalize=True, dims=None, output_dtype=output_dtype)


def encode_results(
    model_id: str, adapter: MultiEncoderAdapter, request: EncodeRequest, outputs: Sequence[Encoded]
) -> list[EncodeResult]:
    """One result per text with only the asked outputs (dense dtype and dims applied, sparse never densified)."""
    wanted = set(request.output_types)
    dense_rows = [o.dense for o in outputs if o.dense is not None]
    dense: np.ndarray | None = None
    if "dense" in wanted and dense_rows:
        normalize = request.normalize if request.normalize is not None else adapter.normalized
        dense = finish_vectors(
            np.stack(dense_rows), normalize=normalize, dims=request.dims, output_dtype=request.output_dtype
        )
    output_dims = adapter.output_dims()
    dense_dims = output_dims.get("dense", 0)
    results = []
    for i, (out, item_id) in enumerate(zip(outputs, request.ids)):
        sparse = None
        if "sparse" in wanted and out.sparse is not None:
            indices, values = out.sparse
            sparse = SparseVector(indices, values, dims=output_dims.get("sparse", 0), vocabulary=adapter.vocabulary)
        multivector = None
        if "multivector" in wanted and out.multivector is not None:
            multivector = finish_multivector(out.multivector, request.output_dtype)
        results.append(
            EncodeResult(
                model=model_id,
                dense=dense[i] if dense is not None else None,
                dims=(request.dims or dense_dims) if dense is not None else 0,
                dtype=request.output_dtype,
                truncated=bool(out.truncated),
                tokens=int(out.tokens),
                id=item_id,
                sparse=sparse,
                multivector=multivector,
            )
        )
    return results


def maxsim_entries(
    query: Encoded, documents: Sequence[Encoded], ids: Sequence[str | None], top_k: Any
) -> list[ScoreEntry]:
    """Documents ranked by MaxSim against the query (ties by position), with relevance as the module says."""
    if query.multivector is None or any(d.multivector is None for d in documents):
        raise TypeError("late-interaction scoring needs multi-vector outputs for the query and every document")
    raw = maxsim(query.multivector, [d.multivector for d in documents])  # type: ignore[misc]
    per_token = raw / max(1, int(query.multivector.shape[0]))
    relevance = np.clip(per_token, 0.0, 1.0)
    order = sorted(range(len(documents)), key=lambda i: (-raw[i], i))[:top_k]
    return [
        ScoreEntry(index=i, score=float(raw[i]), relevance=float(relevance[i]), rank=rank, item_id=ids[i] or str(i))
        for rank, i in enumerate(order)
    ]
