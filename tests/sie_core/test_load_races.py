"""Loads that overlap under model limits, bounded waits for a load, and failed loads that must evict nothing."""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from sie_core import (
    Engine,
    EngineConfig,
    ModelLoadError,
    ModelLoadingError,
    ModelSpec,
    SieError,
    WrongTaskError,
)
from sie_core import models as models_module
from sie_core.adapters import base as adapters_base
from sie_core.errors import InvalidInputError
from sie_core.families import FAMILIES, Family

ENCODER = "tiny-encoder"
RERANKER = "tiny-reranker"
POOL = [f"text {i}: {word} report for office {i % 5}" for i, word in enumerate(["revenue", "invoice", "payment"] * 22)]
QUERIES = ["revenue growth", "invoice due date", "payment terms", "office in Paris"]


class Events:
    """Loads and unloads as the engine reports them, and the most models it ever held at once."""

    def __init__(self) -> None:
        self.loads: list[tuple[str, SieError | None]] = []
        self.unloads: list[tuple[str, str]] = []
        self.loaded: set[str] = set()
        self.most_loaded = 0

    def on_request(self, model, task, seconds, items, error):
        pass

    def on_batch(self, model, task, size, seconds):
        pass

    def on_load(self, model, seconds, error):
        self.loads.append((model, error))
        if error is None:
            self.loaded.add(model)
            self.most_loaded = max(self.most_loaded, len(self.loaded))

    def on_unload(self, model, reason):
        self.unloads.append((model, reason))
        self.loaded.discard(model)

    def evictions(self) -> list[tuple[str, str]]:
        return [(m, r) for m, r in self.unloads if r != "engine closed"]


def _config(tiny_models, **overrides) -> EngineConfig:
    models = (
        ModelSpec(id=ENCODER, task="encode", path=str(tiny_models["encoder"])),
        ModelSpec(id=RERANKER, task="score", path=str(tiny_models["cross_encoder"])),
    )
    values = {"device": "cpu", "offline": True, "models": models, "load_timeout_s": 20.0, **overrides}
    return EngineConfig(**values)


def _info(engine: Engine, model: str):
    return next(m for m in engine.list_models() if m.id == model)


def _slow_loads(monkeypatch, seconds: float) -> None:
    """Make every load read its weights ``seconds`` later (in the loader thread, like a big model)."""
    real = models_module.load_adapter

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return real(*args, **kwargs)

    monkeypatch.setattr(models_module, "load_adapter", slow)


async def _until_state(engine: Engine, model: str, state: str, limit_s: float = 15.0) -> None:
    deadline = time.monotonic() + limit_s
    while engine.model_state(model) != state:
        assert time.monotonic() < deadline, f"{model} never became {state} (is {engine.model_state(model)})"
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------ 1. overlapping loads under a one-model limit
async def test_two_cold_models_under_a_one_model_limit_both_answer(tiny_models):
    events = Events()
    async with Engine(_config(tiny_models, max_loaded_models=1)) as engine:
        engine.add_listener(events)
        vector, ranking = await asyncio.wait_for(
            asyncio.gather(engine.aencode(ENCODER, "hello"), engine.ascore(RERANKER, "q", ["a", "b"])), timeout=30
        )
        assert vector.dims == 32 and len(ranking.scores) == 2
        assert sorted(m for m, e in events.loads if e is None) == [ENCODER, RERANKER]
        assert events.most_loaded == 1
        assert len(events.evictions()) == 1  # the first one served, went idle, and made room for the second


async def test_every_waiter_of_both_cold_models_is_served_by_one_load_each(tiny_models, monkeypatch):
    _slow_loads(monkeypatch, 0.3)  # every request below arrives while the first load still runs
    events = Events()
    async with Engine(_config(tiny_models, max_loaded_models=1)) as engine:
        engine.add_listener(events)
        calls = [engine.aencode(ENCODER, f"text {i}") for i in range(10)]
        calls += [engine.ascore(RERANKER, f"query {i}", ["a", "b"]) for i in range(10)]
        results = await asyncio.wait_for(asyncio.gather(*calls), timeout=30)
        assert len(results) == 20
        # Each model's waiters were handed the model as it came in: nothing evicted it before they ran.
        assert _info(engine, ENCODER).loads == 1 and _info(engine, RERANKER).loads == 1
        assert events.evictions() == [(events.loads[0][0], "to make room")]
        assert events.most_loaded == 1


