"""One bad input must fail only its own request: rejected at validation, and isolated if it reaches a batch."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from sie_core import Engine, EngineConfig, InvalidInputError, ModelSpec
from sie_core.batching import ModelWorker
from sie_core.errors import EngineClosedError, InferenceError, OverloadedError
from sie_core.validation import normalize_items, normalize_query

POISON = "\ud800 poisoned"

# --- validation ------------------------------------------------------------------------------------------


def test_a_lone_surrogate_is_rejected_naming_the_item_and_the_position():
    config = EngineConfig()
    items = ["fine", "also fine", {"text": "ok"}, POISON]
    with pytest.raises(InvalidInputError) as info:
        normalize_items(items, config)
    assert str(info.value) == (
        "items[3] contains a lone surrogate (U+D800) at character 0; texts must be valid Unicode (UTF-8 encodable)"
    )
    with pytest.raises(InvalidInputError, match=r"^query contains a lone surrogate \(U\+DFFF\) at character 2"):
        normalize_query("ab\udfff", config)
    with pytest.raises(InvalidInputError, match=r"^items contains a lone surrogate"):
        normalize_items({"text": "x\udc80"}, config)


def test_the_position_is_found_in_a_long_text():
    config = EngineConfig()
    text = "é" * 199_999 + "\udbff"  # non-ASCII throughout, the surrogate last
    with pytest.raises(InvalidInputError, match=r"\(U\+DBFF\) at character 199,999;"):
        normalize_items([text], config)


def test_valid_unicode_is_kept_including_nul_zero_width_and_astral_characters():
    config = EngineConfig()
    texts = ["a\x00b", "zero\u200bwidth\ufeff", "emoji \U0001f600 and a pair of surrogates decoded", "日本語"]
    assert normalize_items(texts, config)[0] == texts


# --- ModelWorker: a failing shared batch is re-run split by caller ------------------------------------------


class PoisonSensitive:
    """A fake model that raises like a tokenizer on any batch holding a poisoned payload."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list[str]] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, group, payloads):
        with self.lock:
            self.batches.append(list(payloads))
        if self.delay:
            time.sleep(self.delay)
        if any(p.startswith("\ud800") for p in payloads):
            raise TypeError("TextEncodeInput must be Union[TextInputSequence, ...]")
        return [p.upper() for p in payloads]


@pytest.fixture
def executor():
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown(wait=True)


def _worker(model, executor, **limits) -> ModelWorker:
    options = {"max_batch_size": 64, "max_batch_tokens": 10_000, "max_queue_items": 1_000}
    options.update(limits)
    worker = ModelWorker("fake", model, executor, **options)
    worker.start()
    return worker


async def _queued_behind_a_blocker(worker, calls):
    """Submit a blocker, then the calls while it runs, so the calls all land in one batch."""
    blocker = asyncio.ensure_future(worker.submit("g", ["warm"], [1]))
    await asyncio.sleep(0.01)
    futures = [asyncio.ensure_future(worker.submit("g", payloads, [1] * len(payloads))) for payloads in calls]
    await blocker
    return await asyncio.gather(*futures, return_exceptions=True)


async def test_only_the_poisoned_caller_fails_and_the_others_get_correct_results(executor, caplog):
    model = PoisonSensitive(delay=0.05)
    worker = _worker(model, executor)
    calls = [[f"good {i}", f"more {i}"] for i in range(6)]
    calls.insert(3, ["fine too", POISON])  # a request with one bad item among good ones
    with caplog.at_level(logging.WARNING, logger="sie_core.batching"):
        results = await _queued_behind_a_blocker(worker, calls)
    assert len(model.batches[1]) == 14  # all seven callers did share the failing batch
    for i, (payloads, result) in enumerate(zip(calls, results)):
        if i == 3:
            assert isinstance(result, InferenceError)
            assert "failed on a batch of 2: TypeError" in str(result)
        else:
            assert result == [p.upper() for p in payloads]
    splits = [r for r in caplog.records if "split by caller" in r.getMessage()]
    assert len(splits) == 1 and splits[0].levelno == logging.WARNING
    assert "14 items from 7 callers" in splits[0].getMessage()
    # stats count the forward passes that succeeded: the blocker and the six clean sub-batches
    assert worker.stats.batches == 7 and worker.stats.items == 13
    assert worker.queued_items == 0
    await worker.stop()


