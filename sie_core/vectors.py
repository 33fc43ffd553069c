"""Post-processing of dense vectors: Matryoshka truncation, normalization and output dtypes."""

from __future__ import annotations

import numpy as np

__all__ = ["finish_vectors", "l2_normalize"]


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
