"""Shared set-up for torch-based adapters (imported only when a torch model loads)."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from ..config import EngineConfig
from ..device import resolve_device, resolve_dtype

__all__ = ["parameter_bytes", "prepare_torch", "torch_dtype"]

logger = logging.getLogger(__name__)
_setup_lock = threading.Lock()
_setup_done = False


def prepare_torch(config: EngineConfig) -> tuple[str, str]:
    """Import torch quietly, apply thread settings once, and resolve (device, dtype) for a new model."""
    global _setup_done
    # Progress bars and banners must never reach stdout; hub downloads report through logging instead.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with _setup_lock:
        import torch

        if not _setup_done:
            if config.num_threads:
                torch.set_num_threads(config.num_threads)
            try:
                import transformers

                transformers.logging.set_verbosity_error()
                transformers.logging.disable_progress_bar()
            except ImportError:
                pass
            _setup_done = True
    device = resolve_device(config.device)
    return device, resolve_dtype(config.dtype, device)


def torch_dtype(name: str) -> Any:
    """The torch dtype object for a dtype name."""
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def parameter_bytes(module: Any) -> int:
    """Bytes taken by a torch module's parameters and buffers."""
    total = 0
    for tensor in list(module.parameters()) + list(module.buffers()):
        total += tensor.numel() * tensor.element_size()
    return total