async def test_a_busy_model_is_drained_for_a_queued_load_and_reloaded_for_later_requests(tiny_models):
    async with Engine(_config(tiny_models, max_loaded_models=1)) as engine:
        await engine.aload(ENCODER)
        adapter = engine._backend.manager._loaded[ENCODER].adapter  # type: ignore[union-attr]
        real_encode = adapter.encode

        def slow_encode(texts, prompt):
            time.sleep(0.5)
            return real_encode(texts, prompt)

        adapter.encode = slow_encode
        busy = asyncio.ensure_future(engine.aencode(ENCODER, "long request"))
        await asyncio.sleep(0.1)
        score = asyncio.ensure_future(engine.ascore(RERANKER, "q", ["a"]))
        await asyncio.sleep(0.1)
        # While the reranker waits for the only slot, new encoder requests are not let in ahead of it...
        late = asyncio.ensure_future(engine.aencode(ENCODER, "arrives while draining"))
        done = await asyncio.wait_for(asyncio.gather(busy, score, late), timeout=30)
        assert [type(r).__name__ for r in done] == ["EncodeResult", "ScoreResult", "EncodeResult"]
        # ...they reload the encoder after the reranker had its turn.
        assert _info(engine, ENCODER).loads == 2 and _info(engine, RERANKER).loads == 1
        assert engine.model_state(ENCODER) == "loaded" and engine.model_state(RERANKER) == "not_loaded"


# ------------------------------------------------------------------ 2. a request never waits past load_wait_s
def test_load_wait_is_a_positive_config_field_read_from_the_environment():
    assert EngineConfig().load_wait_s is None
    assert EngineConfig.from_env({"SIE_LOAD_WAIT_S": "2.5"}).load_wait_s == 2.5
    with pytest.raises(InvalidInputError, match="load_wait_s must be positive"):
        EngineConfig(load_wait_s=0)


async def test_a_slow_load_answers_model_loading_after_load_wait_and_goes_on(tiny_models, monkeypatch):
    _slow_loads(monkeypatch, 1.5)
    async with Engine(_config(tiny_models, load_wait_s=0.3)) as engine:
        started = time.monotonic()
        with pytest.raises(ModelLoadingError, match=r"'tiny-encoder' is not ready after waiting 0\.3 s") as caught:
            await engine.aencode(ENCODER, "cold")
        assert time.monotonic() - started < 1.4, "the request waited for the whole load"
        assert caught.value.retry_after is not None and caught.value.retry_after >= 1.0
        await _until_state(engine, ENCODER, "loaded")  # the load went on without the request
        assert (await engine.aencode(ENCODER, "warm")).dims == 32
        info = _info(engine, ENCODER)
        assert info.loads == 1 and info.requests == 1


async def test_without_load_wait_a_request_waits_for_the_whole_load(tiny_models, monkeypatch):
    _slow_loads(monkeypatch, 0.8)
    async with Engine(_config(tiny_models)) as engine:
        assert (await asyncio.wait_for(engine.aencode(ENCODER, "cold"), timeout=20)).dims == 32


async def test_load_wait_also_bounds_the_wait_for_room_under_the_limits(tiny_models):
    async with Engine(_config(tiny_models, max_loaded_models=1, load_wait_s=0.4)) as engine:
        await engine.aload(ENCODER)
        adapter = engine._backend.manager._loaded[ENCODER].adapter  # type: ignore[union-attr]
        real_encode = adapter.encode

        def slow_encode(texts, prompt):
            time.sleep(1.5)
            return real_encode(texts, prompt)

        adapter.encode = slow_encode
        busy = asyncio.ensure_future(engine.aencode(ENCODER, "holds the only slot"))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(ModelLoadingError, match=r"'tiny-reranker' is not ready .* waits for room"):
            await engine.ascore(RERANKER, "q", ["a"])
        assert time.monotonic() - started < 1.3
        assert (await asyncio.wait_for(busy, timeout=20)).dims == 32
        await _until_state(engine, RERANKER, "loaded")  # queued load went ahead once the encoder was idle
        assert engine.model_state(ENCODER) == "not_loaded"


# ------------------------------------------------------------------ 3. a load that cannot succeed evicts nothing
def _broken_config(folder: Path) -> Path:
    config = folder / "config.json"
    config.write_text(config.read_text()[:40])
    return folder


def _truncated_weights(folder: Path) -> Path:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder


def _no_config(folder: Path) -> Path:
    (folder / "config.json").unlink()
    return folder


def _bad_tokenizer(folder: Path) -> Path:
    (folder / "tokenizer.json").write_text("{ not json")
    return folder


