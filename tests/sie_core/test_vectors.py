"""Vector post-processing: truncation, normalization, output dtypes."""

from __future__ import annotations

import numpy as np

from sie_core.vectors import finish_vectors


def test_float32_normalized_rows_are_unit_length():
    raw = np.random.default_rng(0).normal(size=(4, 16)).astype(np.float32)
    out = finish_vectors(raw, normalize=True, dims=None, output_dtype="float32")
    assert out.dtype == np.float32 and out.shape == (4, 16)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)


def test_dims_truncates_then_renormalizes():
    raw = np.random.default_rng(1).normal(size=(3, 16)).astype(np.float32)
    out = finish_vectors(raw, normalize=True, dims=8, output_dtype="float32")
    assert out.shape == (3, 8)
    expected = raw[:, :8] / np.linalg.norm(raw[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_without_normalize_values_are_untouched():
    raw = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.testing.assert_array_equal(finish_vectors(raw, normalize=False, dims=None, output_dtype="float32"), raw)


def test_float16_int8_and_binary():
    raw = np.array([[0.6, -0.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1]], dtype=np.float32)
    half = finish_vectors(raw, normalize=False, dims=None, output_dtype="float16")
    assert half.dtype == np.float16
    q = finish_vectors(raw[:, :2], normalize=True, dims=None, output_dtype="int8")
    assert q.dtype == np.int8 and q.tolist() == [[76, -102]]
    bits = finish_vectors(raw, normalize=False, dims=None, output_dtype="binary")
    assert bits.dtype == np.uint8 and bits.shape == (1, 2)
    assert bits.tolist() == [[0b10000000, 0b10000000]]


def test_int8_of_unnormalized_vectors_uses_the_full_range():
    raw = np.array([[2.0, -4.0, 1.0]], dtype=np.float32)
    q = finish_vectors(raw, normalize=False, dims=None, output_dtype="int8")
    assert q.tolist() == [[64, -127, 32]]
