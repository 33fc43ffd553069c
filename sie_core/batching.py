"""Dynamic batching: one queue per loaded model, merged into forward passes as the device frees up.

Callers submit a list of payloads with a *group* key (payloads with different keys, say different prompts
or label sets, never share a batch). The worker takes the oldest group's items, up to ``max_batch_size``
items and ``max_batch_tokens`` padded tokens, runs them in the compute thread, and hands each caller
exactly its own results in its own order. While a batch runs, new requests queue up and form the next
batch, so concurrent callers share forward passes. Callers that live on another thread or event loop need
a moment to send their next request after their results arrive; so when fewer items are queued than the
last batch held, the worker waits up to ``max_batch_wait_s`` for them (a lone caller never waits: its
last batch held one item). A caller's big list is sorted by length first so that batches hold texts of
similar length (less padding). When a batch shared by several callers fails with an unexpected error
(not a ``SieError``), it is run again split by caller, so only the caller whose items fail gets the error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from .errors import EngineClosedError, InferenceError, OverloadedError, SieError
from .padding import length_groups
from .timing import RequestTiming, current_timing

__all__ = ["BatchStats", "ModelWorker"]

logger = logging.getLogger(__name__)

RunBatch = Callable[[Hashable, list[Any]], Sequence[Any]]


@dataclass
class BatchStats:
    """Counters a worker keeps (read by list_models and the metrics endpoint)."""

    batches: int = 0
    items: int = 0
    busy_seconds: float = 0.0
    last_batch_size: int = 0


class _Request:
    __slots__ = ("future", "pending", "queued_at", "results", "timing")

    def __init__(self, future: asyncio.Future[list[Any]], size: int) -> None:
        self.future = future
        self.results: list[Any] = [None] * size
        self.pending = size
        self.queued_at = time.perf_counter()
        # The caller's RequestTiming, if its front end asked for one (read in the caller's context).
        self.timing: RequestTiming | None = current_timing.get()


class ModelWorker:
    """The queue and batch loop of one loaded model.

    Args:
        name: Model id, for logs and errors.
        run_batch: Runs one batch in the compute thread: ``run_batch(group, payloads) -> results``.
        executor: The compute executor shared by all models on the device.
        max_batch_size: Most items per batch.
        max_batch_tokens: Most padded tokens per batch (items x longest item's cost).
        max_queue_items: Most items waiting; a submit past it raises OverloadedError.
        on_batch: Called after each batch with (size, seconds), for metrics.
        max_batch_wait_s: Longest wait for a batch to fill up to the size of the previous one.
        fixed_cost: Estimated cost of one forward pass in padded tokens; when set, a batch of mixed lengths
            runs only its group of similar lengths that holds the oldest item (see ``sie_core.padding``), and
            the rest go back to the front of the queue to be grouped again with whatever arrives meanwhile.
    """

    def __init__(
        self,
        name: str,
        run_batch: RunBatch,
        executor: Executor,
        *,
        max_batch_size: int,
        max_batch_tokens: int,
        max_queue_items: int,
        on_batch: Callable[[int, float], None] | None = None,
        max_batch_wait_s: float = 0.0,
        fixed_cost: int | None = None,
    ) -> None:
        self.name = name
        self._run_batch = run_batch
        self._executor = executor
        self._max_batch_size = max_batch_size
        self._max_batch_tokens = max_batch_tokens
        self._max_queue_items = max_queue_items
        self._on_batch = on_batch
        self._groups: OrderedDict[Hashable, deque[tuple[_Request, int, Any, int]]] = OrderedDict()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._arrived = asyncio.Event()
        self._max_batch_wait_s = max_batch_wait_s
        self._last_batch_size = 1
        self._fixed_cost = fixed_cost
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.stats = BatchStats()

    @property
    def queued_items(self) -> int:
        """Items waiting (including any of cancelled callers not yet skipped)."""
        return self._queued

    def start(self) -> None:
        """Start the batch loop on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"sie-batch:{self.name}")

    async def submit(self, group: Hashable, payloads: Sequence[Any], costs: Sequence[int]) -> list[Any]:
        """Queue payloads and wait for their results, in the same order.

        Raises:
            OverloadedError: The queue is full.
            EngineClosedError: The worker was stopped.
        """
        if self._closed:
            raise EngineClosedError(f"model {self.name!r} was unloaded while the request waited; retry")
        n = len(payloads)
        if self._queued + n > self._max_queue_items:
            raise OverloadedError(
                f"model {self.name!r} is overloaded: {self._queued} items are queued and this call adds {n} "
                f"(limit {self._max_queue_items}); retry shortly or send fewer items per call",
                retry_after=1.0,
            )
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        request = _Request(future, n)
        queue = self._groups.get(group)
        if queue is None:
            queue = self._groups[group] = deque()
        order = sorted(range(n), key=lambda i: -costs[i]) if n > 1 else [0]
        queue.extend((request, i, payloads[i], costs[i]) for i in order)
        self._queued += n
        self._wakeup.set()
        self._arrived.set()
        return await future

    def _take_batch(self) -> tuple[Hashable, list[tuple[_Request, int, Any, int]]] | None:
        while self._groups:
            group, queue = next(iter(self._groups.items()))
            batch: list[tuple[_Request, int, Any, int]] = []
            longest = 0
            while queue and len(batch) < self._max_batch_size:
                entry = queue[0]
                if entry[0].future.done():  # caller gave up: drop its items
                    queue.popleft()
                    self._queued -= 1
                    continue
                cost = max(longest, entry[3])
                if batch and cost * (len(batch) + 1) > self._max_batch_tokens:
                    break
                longest = cost
                batch.append(queue.popleft())
                self._queued -= 1
            if not queue:
                del self._groups[group]
            else:
                self._groups.move_to_end(group)  # round-robin between groups
            if batch:
                return group, batch
        return None

    async def _fill(self) -> None:
        """Wait (briefly) until as many items are queued as the last batch held."""
        target = min(self._last_batch_size, self._max_batch_size)
        if self._max_batch_wait_s <= 0 or self._queued == 0 or self._queued >= target:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_batch_wait_s
        while self._queued < target:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout=remaining)
            except asyncio.TimeoutError:
                return

    async def _loop(self) -> None:
        while True:
            await self._fill()
            taken = self._take_batch()
            if taken is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            group, batch = taken
            self._last_batch_size = len(batch)
            if self._fixed_cost is None or len(batch) == 1:
                await self._run(group, batch)
                continue
            # Similar lengths together, each group's callers answered as soon as their group is done.
            for indices in length_groups([entry[3] for entry in batch], self._fixed_cost):
                await self._run(group, [batch[i] for i in indices])

    async def _run(self, group: Hashable, batch: list[tuple[_Request, int, Any, int]], *, split: bool = True) -> None:
        batch = [entry for entry in batch if not entry[0].future.done()]
        if not batch:
            return
        payloads = [entry[2] for entry in batch]
        started = time.perf_counter()
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self._run_batch, group, payloads)
            if len(outputs) != len(batch):
                raise InferenceError(f"model {self.name!r} returned {len(outputs)} results for {len(batch)} inputs")
        except asyncio.CancelledError:
            self._fail(batch, EngineClosedError(f"model {self.name!r} was unloaded; retry the request"))
            raise
        except Exception as exc:
            by_caller = self._by_caller(batch)
            if split and len(by_caller) > 1 and not isinstance(exc, SieError):
                await self._rerun_by_caller(group, batch, by_caller, exc)
                return
            error = (
                exc
                if isinstance(exc, SieError)
                else InferenceError(
                    f"model {self.name!r} failed on a batch of {len(batch)}: {type(exc).__name__}: {exc}"
                )
            )
            logger.warning("batch failed on %s: %s", self.name, error)
            self._fail(batch, error)
            return
        elapsed = time.perf_counter() - started
        self.stats.batches += 1
        self.stats.items += len(batch)
        self.stats.busy_seconds += elapsed
        self.stats.last_batch_size = len(batch)
        if self._on_batch is not None:
            self._on_batch(len(batch), elapsed)
        for request in {id(entry[0]): entry[0] for entry in batch}.values():
            if request.timing is not None:
                if request.timing.queue_s is None:  # its wait before its first forward pass
                    request.timing.add_queue(started - request.queued_at)
                request.timing.add_inference(elapsed)
        for (request, index, _, _), output in zip(batch, outputs):
            if request.future.done():
                continue
            request.results[index] = output
            request.pending -= 1
            if request.pending == 0:
                request.future.set_result(request.results)

    @staticmethod
    def _by_caller(batch: list[tuple[_Request, int, Any, int]]) -> list[list[tuple[_Request, int, Any, int]]]:
        """The batch's entries grouped by request, requests in order of first appearance."""
        parts: dict[int, list[tuple[_Request, int, Any, int]]] = {}
        for entry in batch:
            parts.setdefault(id(entry[0]), []).append(entry)
        return list(parts.values())

    async def _rerun_by_caller(
        self,
        group: Hashable,
        batch: list[tuple[_Request, int, Any, int]],
        by_caller: list[list[tuple[_Request, int, Any, int]]],
        exc: Exception,
    ) -> None:
        """Run a failed shared batch again, one caller at a time, so only the caller whose items fail gets the error.

        One bad input (or one too large for the device) must not fail every request it happened to share a
        forward pass with; a sub-batch that fails again fails only its own request.
        """
        logger.warning(
            "batch of %d items from %d callers failed on %s (%s: %s); re-running it split by caller",
            len(batch),
            len(by_caller),
            self.name,
            type(exc).__name__,
            exc,
        )
        try:
            for part in by_caller:
                await self._run(group, part, split=False)
        except asyncio.CancelledError:
            self._fail(batch, EngineClosedError(f"model {self.name!r} was unloaded; retry the request"))
            raise

    @staticmethod
    def _fail(batch: list[tuple[_Request, int, Any, int]], error: BaseException) -> None:
        for request, _, _, _ in batch:
            if not request.future.done():
                request.future.set_exception(error)

    async def stop(self) -> None:
        """Stop the loop and fail whatever is still queued."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        error = EngineClosedError(f"model {self.name!r} was unloaded while the request waited; retry")
        for queue in self._groups.values():
            for request, _, _, _ in queue:
                if not request.future.done():
                    request.future.set_exception(error)
        self._groups.clear()
        self._queued = 0