FOLDER_CASES = {
    "truncated config.json": (_broken_config, ModelLoadError, r"config\.json'? is not valid JSON"),
    "truncated weights": (_truncated_weights, ModelLoadError, r"model\.safetensors'? is truncated or corrupt"),
    "config.json missing": (_no_config, ModelLoadError, r"has no config\.json"),
    "broken tokenizer.json": (_bad_tokenizer, ModelLoadError, r"tokenizer\.json'? is not valid JSON"),
}


@pytest.mark.parametrize("case", list(FOLDER_CASES))
async def test_a_broken_local_folder_fails_without_evicting_the_loaded_model(tiny_models, tmp_path, case):
    damage, error, pattern = FOLDER_CASES[case]
    broken = damage(Path(shutil.copytree(tiny_models["encoder"], tmp_path / "broken")))
    events = Events()
    async with Engine(_config(tiny_models, max_loaded_models=1, allow_local_paths=True)) as engine:
        await engine.aload(ENCODER)
        engine.add_listener(events)
        messages = []
        for _ in range(3):  # every time, not just the first
            with pytest.raises(error) as caught:
                await engine.aencode(str(broken), "x")
            messages.append(str(caught.value))
        assert events.unloads == [], "the failing load evicted the loaded model"
        assert engine.model_state(ENCODER) == "loaded" and _info(engine, ENCODER).evictions == 0
        assert engine.model_state(str(broken)) == "failed"
        for message in messages:
            assert re.search(pattern, message), message


async def test_a_model_of_the_wrong_task_is_refused_before_evicting(tiny_models):
    events = Events()
    async with Engine(_config(tiny_models, max_loaded_models=1, allow_local_paths=True)) as engine:
        await engine.aload(ENCODER)
        engine.add_listener(events)
        reranker_folder = str(tiny_models["cross_encoder"])
        with pytest.raises(WrongTaskError, match="is a score model and cannot encode"):
            await engine.aencode(reranker_folder, "x")
        assert events.unloads == [] and events.loads == []
        assert engine.model_state(ENCODER) == "loaded"
        assert engine.model_state(reranker_folder) == "not_loaded"
        assert len((await engine.ascore(reranker_folder, "q", ["a"])).scores) == 1  # the right task still works


def _ghost_family(monkeypatch, name: str, adapters: dict[str, str]) -> None:
    dense = FAMILIES["dense"]
    monkeypatch.setitem(
        FAMILIES,
        name,
        Family(name=name, task="encode", description="test", adapters=adapters, outputs=dense.outputs,
               options=dense.options),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("adapters", "pattern"),
    [
        ({"torch": "sie_core.adapters._no_such_adapter:Ghost"}, r"adapter sie_core\.adapters\._no_such_adapter:Ghost"),
        ({"torch": "sie_core.adapters.sentence_transformers:NoSuchClass"}, r"NoSuchClass does not exist"),
        ({"onnx": "sie_core.adapters.onnx_encoder:OnnxEncoder"}, r"onnx|no weights a usable backend can read"),
    ],
    ids=["adapter module missing", "adapter class missing", "no adapter for the backend"],
)
async def test_a_model_without_a_usable_adapter_fails_without_evicting(
    tiny_models, monkeypatch, tmp_path, adapters, pattern
):
    _ghost_family(monkeypatch, "ghost", adapters)
    ghost = ModelSpec(
        id="ghost-model", task="encode", family="ghost", path=str(tiny_models["encoder"]), backend="torch"
    )
    config = _config(tiny_models, max_loaded_models=1, onnx_dir=str(tmp_path / "onnx"))  # no ONNX copy to fall back to
    events = Events()
    async with Engine(config.replace(models=(*config.models, ghost))) as engine:
        await engine.aload(ENCODER)
        engine.add_listener(events)
        with pytest.raises(ModelLoadError) as caught:
            await engine.aencode("ghost-model", "x")
        assert events.unloads == [], "the failing load evicted the loaded model"
        assert engine.model_state(ENCODER) == "loaded"
        assert re.search(pattern, str(caught.value)), str(caught.value)


async def test_a_missing_library_fails_without_evicting(tiny_models, monkeypatch):
    real_find_spec = models_module.importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "sentence_transformers" else real_find_spec(name, *args, **kwargs)

    events = Events()
    async with Engine(_config(tiny_models, max_loaded_models=1)) as engine:
        await engine.aload(ENCODER)
        engine.add_listener(events)
        monkeypatch.setattr(models_module.importlib.util, "find_spec", find_spec)
        with pytest.raises(ModelLoadError, match=r"needs the Python package sentence_transformers.*pip install"):
            await engine.ascore(RERANKER, "q", ["a"])
        monkeypatch.undo()
        assert events.unloads == []
        assert engine.model_state(ENCODER) == "loaded"


