"""Per-request timing that a front end can ask the engine to fill in (queue wait and model time).

A front end (the HTTP server's ``X-Queue-Time`` / ``X-Inference-Time`` headers) sets :data:`current_timing`
to a fresh :class:`RequestTiming` before an engine call. The engine's call runs in a copy of the caller's
context, so the backend's request coroutine can read the same object (``current_timing.get()``) and hand it
to whatever computes the request's items (for example the batch worker, which runs in a context of its own),
which adds to it. Nothing is recorded while the variable is unset, and a backend that measures nothing leaves
the fields ``None`` (a front end then reports nothing rather than a guess).

>>> timing = RequestTiming()
>>> token = current_timing.set(timing)
>>> current_timing.get().add_queue(0.004); current_timing.get().add_inference(0.012)
>>> current_timing.reset(token)
>>> (timing.queue_s, timing.inference_s)
(0.004, 0.012)
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

__all__ = [
    "SERVER_SWITCH_INTERVAL_S",
    "RequestTiming",
    "current_timing",
    "favour_responsiveness",
    "model_loaded",
    "model_unloaded",
]


@dataclass
class RequestTiming:
    """Where one request's time went, in seconds; ``None`` where the backend did not measure it.

    Attributes:
        queue_s: Time the request's items waited in the model's queue before their first forward pass
            (the longest wait over its items).
        inference_s: Time of the forward passes that computed the request's items (summed over batches).
        worker: Which worker served the request, when the backend runs models in several (a Ray Serve replica).
    """

    queue_s: float | None = None
    inference_s: float | None = None
    worker: str | None = None

    def add_queue(self, seconds: float) -> None:
        """Note one item's (or batch's) queue wait; the longest counts."""
        self.queue_s = seconds if self.queue_s is None else max(self.queue_s, seconds)

    def add_inference(self, seconds: float) -> None:
        """Add the time of one forward pass that computed some of the request's items."""
        self.inference_s = seconds if self.inference_s is None else self.inference_s + seconds


#: The timing of the request being served in this context, if a front end asked for one.
current_timing: ContextVar[RequestTiming | None] = ContextVar("sie_request_timing", default=None)


#: GIL switch interval for the server processes (Python's default is 5 ms).
SERVER_SWITCH_INTERVAL_S = 0.0005


def favour_responsiveness() -> None:
    """Keep small calls fast while a big one runs, for a server process: GIL hand-offs and GC pauses.

    * The GIL is handed between threads every 0.5 ms instead of 5 ms. While one request's Python work runs in a
      worker thread (windowing a 199,000-character text, merging thousands of entities), every other request's
      step on the event loops waits for the GIL; a small answer needs a few dozen such hand-offs, so at 5 ms each
      a ``list_models`` took 100-400 ms.
    * After each model load, everything alive is moved out of the garbage collector's reach (``gc.freeze``):
      torch, transformers and a model's own objects are several hundred thousand, and a full collection that
      walked them all held the GIL for about 300 ms, which a big request's allocations triggered every few
      seconds. Collections then walk only what was made since. An unload gives them back (``gc.unfreeze``), so
      the evicted model's reference cycles are collected.

    Called by ``sie-agents serve``, ``sie-agents mcp`` and the Ray replicas only: a library must not change the
    interpreter for its host.
    """
    import sys

    global _freeze_after_loads
    sys.setswitchinterval(SERVER_SWITCH_INTERVAL_S)
    _freeze_after_loads = True


_freeze_after_loads = False


def model_loaded() -> None:
    """Called by the engine after each successful load (see :func:`favour_responsiveness`)."""
    if _freeze_after_loads:
        import gc

        gc.freeze()


def model_unloaded() -> None:
    """Called by the engine after each unload: what was frozen may be collected again."""
    if _freeze_after_loads:
        import gc

        gc.unfreeze()
