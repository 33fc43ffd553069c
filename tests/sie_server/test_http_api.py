"""The HTTP app in-process (uvicorn in a thread): wire shapes, error envelope per code, auth, body limit, OpenAI
client, rerank, metrics, cold loads, client disconnects."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from sie_core import Engine, EngineConfig, ModelSpec
from sie_core.wire import MSGPACK, packb, unpackb
from sie_server.app import create_app
from sie_server.common import ServerSettings

from .http_server import MINILM, SEED_EXTRACTOR, SEED_RERANKER, TINY_ENCODER, serve_in_thread

pytestmark = pytest.mark.slow

BROKEN = "broken/model"
SLOW = "slow/encoder"


def _engine(tiny: dict[str, Path], tmp: Path, **overrides: object) -> Engine:
    broken = tmp / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    models = (
        ModelSpec(id=TINY_ENCODER, task="encode", path=str(tiny["encoder"])),
        ModelSpec(id=SLOW, task="encode", path=str(tiny["encoder"])),
        ModelSpec(id=SEED_RERANKER, task="score", path=str(tiny["cross_encoder"])),
        ModelSpec(id=SEED_EXTRACTOR, task="extract", path=str(tiny["gliner"])),
        ModelSpec(id=BROKEN, task="encode", path=str(broken)),
    )
    config = EngineConfig(
        device="cpu", offline=True, allow_any_model=False, allow_local_paths=False, models=models
    ).replace(**overrides)
    return Engine(config)


@pytest.fixture(scope="module")
def api_engine(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = _engine(tiny_models, tmp_path_factory.mktemp("api"))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def server(api_engine: Engine) -> Iterator[str]:
    with serve_in_thread(create_app(api_engine, ServerSettings(load_wait_s=60))) as url:
        yield url


def _post(url: str, path: str, body: dict, *, msgpack: bool = False, **kwargs: object) -> httpx.Response:
    if msgpack:
        headers = {"Content-Type": MSGPACK, "Accept": MSGPACK}
        return httpx.post(url + path, content=packb(body), headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]
    return httpx.post(url + path, json=body, timeout=60, **kwargs)  # type: ignore[arg-type]


def _error(response: httpx.Response) -> dict:
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert response.headers["X-SIE-Error-Code"] == error["code"]
    assert error["message"]
    return error


# ---------------------------------------------------------------------- wire shapes
def test_encode_msgpack_and_json_bodies(server: str, api_engine: Engine) -> None:
    items = [{"id": "a", "text": "Berlin office revenue"}, {"text": "Invoice 4471"}]
    expected = api_engine.encode(TINY_ENCODER, items, is_query=True)
    body = {"items": items, "params": {"options": {"is_query": True}}}
    packed = _post(server, f"/v1/encode/{TINY_ENCODER}", body, msgpack=True)
    assert packed.status_code == 200 and packed.headers["content-type"] == MSGPACK
    data = unpackb(packed.content)
    assert data["model"] == TINY_ENCODER
    assert [i.get("id") for i in data["items"]] == ["a", None]
    for item, local in zip(data["items"], expected):
        assert isinstance(item["dense"]["values"], np.ndarray) and item["dense"]["values"].dtype == np.float32
        np.testing.assert_allclose(item["dense"]["values"], local.dense, atol=1e-6)
        assert item["dense"]["dims"] == local.dims and item["tokens"] == local.tokens
    plain = _post(server, f"/v1/encode/{TINY_ENCODER}", body)
    assert plain.headers["content-type"] == "application/json"
    values = plain.json()["items"][0]["dense"]["values"]
    np.testing.assert_allclose(np.asarray(values, dtype=np.float32), expected[0].dense, atol=1e-6)


def test_encode_output_dtype_and_dims(server: str, api_engine: Engine) -> None:
    expected = api_engine.encode(TINY_ENCODER, "hello there", output_dtype="int8", dims=16)
    body = {"items": [{"text": "hello there"}], "params": {"output_dtype": "int8", "options": {"dims": 16}}}
    data = unpackb(_post(server, f"/v1/encode/{TINY_ENCODER}", body, msgpack=True).content)
    values = data["items"][0]["dense"]["values"]
    assert values.dtype == np.int8 and values.shape == (16,)
    np.testing.assert_array_equal(values, expected.dense)


def test_score_and_extract_shapes(server: str, api_engine: Engine) -> None:
    docs = ["Berlin revenue grew", "the cat sat on the mat", "office costs in Berlin"]
    expected = api_engine.score(SEED_RERANKER, "Berlin office revenue", docs, top_k=2)
    body = {"query": {"text": "Berlin office revenue", "id": "q1"}, "items": [{"text": d} for d in docs], "top_k": 2}
    data = unpackb(_post(server, f"/v1/score/{SEED_RERANKER}", body, msgpack=True).content)
    assert data["model"] == SEED_RERANKER and data["query_id"] == "q1"
    assert [s["index"] for s in data["scores"]] == [e.index for e in expected.scores]
    assert [s["rank"] for s in data["scores"]] == [0, 1]
    assert data["scores"][0]["score"] == pytest.approx(expected.scores[0].score, abs=1e-6)

    text = "Invoice 4471 from Acme GmbH, due 30 June."
    found = api_engine.extract(SEED_EXTRACTOR, text, labels=["organization", "date"], threshold=0.3)
    body = {"items": [{"text": text}], "params": {"labels": ["organization", "date"], "options": {"threshold": 0.3}}}
    data = _post(server, f"/v1/extract/{SEED_EXTRACTOR}", body).json()
    entities = data["items"][0]["entities"]
    assert [(e["text"], e["label"], e["start"], e["end"]) for e in entities] == [
        (e.text, e.label, e.start, e.end) for e in found.entities
    ]
    assert entities and all(text[e["start"] : e["end"]] == e["text"] for e in entities)


def test_model_ids_with_slashes(server: str) -> None:
    listed = httpx.get(server + "/v1/models").json()["models"]
    names = {m["name"] for m in listed}
    assert {MINILM, TINY_ENCODER, SEED_RERANKER} <= names
    one = httpx.get(f"{server}/v1/models/{MINILM}").json()
    assert one["name"] == MINILM and one["outputs"] == ["dense"] and one["dims"] == {"dense": 384}
    assert httpx.get(f"{server}/v1/models/all-MiniLM-L6-v2").json()["name"] == MINILM  # alias
    encoded = httpx.post(f"{server}/v1/encode/tiny%2Fencoder", json={"items": [{"text": "x"}]}, timeout=60)
    assert encoded.status_code == 200 and encoded.json()["model"] == TINY_ENCODER
    missing = httpx.get(f"{server}/v1/models/org/does-not-exist")
    assert missing.status_code == 404 and _error(missing)["code"] == "MODEL_NOT_FOUND"


# ---------------------------------------------------------------------- errors, one per code
def test_error_envelope_per_code(server: str) -> None:
    unknown = _post(server, "/v1/encode/nobody/nothing", {"items": [{"text": "x"}]})
    assert unknown.status_code == 404 and _error(unknown)["code"] == "MODEL_NOT_FOUND"
    assert "available" in _error(unknown)["message"]

    local_path = _post(server, "/v1/encode//etc", {"items": [{"text": "x"}]})
    assert local_path.status_code == 404 and "local path" in _error(local_path)["message"]

    empty = _post(server, f"/v1/encode/{TINY_ENCODER}", {"items": []})
    assert empty.status_code == 400 and _error(empty)["code"] == "INVALID_INPUT"

    wrong_task = _post(server, f"/v1/encode/{SEED_RERANKER}", {"items": [{"text": "x"}]})
    error = _error(wrong_task)
    assert wrong_task.status_code == 400 and error["code"] == "INVALID_INPUT" and error["reason"] == "WRONG_TASK"

    bad_json = httpx.post(
        f"{server}/v1/encode/{TINY_ENCODER}", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400 and "not valid JSON" in _error(bad_json)["message"]

    unsupported = _post(
        server, f"/v1/encode/{TINY_ENCODER}", {"items": [{"text": "x"}], "params": {"output_types": ["sparse"]}}
    )
    assert unsupported.status_code == 400 and "dense" in _error(unsupported)["message"]

    images = _post(server, f"/v1/encode/{TINY_ENCODER}", {"items": [{"images": ["a.png"]}]})
    assert images.status_code == 400 and "text" in _error(images)["message"]

    broken = _post(server, f"/v1/encode/{BROKEN}", {"items": [{"text": "x"}]})
    assert broken.status_code == 502 and _error(broken)["code"] == "MODEL_LOAD_FAILED"
    assert "Retry-After" not in broken.headers  # SIE's client fails fast on this instead of retrying

    # the server keeps serving after every one of them
    assert _post(server, f"/v1/encode/{TINY_ENCODER}", {"items": [{"text": "x"}]}).status_code == 200


def test_sie_client_sees_typed_errors(server: str) -> None:
    from sie_sdk import SIEClient
    from sie_sdk.client.errors import ModelLoadFailedError, RequestError

    client = SIEClient(server, timeout_s=60)
    with pytest.raises(RequestError) as not_found:
        client.encode("nobody/nothing", {"text": "x"})
    assert not_found.value.code == "MODEL_NOT_FOUND" and not_found.value.status_code == 404
    with pytest.raises(RequestError) as invalid:
        client.score(SEED_RERANKER, {"text": "q"}, [])
    assert invalid.value.code == "INVALID_INPUT"
    started = time.monotonic()
    with pytest.raises(ModelLoadFailedError):
        client.encode(BROKEN, {"text": "x"})
    assert time.monotonic() - started < 10


def test_queue_full_and_inference_error(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    engine = _engine(tiny_models, tmp_path, max_queue_items=4)
    try:
        with serve_in_thread(create_app(engine)) as url:
            full = _post(url, f"/v1/encode/{TINY_ENCODER}", {"items": [{"text": f"t{i}"} for i in range(5)]})
            assert full.status_code == 503 and _error(full)["code"] == "QUEUE_FULL"
            assert full.headers["Retry-After"] == "1"

            engine.load(TINY_ENCODER)
            adapter = engine._backend.manager._loaded[TINY_ENCODER].adapter  # type: ignore[union-attr]
            original = adapter.encode

            def failing(texts: list[str], prompt: object) -> object:
                if "explode" in texts:
                    raise RuntimeError("CUDA-like failure")
                return original(texts, prompt)

            adapter.encode = failing  # type: ignore[method-assign]
            boom = _post(url, f"/v1/encode/{TINY_ENCODER}", {"items": [{"text": "explode"}]})
            assert boom.status_code == 500 and _error(boom)["code"] == "INFERENCE_ERROR"
            assert _post(url, f"/v1/encode/{TINY_ENCODER}", {"items": [{"text": "fine"}]}).status_code == 200
    finally:
        engine.close()


def test_cold_load_answers_model_loading_and_sie_client_retries(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sie_sdk import SIEClient

    import sie_core.models as models

    real = models.load_adapter

    def slow(spec: ModelSpec, *args: object) -> object:
        if spec.id == SLOW:
            time.sleep(2.5)
        return real(spec, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(models, "load_adapter", slow)
    engine = _engine(tiny_models, tmp_path)
    settings = ServerSettings(load_wait_s=0.3, loading_retry_after_s=1.0)
    try:
        with serve_in_thread(create_app(engine, settings)) as url:
            first = _post(url, f"/v1/encode/{SLOW}", {"items": [{"text": "x"}]})
            assert first.status_code == 503 and _error(first)["code"] == "MODEL_LOADING"
            assert first.headers["Retry-After"] == "1"
            client = SIEClient(url, timeout_s=60)
            result = client.encode(SLOW, {"text": "x"})
            assert result["dense"].shape == (32,)
            assert client.last_retry_count >= 1  # the client retried MODEL_LOADING by itself
            fast = _post(url, f"/v1/encode/{TINY_ENCODER}", {"items": [{"text": "x"}]})
            assert fast.status_code == 200  # a fast cold load is simply waited for
    finally:
        engine.close()


# ---------------------------------------------------------------------- auth and body limit
def test_auth_on_every_route_but_health(api_engine: Engine) -> None:
    from sie_sdk import SIEClient
    from sie_sdk.client.errors import RequestError

    settings = ServerSettings(auth_token="s3cret-token")
    with serve_in_thread(create_app(api_engine, settings)) as url:
        for path in ("/healthz", "/health", "/readyz"):
            assert httpx.get(url + path).status_code == 200
        for method, path in (("GET", "/v1/models"), ("GET", "/metrics"), ("POST", f"/v1/encode/{TINY_ENCODER}")):
            response = httpx.request(method, url + path, json={"items": [{"text": "x"}]})
            assert response.status_code == 401 and _error(response)["code"] == "UNAUTHORIZED"
            assert response.headers["WWW-Authenticate"] == "Bearer"
            wrong = httpx.request(method, url + path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
        ok = httpx.get(url + "/metrics", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200
        assert SIEClient(url, api_key="s3cret-token").encode(TINY_ENCODER, {"text": "x"})["dense"].shape == (32,)
        with pytest.raises(RequestError) as refused:
            SIEClient(url, api_key="wrong").encode(TINY_ENCODER, {"text": "x"})
        assert refused.value.status_code == 401
    with serve_in_thread(create_app(api_engine, ServerSettings())) as url:  # no token configured: open
        assert httpx.get(url + "/v1/models").status_code == 200


def test_body_size_limit(api_engine: Engine) -> None:
    with serve_in_thread(create_app(api_engine, ServerSettings(max_body_bytes=2000))) as url:
        small = _post(url, f"/v1/encode/{TINY_ENCODER}", {"items": [{"text": "short"}]})
        assert small.status_code == 200
        declared = _post(url, f"/v1/encode/{TINY_ENCODER}", {"items": [{"text": "x" * 5000}]})
        assert declared.status_code == 413 and _error(declared)["code"] == "PAYLOAD_TOO_LARGE"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams
            yield b'{"items": [{"text": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}]}'

        streamed = httpx.post(
            url + f"/v1/encode/{TINY_ENCODER}", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413 and _error(streamed)["code"] == "PAYLOAD_TOO_LARGE"
        assert _post(url, f"/v1/encode/{TINY_ENCODER}", {"items": [{"text": "again"}]}).status_code == 200


# ---------------------------------------------------------------------- OpenAI and rerank
def test_openai_client_embeddings(server: str, api_engine: Engine) -> None:
    import openai

    client = openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)
    texts = ["Berlin office revenue", "Invoice 4471 from Acme GmbH"]
    expected = api_engine.encode(MINILM, texts)
    as_floats = client.embeddings.create(model=MINILM, input=texts, encoding_format="float")
    as_base64 = client.embeddings.create(model=MINILM, input=texts)  # the client asks for base64 by default
    assert as_floats.model == MINILM and len(as_floats.data) == 2
    for local, f, b in zip(expected, as_floats.data, as_base64.data):
        np.testing.assert_allclose(np.asarray(f.embedding, dtype=np.float32), local.dense, atol=1e-6)
        np.testing.assert_allclose(np.asarray(b.embedding, dtype=np.float32), local.dense, atol=1e-6)
    assert as_floats.usage.prompt_tokens == sum(r.tokens for r in expected)
    short = client.embeddings.create(model=MINILM, input="Berlin office revenue", dimensions=64)
    assert len(short.data[0].embedding) == 64
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nobody/nothing", input="x")
    with pytest.raises(openai.BadRequestError) as bad:
        client.embeddings.create(model=MINILM, input="x", dimensions=4096)
    assert "dims" in str(bad.value)

    raw = httpx.post(server + "/v1/embeddings", json={"input": "x", "model": MINILM, "encoding_format": "base64"})
    vector = np.frombuffer(base64.b64decode(raw.json()["data"][0]["embedding"]), dtype="<f4")
    assert vector.shape == (384,)


def test_rerank_endpoint(server: str, api_engine: Engine) -> None:
    docs = ["Berlin revenue grew", "the cat sat on the mat", {"text": "office costs in Berlin"}]
    expected = api_engine.score(
        SEED_RERANKER,
        "Berlin office revenue",
        ["Berlin revenue grew", "the cat sat on the mat", "office costs in Berlin"],
    )
    body = {
        "model": SEED_RERANKER,
        "query": "Berlin office revenue",
        "documents": docs,
        "top_n": 2,
        "return_documents": True,
    }
    data = httpx.post(server + "/v1/rerank", json=body, timeout=60).json()
    assert [r["index"] for r in data["results"]] == [e.index for e in expected.scores[:2]]
    assert data["results"][0]["relevance_score"] == pytest.approx(expected.scores[0].relevance, abs=1e-6)
    assert data["results"][0]["document"]["text"]


# ---------------------------------------------------------------------- ops
def test_health_ready_and_metrics(server: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    assert httpx.get(server + "/healthz").json()["status"] == "ok"
    assert httpx.get(server + "/readyz").json()["status"] == "ready"
    _post(server, f"/v1/encode/{TINY_ENCODER}", {"items": [{"text": "a"}, {"text": "b"}]})
    _post(server, "/v1/encode/nobody/nothing", {"items": [{"text": "x"}]})
    text = httpx.get(server + "/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("sie_requests_total", model=TINY_ENCODER, task="encode") >= 1
    assert value("sie_request_items_total", model=TINY_ENCODER, task="encode") >= 2
    assert value("sie_request_errors_total", model="_unknown", task="encode", code="MODEL_NOT_FOUND") >= 1
    assert value("sie_request_duration_seconds_count", model=TINY_ENCODER, task="encode") >= 1
    assert value("sie_batch_size_count", model=TINY_ENCODER, task="encode") >= 1
    assert value("sie_model_loads_total", model=TINY_ENCODER, result="ok") >= 1
    assert value("sie_model_loaded", model=TINY_ENCODER, task="encode") == 1
    assert value("sie_model_memory_bytes", model=TINY_ENCODER) > 0
    assert (("sie_queue_depth", (("model", TINY_ENCODER),))) in samples
    assert value("sie_models_loaded") >= 1
    assert value("sie_http_requests_total", route="/v1/encode", status="200") >= 1
    assert value("sie_http_requests_total", route="/v1/encode", status="404") >= 1


def test_unload_and_eviction_metrics(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    engine = _engine(tiny_models, tmp_path, max_loaded_models=1)
    try:
        with serve_in_thread(create_app(engine)) as url:
            assert _post(url, f"/v1/encode/{TINY_ENCODER}", {"items": [{"text": "a"}]}).status_code == 200
            assert _post(url, f"/v1/encode/{SLOW}", {"items": [{"text": "a"}]}).status_code == 200  # evicts one
            text = httpx.get(url + "/metrics").text
            assert f'sie_model_evictions_total{{model="{TINY_ENCODER}"}} 1.0' in text
            assert f'sie_model_unloads_total{{model="{TINY_ENCODER}",reason="evicted"}} 1.0' in text
            assert "sie_models_loaded 1.0" in text
    finally:
        engine.close()


def test_readyz_waits_for_preloads(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sie_core.models as models

    real = models.load_adapter
    gate = threading.Event()

    def gated(spec: ModelSpec, *args: object) -> object:
        gate.wait(30)
        return real(spec, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(models, "load_adapter", gated)
    engine = _engine(tiny_models, tmp_path)
    try:
        with serve_in_thread(create_app(engine, ServerSettings(preload=(TINY_ENCODER,)))) as url:
            starting = httpx.get(url + "/readyz")
            assert starting.status_code == 503 and starting.json()["status"] == "starting"
            assert httpx.get(url + "/healthz").status_code == 200
            gate.set()
            deadline = time.monotonic() + 30
            while httpx.get(url + "/readyz").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert engine.model_state(TINY_ENCODER) == "loaded"
    finally:
        gate.set()
        engine.close()


def test_client_disconnect_cancels_queued_work(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """A client that goes away has its queued items dropped: the model never computes them."""
    engine = _engine(tiny_models, tmp_path, max_batch_size=1)
    computed: list[int] = []

    class Counter:
        def on_request(self, *args: object) -> None: ...
        def on_load(self, *args: object) -> None: ...
        def on_unload(self, *args: object) -> None: ...
        def on_batch(self, model: str, task: str, size: int, seconds: float) -> None:
            computed.append(size)

    engine.add_listener(Counter())
    try:
        engine.load(TINY_ENCODER)
        adapter = engine._backend.manager._loaded[TINY_ENCODER].adapter  # type: ignore[union-attr]
        original = adapter.encode

        def slow(texts: list[str], prompt: object) -> object:
            time.sleep(0.02)  # 300 one-item batches take about 6 s
            return original(texts, prompt)

        adapter.encode = slow  # type: ignore[method-assign]
        with serve_in_thread(create_app(engine)) as url:
            big: dict[str, httpx.Response] = {}
            first = threading.Thread(
                target=lambda: big.setdefault(
                    "r", _post(url, f"/v1/encode/{TINY_ENCODER}", {"items": [{"text": f"a{i}"} for i in range(300)]})
                )
            )
            first.start()
            time.sleep(0.5)
            with pytest.raises(httpx.ReadTimeout):  # queued behind the big request; gives up and disconnects
                httpx.post(
                    url + f"/v1/encode/{TINY_ENCODER}",
                    json={"items": [{"text": f"b{i}"} for i in range(100)]},
                    timeout=httpx.Timeout(0.5),
                )
            deadline = time.monotonic() + 5
            while engine.queue_depth().get(TINY_ENCODER, 0) > 400 and time.monotonic() < deadline:
                time.sleep(0.05)
            first.join(timeout=60)
            assert big["r"].status_code == 200 and len(big["r"].json()["items"]) == 300
            time.sleep(0.3)
            assert sum(computed) == 300  # none of the 100 abandoned items was computed
            assert engine.queue_depth()[TINY_ENCODER] == 0
    finally:
        engine.close()


def test_json_body_errors_name_the_problem(server: str) -> None:
    not_object = httpx.post(f"{server}/v1/encode/{TINY_ENCODER}", json=[1, 2])
    assert not_object.status_code == 400 and "object" in _error(not_object)["message"]
    extra = _post(server, f"/v1/encode/{TINY_ENCODER}", {"items": [{"text": "x"}], "bogus": 1})
    assert extra.status_code == 400 and "bogus" in _error(extra)["message"]
    typed = httpx.post(f"{server}/v1/encode/{TINY_ENCODER}", content=b"x", headers={"content-type": "text/csv"})
    assert typed.status_code == 400 and "application/msgpack" in _error(typed)["message"]
    labels = _post(server, f"/v1/extract/{SEED_EXTRACTOR}", {"items": [{"text": "x"}]})
    assert labels.status_code == 400 and "labels" in _error(labels)["message"]
    assert json.loads(labels.content)["error"]["type"] == "invalid_request_error"


def test_mcp_endpoint_behind_the_same_token(api_engine: Engine) -> None:
    from sie_server.serve import mcp_mount

    settings = ServerSettings(auth_token="mcp-tok")
    app = create_app(api_engine, settings, mcp=mcp_mount(api_engine, settings))
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    with serve_in_thread(app) as url:
        refused = httpx.post(url + "/mcp", json=initialize, headers=headers)
        assert refused.status_code == 401 and _error(refused)["code"] == "UNAUTHORIZED"
        ok = httpx.post(url + "/mcp", json=initialize, headers={**headers, "Authorization": "Bearer mcp-tok"})
        assert ok.status_code == 200, ok.text
        assert "serverInfo" in ok.text and "sie-agents" in ok.text
        assert httpx.get(url + "/healthz").status_code == 200
