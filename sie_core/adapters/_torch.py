"""Shared set-up for torch-based adapters (imported only when a torch model loads)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from ..config import EngineConfig
from ..device import resolve_device, resolve_dtype
from ..threads import thread_plan

__all__ = ["sized_threads", "parameter_bytes", "prepare_torch", "torch_dtype"]

logger = logging.getLogger(__name__)
_setup_lock = threading.Lock()
_setup_done = False


def prepare_torch(config: EngineConfig) -> tuple[str, str]:
    """Import torch quietly, apply thread settings once, and resolve (device, dtype) for a new model.

    The thread counts come from :func:`sie_core.threads.thread_plan`.
    """
    global _setup_done
    # Progress bars and banners must never reach stdout; hub downloads report through logging instead.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with _setup_lock:
        import torch

        if not _setup_done:
            plan = thread_plan(config.num_threads)
            # Set the process-wide count before any forward pass: torch copies it into each thread (the
            # compute thread included) the first time that thread runs a parallel operation.
            torch.set_num_threads(plan.torch_threads)
            try:
                torch.set_num_interop_threads(plan.interop_threads)
            except RuntimeError:  # torch already started its inter-op pool (the host application used it)
                pass
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


#: A batch of one text up to this many characters (about 150 tokens) runs on one thread.
SHORT_TEXT_CHARS = 600


def sized_threads(
    run: Callable[[Hashable, list[Any]], Sequence[Any]], threads: int
) -> Callable[[Hashable, list[Any]], Sequence[Any]]:
    """``run`` with torch's thread count set per batch: ``threads``, fewer when other processes take cores.

    Under contention (:class:`sie_core.threads.CpuWatch`) the team shrinks to the free cores
    (:func:`sie_core.threads.threads_left`), so a busy neighbour costs throughput in proportion instead of
    stalling every barrier. A batch of one short text (or pair) runs on one thread when the user chose a
    passive wait policy: its matrices are too small for a sleeping second thread's wake-ups to pay off.
    """
    import torch

    from ..threads import CpuWatch, thread_plan, threads_left

    plan = thread_plan()  # this process's CPUs and wait policy (``threads`` may be an override)
    watch = CpuWatch()
    passive = plan.wait_policy == "PASSIVE"

    def sized(group: Hashable, items: list[Any]) -> Sequence[Any]:
        if passive and len(items) == 1 and _chars(items[0]) <= SHORT_TEXT_CHARS:
            want = 1
        else:
            want = threads_left(threads, plan.usable_cpus, watch.others())
        if torch.get_num_threads() != want:
            torch.set_num_threads(want)
        return run(group, items)

    return sized


def _chars(item: Any) -> int:
    """Characters of a text or a (query, document) pair; anything else counts as long."""
    if isinstance(item, str):
        return len(item)
    if isinstance(item, tuple) and all(isinstance(part, str) for part in item):
        return sum(len(part) for part in item)
    return SHORT_TEXT_CHARS + 1
