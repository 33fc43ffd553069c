"""Loading, single flight, eviction under limits, idle unloading, memory release, failed loads."""

from __future__ import annotations

import asyncio
import gc
import shutil
import threading

import numpy as np
import psutil
import pytest

from sie_core import Engine, EngineConfig, ModelLoadError, ModelSpec

from ..conftest import MINILM


def _config(tiny_models, tmp_path=None, **overrides):
    models = [ModelSpec(id="tiny-encoder", task="encode", path=str(tiny_models["encoder"]))]
    if tmp_path is not None:
        models.append(ModelSpec(id="late-model", task="encode", path=str(tmp_path / "late")))
    return EngineConfig(device="cpu", offline=True, models=tuple(models), **overrides)


class Events:
    def __init__(self):
        self.batches = []
        self.loads = []
        self.unloads = []
        self.requests = []

    def on_request(self, model, task, seconds, items, error):
        self.requests.append((model, task, error))

    def on_batch(self, model, task, size, seconds):
        self.batches.append((model, size))

    def on_load(self, model, seconds, error):
        self.loads.append((model, error))

    def on_unload(self, model, reason):
        self.unloads.append((model, reason))


def test_concurrent_single_item_calls_share_forward_passes_with_identical_results(minilm_path):
    texts = [f"sentence number {i} about revenue in office {i % 7}" for i in range(64)]
    events = Events()
    with Engine(device="cpu", offline=True) as engine:
        engine.add_listener(events)
        whole = engine.encode(MINILM, texts)  # also loads the model
        events.batches.clear()

        async def run():
            return await asyncio.gather(*(engine.aencode(MINILM, t) for t in texts))

        singles = asyncio.run(run())
    passes = [size for model, size in events.batches if model == MINILM]
    assert sum(passes) == 64
    assert len(passes) < 64, f"64 calls took {len(passes)} forward passes"
    diff = np.abs(np.stack([r.dense for r in singles]) - np.stack([r.dense for r in whole])).max()
    assert diff <= 1e-5


def test_concurrent_first_calls_share_one_load(tiny_models):
    events = Events()
    with Engine(_config(tiny_models)) as engine:
        engine.add_listener(events)
        barrier = threading.Barrier(6)
        results = []

        def call(i):
            barrier.wait()
            results.append(engine.encode("tiny-encoder", f"text {i}"))

        threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        info = next(m for m in engine.list_models() if m.id == "tiny-encoder")
    assert len(results) == 6
    assert events.loads == [("tiny-encoder", None)]
    assert info.loads == 1 and info.requests == 6


def test_a_failed_load_reaches_every_waiter_and_can_be_retried(tiny_models, tmp_path):
    with Engine(_config(tiny_models, tmp_path)) as engine:

        async def burst():
            return await asyncio.gather(*(engine.aencode("late-model", "x") for _ in range(4)), return_exceptions=True)

        errors = asyncio.run(burst())
        assert all(isinstance(e, ModelLoadError) for e in errors)
        assert "configured path" in str(errors[0]) and "is not a folder" in str(errors[0])
        info = next(m for m in engine.list_models() if m.id == "late-model")
        assert info.state == "failed" and "not a folder" in info.last_error
        # the model keeps serving others after the failure
        assert engine.encode("tiny-encoder", "still here").dims == 32
        # once the weights appear, the same id loads
        shutil.copytree(tiny_models["encoder"], tmp_path / "late")
        assert engine.encode("late-model", "x").dims == 32
        assert engine.model_state("late-model") == "loaded"


def test_a_loading_model_does_not_block_a_loaded_one(tiny_models, minilm_path):
    with Engine(_config(tiny_models)) as engine:
        engine.load("tiny-encoder")

        async def run():
            slow = asyncio.ensure_future(engine.aencode(MINILM, "cold start"))
            await asyncio.sleep(0.05)
            fast = await asyncio.wait_for(engine.aencode("tiny-encoder", "warm"), timeout=2.0)
            assert not slow.done(), "the cold model finished first; the test proves nothing"
            return fast, await slow

        fast, slow = asyncio.run(run())
    assert fast.dims == 32 and slow.dims == 384


