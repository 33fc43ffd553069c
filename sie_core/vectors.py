"""Post-processing of dense vectors (Matryoshka truncation, normalization, output dtypes) and MaxSim."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["finish_vectors", "l2_normalize", "maxsim"]


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Scale each row to unit length (rows of zeros stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def finish_vectors(raw: np.ndarray, *, normalize: bool, dims: int | None, output_dtype: str) -> np.ndarray:
    """Turn the model's float32 output into what the caller asked for.

    Args:
        raw: Float32 array (n, model_dims) straight from the model.
        normalize: L2-normalize (after truncation, so truncated vectors are unit length again).
        dims: Keep the first ``dims`` dimensions (Matryoshka truncation); None keeps all.
        output_dtype: ``float32``, ``float16``, ``int8`` (each value scaled by 127 and rounded; vectors
            that are not normalized are first scaled by their largest absolute value) or ``binary``
            (one bit per dimension, 1 where the value is positive, packed into uint8, big-endian bit order
            as ``numpy.packbits``).

    Returns:
        Array of shape (n, dims) for the float and int8 outputs, (n, ceil(dims / 8)) for binary.
    """
    out = raw[:, :dims] if dims is not None else raw
    out = out.astype(np.float32, copy=False)
    if normalize:
        out = l2_normalize(out)
    if output_dtype == "float32":
        return np.ascontiguousarray(out)
    if output_dtype == "float16":
        return out.astype(np.float16)
    if output_dtype == "int8":
        scaled = out if normalize else out / np.maximum(np.abs(out).max(axis=1, keepdims=True), 1e-12)
        return np.clip(np.rint(scaled * 127.0), -127, 127).astype(np.int8)
    if output_dtype == "binary":
        return np.packbits(out > 0, axis=1)
    raise ValueError(f"unknown output dtype {output_dtype!r}")


def maxsim(query: np.ndarray, documents: Sequence[np.ndarray]) -> np.ndarray:
    """Late-interaction scores: for each document, the sum over query tokens of the best dot product.

    Computed in float32 like ``sie_sdk.scoring.maxsim`` (for L2-normalised rows the dot product is the cosine).

    Args:
        query: ``[query_tokens, dim]``.
        documents: Each ``[doc_tokens, dim]``.

    Returns:
        One float64 score per document (0 for a document with no tokens).
    """
    q = np.asarray(query, dtype=np.float32)
    scores = np.zeros(len(documents), dtype=np.float64)
    for i, doc in enumerate(documents):
        d = np.asarray(doc, dtype=np.float32)
        if d.shape[0] == 0 or q.shape[0] == 0:
            continue
        scores[i] = float((q @ d.T).max(axis=1).sum(dtype=np.float32))
    return scores