async def test_a_batch_of_one_caller_is_not_re_run(executor):
    model = PoisonSensitive()
    worker = _worker(model, executor)
    with pytest.raises(InferenceError, match="failed on a batch of 3: TypeError"):
        await worker.submit("g", ["a", POISON, "b"], [1, 1, 1])
    assert len(model.batches) == 1
    assert await worker.submit("g", ["next"], [1]) == ["NEXT"]
    await worker.stop()


async def test_sie_errors_are_not_re_run(executor):
    calls: list[list[str]] = []

    def overloaded(group, payloads):
        calls.append(list(payloads))
        if len(calls) == 1:
            time.sleep(0.05)
            return ["w"]
        raise OverloadedError("device is busy; retry", retry_after=1.0)

    worker = _worker(overloaded, executor)
    results = await _queued_behind_a_blocker(worker, [["a"], ["b"], ["c"]])
    assert all(isinstance(r, OverloadedError) for r in results)
    assert len(calls) == 2  # the blocker and the shared batch, nothing re-run
    await worker.stop()


async def test_several_poisoned_callers_each_get_their_own_error(executor):
    model = PoisonSensitive(delay=0.02)
    worker = _worker(model, executor)
    calls = [["ok 0"], [POISON], ["ok 1"], [POISON + " again"], ["ok 2"]]
    results = await _queued_behind_a_blocker(worker, calls)
    assert [type(r).__name__ for r in results] == ["list", "InferenceError", "list", "InferenceError", "list"]
    assert [results[0], results[2], results[4]] == [["OK 0"], ["OK 1"], ["OK 2"]]
    await worker.stop()


async def test_stopping_during_the_split_fails_every_waiting_caller(executor):
    model = PoisonSensitive(delay=0.1)
    worker = _worker(model, executor)
    blocker = asyncio.ensure_future(worker.submit("g", ["warm"], [1]))
    await asyncio.sleep(0.01)
    futures = [asyncio.ensure_future(worker.submit("g", [p], [1])) for p in (POISON, "a", "b", "c")]
    await blocker
    for _ in range(300):  # until the shared batch has failed and its first sub-batch is running
        if len(model.batches) >= 3:
            break
        await asyncio.sleep(0.01)
    assert len(model.batches) == 3, model.batches
    await worker.stop()
    done, pending = await asyncio.wait(futures, timeout=5)
    assert not pending
    for future in done:
        assert isinstance(future.exception(), (EngineClosedError, InferenceError))
    assert any(isinstance(f.exception(), EngineClosedError) for f in futures)


# --- the engine ------------------------------------------------------------------------------------------


def _engine(tiny_models) -> Engine:
    spec = ModelSpec(id="tiny-encoder", task="encode", path=str(tiny_models["encoder"]))
    return Engine(EngineConfig(device="cpu", offline=True, models=(spec,)))


def test_a_poisoned_text_is_rejected_while_concurrent_valid_calls_all_succeed(tiny_models):
    texts = [f"valid sentence number {i}" for i in range(12)]
    with _engine(tiny_models) as engine:
        expected = engine.encode("tiny-encoder", texts)  # also loads the model

        async def run():
            calls = [engine.aencode("tiny-encoder", t) for t in texts]
            calls.insert(5, engine.aencode("tiny-encoder", ["a fine one", "another", "ok", POISON]))
            return await asyncio.gather(*calls, return_exceptions=True)

        results = asyncio.run(run())
    error = results.pop(5)
    assert isinstance(error, InvalidInputError)
    assert "items[3] contains a lone surrogate (U+D800) at character 0" in str(error)
    for result, reference in zip(results, expected):
        assert not isinstance(result, BaseException), result
        assert result.dense.tolist() == pytest.approx(reference.dense.tolist(), abs=1e-5)


def test_if_a_poisoned_text_got_past_validation_only_its_caller_would_fail(tiny_models, monkeypatch):
    # Defence in depth: switch the validation off and let the real tokenizer raise inside a shared batch.
    import sie_core.validation as validation

    monkeypatch.setattr(validation, "_check_encodable", lambda text, where: None)
    texts = [f"valid sentence number {i}" for i in range(12)]
    with _engine(tiny_models) as engine:
        expected = engine.encode("tiny-encoder", texts)

        async def run():
            calls = [engine.aencode("tiny-encoder", t) for t in texts]
            calls.insert(5, engine.aencode("tiny-encoder", POISON))
            return await asyncio.gather(*calls, return_exceptions=True)

        results = asyncio.run(run())
    error = results.pop(5)
    assert isinstance(error, InferenceError), error
    for result, reference in zip(results, expected):
        assert not isinstance(result, BaseException), result
        assert result.dense.tolist() == pytest.approx(reference.dense.tolist(), abs=1e-5)