def _rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def test_one_model_limit_alternates_evicts_and_reloads_without_growing(tiny_models, minilm_path):
    events = Events()
    with Engine(_config(tiny_models, max_loaded_models=1)) as engine:
        engine.add_listener(events)
        baseline = None
        for i in range(20):
            assert engine.encode(MINILM, f"alpha {i}").dims == 384
            assert engine.encode("tiny-encoder", f"beta {i}").dims == 32
            loaded = [m.id for m in engine.list_models() if m.loaded]
            assert loaded == ["tiny-encoder"]
            if i == 2:
                baseline = _rss()
        grown = _rss() - baseline
        infos = {m.id: m for m in engine.list_models()}
    assert infos[MINILM].loads == 20 and infos[MINILM].evictions == 20
    assert infos["tiny-encoder"].loads == 20 and infos["tiny-encoder"].evictions == 19
    assert [r for _, r in events.unloads if r != "engine closed"] == ["to make room"] * 39
    # 17 more reloads of a 90 MB model: a leak would add well over a gigabyte
    assert grown < 150 * 2**20, f"RSS grew by {grown / 2**20:.0f} MB over 17 alternations"


def test_memory_budget_evicts_least_recently_used_idle_model(tiny_models, minilm_path, tmp_path):
    second = tmp_path / "second"
    shutil.copytree(tiny_models["encoder"], second)
    config = _config(tiny_models, memory_budget_mb=100).replace(
        models=(
            ModelSpec(id="tiny-encoder", task="encode", path=str(tiny_models["encoder"])),
            ModelSpec(id="tiny-two", task="encode", path=str(second)),
        )
    )
    with Engine(config) as engine:
        engine.encode("tiny-encoder", "a")
        engine.encode("tiny-two", "b")
        engine.encode(MINILM, "d")  # ~87 MB: the two tiny ones fit beside it, so nothing is evicted
        assert {m.id for m in engine.list_models() if m.loaded} == {"tiny-encoder", "tiny-two", MINILM}
    with Engine(config.replace(memory_budget_mb=86.8)) as engine:
        engine.encode("tiny-encoder", "a")
        engine.encode("tiny-two", "b")
        engine.encode("tiny-encoder", "c")
        engine.encode(MINILM, "d")  # 86.7 MB of weights: one tiny model must go, the least recent one
        loaded = {m.id for m in engine.list_models() if m.loaded}
        assert loaded == {"tiny-encoder", MINILM}


def test_a_model_bigger_than_the_budget_is_refused_clearly(tiny_models):
    with Engine(_config(tiny_models, memory_budget_mb=10)) as engine:
        with pytest.raises(ModelLoadError, match=r"needs about 87 MB, more than the whole memory budget of 10 MB"):
            engine.encode(MINILM, "too big")
        assert engine.encode("tiny-encoder", "fits").dims == 32


def test_models_in_flight_are_never_evicted(tiny_models, minilm_path):
    with Engine(_config(tiny_models, max_loaded_models=1)) as engine:
        engine.load(MINILM)

        async def run():
            busy = [asyncio.ensure_future(engine.aencode(MINILM, [f"long text {i} " * 50] * 64)) for i in range(3)]
            await asyncio.sleep(0.05)
            other = await engine.aencode("tiny-encoder", "needs the only slot")
            return await asyncio.gather(*busy), other

        busy, other = asyncio.run(run())
    assert all(len(r) == 64 for r in busy) and other.dims == 32


def test_idle_models_are_unloaded_after_the_timeout(tiny_models):
    with Engine(_config(tiny_models, idle_timeout_s=0.3)) as engine:
        engine.encode("tiny-encoder", "hello")
        assert engine.model_state("tiny-encoder") == "loaded"
        deadline = 50
        while engine.model_state("tiny-encoder") == "loaded" and deadline:
            threading.Event().wait(0.1)
            deadline -= 1
        assert engine.model_state("tiny-encoder") == "not_loaded"
        info = next(m for m in engine.list_models() if m.id == "tiny-encoder")
        assert info.evictions == 1
        assert engine.encode("tiny-encoder", "again").dims == 32  # reloads on demand


def test_close_frees_models_and_later_calls_fail_clearly(tiny_models):
    from sie_core import EngineClosedError

    engine = Engine(_config(tiny_models))
    engine.encode("tiny-encoder", "x")
    engine.close()
    engine.close()  # twice is fine
    with pytest.raises(EngineClosedError, match="the engine is closed"):
        engine.encode("tiny-encoder", "x")


async def test_async_context_manager(tiny_models):
    async with Engine(_config(tiny_models)) as engine:
        result = await engine.aencode("tiny-encoder", ["x", "y"])
        assert [r.dims for r in result] == [32, 32]
    assert engine.closed
