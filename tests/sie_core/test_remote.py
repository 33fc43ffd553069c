"""The remote backend: ``Engine(base_url=...)`` against a live server gives the local engine's results and errors."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sie_core import (
    Engine,
    EngineConfig,
    InvalidInputError,
    ModelLoadError,
    ModelSpec,
    OverloadedError,
    RemoteError,
    RemoteUnavailableError,
    UnknownModelError,
    WrongTaskError,
)
from sie_server.app import create_app
from sie_server.common import ServerSettings

from ..sie_server.http_server import MINILM, free_socket, serve_in_thread

pytestmark = pytest.mark.slow

ENC, RERANK, NER, BROKEN, SLOW = "tiny/encoder", "tiny/reranker", "tiny/gliner", "broken/model", "slow/encoder"


def _specs(tiny: dict[str, Path], broken: Path) -> tuple[ModelSpec, ...]:
    return (
        ModelSpec(id=ENC, task="encode", path=str(tiny["encoder"]), dims=32),
        ModelSpec(id=SLOW, task="encode", path=str(tiny["encoder"])),
        ModelSpec(id=RERANK, task="score", path=str(tiny["cross_encoder"])),
        ModelSpec(id=NER, task="extract", path=str(tiny["gliner"])),
        ModelSpec(id=BROKEN, task="encode", path=str(broken)),
    )


@pytest.fixture(scope="module")
def specs(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelSpec, ...]:
    broken = tmp_path_factory.mktemp("broken")
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    return _specs(tiny_models, broken)


@pytest.fixture(scope="module")
def local(specs: tuple[ModelSpec, ...]) -> Iterator[Engine]:
    engine = Engine(
        EngineConfig(device="cpu", offline=True, allow_local_paths=False, allow_any_model=False, models=specs)
    )
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def url(local: Engine) -> Iterator[str]:
    with serve_in_thread(create_app(local, ServerSettings(load_wait_s=60))) as base:
        yield base


@pytest.fixture
def remote(url: str) -> Iterator[Engine]:
    engine = Engine(base_url=url)
    yield engine
    engine.close()


def test_same_results_as_local(remote: Engine, local: Engine) -> None:
    items = [{"id": "a", "text": "Berlin office revenue"}, "Invoice 4471 from Acme GmbH"]
    got = remote.encode(ENC, items, is_query=True)
    want = local.encode(ENC, items, is_query=True)
    assert [r.id for r in got] == ["a", None]
    for g, w in zip(got, want):
        assert g.model == w.model and g.dims == w.dims and g.tokens == w.tokens and g.dtype == w.dtype
        assert g.dense.dtype == np.float32 and g.dense.flags.writeable
        np.testing.assert_allclose(g.dense, w.dense, atol=1e-6)
    for dtype in ("float16", "int8", "binary"):
        one = remote.encode(ENC, "quarterly numbers", output_dtype=dtype, dims=16)
        ref = local.encode(ENC, "quarterly numbers", output_dtype=dtype, dims=16)
        assert one.dense.dtype == ref.dense.dtype and one.dims == 16
        np.testing.assert_array_equal(one.dense, ref.dense)
    single = remote.encode(MINILM, "Berlin office revenue")
    np.testing.assert_allclose(single.dense, local.encode(MINILM, "Berlin office revenue").dense, atol=1e-6)

    docs = ["Berlin revenue grew", {"id": "cat", "text": "the cat sat on the mat"}, "office costs in Berlin"]
    ranked = remote.score(RERANK, "Berlin office revenue", docs, top_k=2)
    ref_ranked = local.score(RERANK, "Berlin office revenue", docs, top_k=2)
    assert ranked.model == ref_ranked.model
    assert [(e.index, e.item_id, e.rank) for e in ranked.scores] == [
        (e.index, e.item_id, e.rank) for e in ref_ranked.scores
    ]
    for g, w in zip(ranked.scores, ref_ranked.scores):
        assert g.score == pytest.approx(w.score, abs=1e-6) and g.relevance == pytest.approx(w.relevance, abs=1e-6)

    text = "Alice Smith works for Globex Corporation in Paris."
    found = remote.extract(NER, [text], labels=["person", "organization"], threshold=0.3)
    ref_found = local.extract(NER, [text], labels=["person", "organization"], threshold=0.3)
    assert found[0].entities
    assert [(e.text, e.label, e.start, e.end) for e in found[0].entities] == [
        (e.text, e.label, e.start, e.end) for e in ref_found[0].entities
    ]
    for g, w in zip(found[0].entities, ref_found[0].entities):
        assert g.score == pytest.approx(w.score, abs=1e-6)
    assert found[0].windows == ref_found[0].windows and found[0]["entities"][0].text


def test_models_load_and_state(remote: Engine, local: Engine) -> None:
    listed = {m.id: m for m in remote.list_models()}
    assert {ENC, RERANK, NER, MINILM} <= set(listed)
    assert listed[RERANK].tasks == ("score",)
    assert [m.id for m in remote.list_models("extract")] == [m.id for m in local.list_models("extract")]
    assert remote.model_state(ENC) == "not_loaded"  # nothing learned from the server yet; no request sent
    info = remote.load(ENC, task="encode")
    assert info.id == ENC and info.dims == 32
    assert remote.model_state(ENC) == "loaded"
    assert remote.model_state("nobody/nothing") == "not_loaded"
    assert remote.unload(ENC) is False  # the server manages its own memory
    assert local.model_state(ENC) == "loaded"
    with pytest.raises(WrongTaskError):
        remote.load(RERANK, task="encode")


def test_errors_map_back_to_the_same_classes(remote: Engine, local: Engine) -> None:
    cases = [
        (lambda e: e.encode("nobody/nothing", "x"), UnknownModelError),
        (lambda e: e.encode(RERANK, "x"), WrongTaskError),
        (lambda e: e.encode(ENC, "x", dims=99), InvalidInputError),
        (lambda e: e.extract(NER, "x", labels=[]), InvalidInputError),
        (lambda e: e.encode(BROKEN, "x"), ModelLoadError),
    ]
    for call, error in cases:
        with pytest.raises(error) as remote_error:
            call(remote)
        with pytest.raises(error) as local_error:
            call(local)
        assert type(remote_error.value) is type(local_error.value)
        assert remote_error.value.code == local_error.value.code
    with pytest.raises(InvalidInputError):  # checked before any request is sent
        remote.encode(ENC, [])


def test_server_down_is_a_clear_error() -> None:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    engine = Engine(base_url=f"http://127.0.0.1:{port}", remote_max_retries=1)
    try:
        started = time.monotonic()
        with pytest.raises(RemoteUnavailableError) as error:
            engine.encode(ENC, "x")
        assert "cannot be reached" in str(error.value) and f"127.0.0.1:{port}" in str(error.value)
        assert error.value.code == "UNAVAILABLE" and time.monotonic() - started < 10
    finally:
        engine.close()


def test_retries_model_loading_and_queue_full(specs: tuple[ModelSpec, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    import sie_core.models as models

    real = models.load_adapter

    def slow(spec: ModelSpec, *args: object) -> object:
        if spec.id == SLOW:
            time.sleep(2.0)
        return real(spec, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(models, "load_adapter", slow)
    server_engine = Engine(EngineConfig(device="cpu", offline=True, models=specs, max_queue_items=4))
    settings = ServerSettings(load_wait_s=0.2, loading_retry_after_s=0.5)
    try:
        with serve_in_thread(create_app(server_engine, settings)) as base:
            client = Engine(base_url=base, remote_max_retries=2)
            try:
                started = time.monotonic()
                assert client.encode(SLOW, "x").dims == 32  # answered 503 MODEL_LOADING, retried until loaded
                assert time.monotonic() - started >= 1.5
                with pytest.raises(OverloadedError) as full:  # QUEUE_FULL retried, then reported
                    client.encode(ENC, [f"t{i}" for i in range(5)])
                assert full.value.code == "QUEUE_FULL" and full.value.retry_after == 1.0
            finally:
                client.close()
    finally:
        server_engine.close()


def test_api_key(local: Engine) -> None:
    with serve_in_thread(create_app(local, ServerSettings(auth_token="tok-123"))) as base:
        with Engine(base_url=base, api_key="tok-123") as good:
            assert good.encode(ENC, "x").dims == 32
        with Engine(base_url=base) as anonymous, pytest.raises(RemoteError) as refused:
            anonymous.encode(ENC, "x")
        assert "401" in str(refused.value) and "api_key" in str(refused.value)


async def test_async_calls_and_listener(remote: Engine, local: Engine) -> None:
    seen: list[tuple[str, str, int]] = []

    class Listener:
        def on_request(self, model: str, task: str, seconds: float, items: int, error: object) -> None:
            seen.append((model, task, items))

        def on_batch(self, *args: object) -> None: ...
        def on_load(self, *args: object) -> None: ...
        def on_unload(self, *args: object) -> None: ...

    remote.add_listener(Listener())
    texts = [f"concurrent text {i}" for i in range(16)]
    results = await asyncio.gather(*(remote.aencode(ENC, t) for t in texts))
    for text, result in zip(texts, results):
        np.testing.assert_allclose(result.dense, local.encode(ENC, text).dense, atol=1e-6)
    ranked = await remote.ascore(RERANK, "q", ["a", "b"])
    assert len(ranked.scores) == 2
    assert (ENC, "encode", 1) in seen and (RERANK, "score", 2) in seen
    models = await remote.alist_models()
    assert models


def test_base_url_from_environment_and_validation() -> None:
    config = EngineConfig.from_env({"SIE_BASE_URL": "http://10.1.2.3:8080/", "SIE_API_KEY": "secret-key-42"})
    assert config.base_url == "http://10.1.2.3:8080" and config.api_key == "secret-key-42"
    assert "secret-key-42" not in repr(config)
    with pytest.raises(InvalidInputError, match="base_url"):
        Engine(base_url="localhost:8080")


def test_sync_call_from_many_threads(remote: Engine, local: Engine) -> None:
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            got = remote.encode(ENC, f"thread {i}")
            np.testing.assert_allclose(got.dense, local.encode(ENC, f"thread {i}").dense, atol=1e-6)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