async def test_a_failing_model_beside_a_working_one_leaves_it_loaded_and_serving(tiny_models, tmp_path, reference):
    broken = str(_broken_config(Path(shutil.copytree(tiny_models["encoder"], tmp_path / "broken"))))
    events = Events()
    async with Engine(_config(tiny_models, max_loaded_models=1, allow_local_paths=True)) as engine:
        await engine.aload(ENCODER)
        engine.add_listener(events)
        calls = []
        for i in range(24):
            calls.append(engine.aencode(ENCODER, POOL[i]))
            if i % 3 == 0:
                calls.append(engine.aencode(broken, POOL[i]))
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), timeout=30)
        good = [r for r in results if not isinstance(r, BaseException)]
        bad = [r for r in results if isinstance(r, BaseException)]
        assert len(good) == 24 and len(bad) == 8
        assert all(isinstance(e, ModelLoadError) and "config.json" in str(e) for e in bad)
        for i, result in enumerate(good):
            assert np.abs(result.dense - reference["encode"][i]).max() <= 1e-5
        assert events.unloads == [] and engine.model_state(ENCODER) == "loaded"
        assert _info(engine, ENCODER).evictions == 0


# ------------------------------------------------------------------ the race test
@pytest.fixture(scope="module")
def reference(tiny_models) -> dict[str, object]:
    """Every answer the race test may get, computed up front by an engine without limits."""
    with Engine(_config(tiny_models)) as engine:
        vectors = np.stack([r.dense for r in engine.encode(ENCODER, POOL)])
        scores = {}
        for q, query in enumerate(QUERIES):
            result = engine.score(RERANKER, query, POOL)
            scores[q] = {entry.index: entry.score for entry in result.scores}
    return {"encode": vectors, "score": scores}


async def _client(engine: Engine, client: int, requests: int, rng: random.Random, reference, outcome) -> None:
    for j in range(requests):
        k = (client * 7 + j) % len(POOL)
        try:
            if (client + j) % 2 == 0:
                result = await asyncio.wait_for(engine.aencode(ENCODER, POOL[k]), timeout=30)
                ok = np.abs(result.dense - reference["encode"][k]).max() <= 1e-5
            else:
                q, pair = k % len(QUERIES), [POOL[k], POOL[(k + 1) % len(POOL)]]
                ranking = await asyncio.wait_for(engine.ascore(RERANKER, QUERIES[q], pair), timeout=30)
                expected = reference["score"][q]
                ok = len(ranking.scores) == 2 and all(
                    abs(e.score - expected[(k + e.index) % len(POOL)]) <= 1e-5 for e in ranking.scores
                )
            outcome["ok" if ok else "wrong"] += 1
        except asyncio.TimeoutError:
            outcome["stalled"] += 1
        except Exception as exc:
            outcome["failed"] += 1
            outcome["errors"].append(f"{type(exc).__name__}: {exc}")
        delay = rng.random() * 0.004
        if delay > 0.002:
            await asyncio.sleep(delay - 0.002)


@pytest.mark.slow
async def test_race_many_clients_alternating_two_models_under_a_one_model_limit(tiny_models, reference, monkeypatch):
    # Each client's next request needs the other model, so a run is at least `requests` evict-and-load cycles.
    # The full garbage collection every unload does (~0.3 s, covered by test_loading) would dominate them.
    monkeypatch.setattr(adapters_base, "release_memory", lambda device: None)
    clients, requests, runs = 32, 50, 5
    for run in range(runs):
        events = Events()
        outcome: dict[str, object] = {"ok": 0, "wrong": 0, "stalled": 0, "failed": 0, "errors": []}
        async with Engine(_config(tiny_models, max_loaded_models=1)) as engine:
            engine.add_listener(events)
            tasks = [
                _client(engine, c, requests, random.Random(1000 * run + c), reference, outcome) for c in range(clients)
            ]
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
        summary = {k: v for k, v in outcome.items() if k != "errors"}
        assert outcome["ok"] == clients * requests, f"run {run}: {summary}, first errors: {outcome['errors'][:3]}"
        assert events.most_loaded == 1, f"run {run}: {events.most_loaded} models were loaded at once"
        assert all(error is None for _, error in events.loads)
