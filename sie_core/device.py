"""Choosing the device and dtype a model runs with."""

from __future__ import annotations

import logging

from .errors import InvalidInputError

__all__ = ["DEVICES", "DTYPES", "resolve_device", "resolve_dtype"]

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "float16", "bfloat16")


def resolve_device(requested: str = "auto") -> str:
    """Return the device to run torch models on: CUDA, then Apple MPS, then CPU.

    Imports torch, so call it only when a torch model is about to load.

    Args:
        requested: ``auto``, or an explicit ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Returns:
        The device string torch understands.

    Raises:
        InvalidInputError: The requested device is unknown or not available on this machine.
    """
    base = requested.split(":", 1)[0]
    if base not in DEVICES:
        raise InvalidInputError(f"device {requested!r} is not known; use one of {', '.join(DEVICES)}")
    if base == "cpu":
        return requested
    import torch

    if base == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if base == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device {requested!r} was asked for but CUDA is not available here; use auto or cpu")
    if base == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InvalidInputError(f"device {requested!r} was asked for but Apple MPS is not available here")
    return requested


def resolve_dtype(requested: str, device: str) -> str:
    """Return the weights dtype: float16 on CUDA and float32 elsewhere unless one is asked for.

    Args:
        requested: ``auto``, ``float32``, ``float16`` or ``bfloat16``.
        device: The resolved device.

    Raises:
        InvalidInputError: The dtype is unknown.
    """
    if requested not in DTYPES:
        raise InvalidInputError(f"dtype {requested!r} is not known; use one of {', '.join(DTYPES)}")
    if requested != "auto":
        if device == "cpu" and requested == "float16":
            logger.warning("float16 on CPU is slow and lossy; consider float32")
        return requested
    return "float16" if device.startswith("cuda") else "float32"
