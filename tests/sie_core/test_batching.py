"""ModelWorker: batch formation, order, grouping, limits, cancellation and failures (no models needed)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from sie_core.batching import ModelWorker
from sie_core.errors import EngineClosedError, InferenceError, OverloadedError


class Recorder:
    """A fake model: records every batch and returns (group, payload) pairs."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.batches: list[tuple[object, list[str]]] = []
        self.delay = delay
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, group, payloads):
        with self.lock:
            self.batches.append((group, list(payloads)))
        if self.delay:
            time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in payloads:
            raise RuntimeError("boom")
        return [(group, p) for p in payloads]


@pytest.fixture
def executor():
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown(wait=True)


def make_worker(recorder, executor, **limits) -> ModelWorker:
    options = {"max_batch_size": 8, "max_batch_tokens": 10_000, "max_queue_items": 100}
    options.update(limits)
    worker = ModelWorker("fake", recorder, executor, **options)
    worker.start()
    return worker


async def test_results_come_back_in_input_order_even_when_sorted_by_length(executor):
    rec = Recorder()
    worker = make_worker(rec, executor)
    texts = ["a" * n for n in (3, 9, 1, 7, 5)]
    out = await worker.submit("g", texts, [len(t) for t in texts])
    assert out == [("g", t) for t in texts]
    # the worker sorted the request longest first to cut padding
    assert rec.batches[0][1] == sorted(texts, key=len, reverse=True)
    await worker.stop()


async def test_concurrent_callers_share_batches(executor):
    rec = Recorder(delay=0.05)
    worker = make_worker(rec, executor, max_batch_size=64)
    results = await asyncio.gather(*(worker.submit("g", [f"t{i}"], [1]) for i in range(40)))
    assert [r[0][1] for r in results] == [f"t{i}" for i in range(40)]
    assert len(rec.batches) < 40
    assert worker.stats.items == 40
    await worker.stop()


async def test_a_big_request_is_split_by_batch_size_and_token_budget(executor):
    rec = Recorder()
    worker = make_worker(rec, executor, max_batch_size=4, max_batch_tokens=30)
    texts = [f"x{i}" for i in range(10)]
    costs = [10] * 10  # 3 items x 10 tokens fit in 30; a 4th would not
    out = await worker.submit("g", texts, costs)
    assert [o[1] for o in out] == texts
    assert [len(b[1]) for b in rec.batches] == [3, 3, 3, 1]
    await worker.stop()


async def test_one_item_longer_than_the_token_budget_still_runs_alone(executor):
    rec = Recorder()
    worker = make_worker(rec, executor, max_batch_tokens=5)
    out = await worker.submit("g", ["long", "short"], [50, 1])
    assert [o[1] for o in out] == ["long", "short"]
    assert [len(b[1]) for b in rec.batches] == [1, 1]
    await worker.stop()


async def test_different_groups_never_share_a_batch(executor):
    rec = Recorder(delay=0.02)
    worker = make_worker(rec, executor, max_batch_size=64)
    calls = [worker.submit(("prompt", i % 3), [f"t{i}"], [1]) for i in range(30)]
    results = await asyncio.gather(*calls)
    for i, result in enumerate(results):
        assert result == [(("prompt", i % 3), f"t{i}")]
    for group, payloads in rec.batches:
        assert all(int(p[1:]) % 3 == group[1] for p in payloads)
    await worker.stop()


async def test_queue_limit_raises_overloaded_and_keeps_serving(executor):
    rec = Recorder(delay=0.1)
    worker = make_worker(rec, executor, max_queue_items=5, max_batch_size=1)
    first = asyncio.ensure_future(worker.submit("g", ["a", "b", "c", "d"], [1, 1, 1, 1]))
    await asyncio.sleep(0)  # let it enqueue
    with pytest.raises(OverloadedError, match=r"overloaded: .*limit 5"):
        await worker.submit("g", ["e", "f", "g"], [1, 1, 1])
    assert [o[1] for o in await first] == ["a", "b", "c", "d"]
    assert await worker.submit("g", ["z"], [1]) == [("g", "z")]
    await worker.stop()


async def test_cancelled_caller_does_not_break_the_batch_for_others(executor):
    rec = Recorder(delay=0.05)
    worker = make_worker(rec, executor, max_batch_size=2)
    blocker = asyncio.ensure_future(worker.submit("g", ["first"], [1]))
    await asyncio.sleep(0.01)  # "first" is running; the next ones queue
    doomed = asyncio.ensure_future(worker.submit("g", ["doomed1", "doomed2", "doomed3"], [1, 1, 1]))
    survivor = asyncio.ensure_future(worker.submit("g", ["survivor"], [1]))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await survivor == [("g", "survivor")]
    assert await blocker == [("g", "first")]
    assert doomed.cancelled()
    ran = [p for _, batch in rec.batches for p in batch]
    assert ran == ["first", "survivor"]  # queued items of the cancelled caller were dropped
    assert worker.queued_items == 0
    await worker.stop()


async def test_a_failing_batch_fails_only_its_callers(executor):
    rec = Recorder(fail_on="bad")
    worker = make_worker(rec, executor, max_batch_size=1)
    bad = asyncio.ensure_future(worker.submit("g", ["bad"], [1]))
    good = asyncio.ensure_future(worker.submit("g", ["good"], [1]))
    with pytest.raises(InferenceError, match="failed on a batch of 1: RuntimeError: boom"):
        await bad
    assert await good == [("g", "good")]
    await worker.stop()


async def test_stop_fails_waiting_callers_with_a_clear_error(executor):
    rec = Recorder(delay=0.2)
    worker = make_worker(rec, executor, max_batch_size=1)
    running = asyncio.ensure_future(worker.submit("g", ["a"], [1]))
    waiting = asyncio.ensure_future(worker.submit("g", ["b"], [1]))
    await asyncio.sleep(0.05)
    await worker.stop()
    for fut in (running, waiting):
        with pytest.raises(EngineClosedError, match="unloaded"):
            await fut
    with pytest.raises(EngineClosedError):
        await worker.submit("g", ["c"], [1])


async def test_mixed_lengths_run_in_groups_and_early_groups_answer_first(executor):
    rec = Recorder(delay=0.02)
    worker = make_worker(rec, executor, max_batch_size=64)
    worker._fixed_cost = 10  # as torch adapters on CPU ask for (in padded tokens)
    blocker = asyncio.ensure_future(worker.submit("g", ["warm"], [1]))
    await asyncio.sleep(0.005)  # the next requests queue up behind a running batch and form one window
    done_order: list[str] = []

    async def call(text: str, cost: int) -> None:
        assert await worker.submit("g", [text], [cost]) == [("g", text)]
        done_order.append(text)

    await asyncio.gather(*(call(f"short{i}", 3) for i in range(4)), *(call(f"long{i}", 60) for i in range(2)), blocker)
    windows = [batch for _, batch in rec.batches[1:]]
    assert sorted(len(b) for b in windows) == [2, 4]  # one window, run as two length groups
    assert all(len({p[:4] for p in b}) == 1 for b in windows)  # never a short text padded to a long one
    assert set(done_order[:2]) == {"long0", "long1"}  # the first group's callers were answered first
    await worker.stop()
