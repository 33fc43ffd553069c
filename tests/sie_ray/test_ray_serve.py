"""`sie-agents ray serve` on a local Ray instance: same answers, same errors, affinity, a replica lost mid-load.

One Ray instance for the module, started by the command itself: 2 CPUs; 2 model replicas of 0.5 CPU holding at
most one model each; an ingress of 0.25 CPU; requests wait 1 s for a cold model. Its HTTP endpoint is bound to
127.0.0.1, and the command's SIGTERM shuts Serve and Ray down at the end. Models: real all-MiniLM-L6-v2 weights (as
the seed's encoder id), a tiny cross-encoder (the seed's reranker id), a tiny encoder exported to ONNX under two ids
(loads in ~40 ms, so a single server reloading it on every switch stays quick), and a model with corrupt weights.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from sie_core import Engine, EngineConfig

from ..sie_server.http_server import SEED_ENCODER, SEED_RERANKER, ServeProcess, serve_in_thread

pytest.importorskip("ray")
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

TINY_A, TINY_B, BROKEN = "tiny/onnx-a", "tiny/onnx-b", "broken/model"
DOCS = ["Berlin revenue grew", "the cat sat on the mat", "office costs in Berlin"]
TEXTS = ["Berlin office revenue", "Invoice 4471 from Acme GmbH is due on 30 June.", "hello"]


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def onnx_encoder(tiny_models: dict[str, Path]) -> Path:
    """The tiny encoder exported to ONNX once (kept beside the tiny models for later runs)."""
    from sie_core.onnx_export import export_onnx

    root = tiny_models["encoder"].parent / "onnx-exports"
    done = next(root.glob("*/model.onnx"), None) if root.is_dir() else None
    if done is None:
        config = EngineConfig(device="cpu", offline=True, onnx_dir=str(root))
        return export_onnx(str(tiny_models["encoder"]), config=config, progress=None).folder
    return done.parent


@pytest.fixture(scope="module")
def models_file(
    tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path], minilm_path: Path, onnx_encoder: Path
) -> Path:
    folder = tmp_path_factory.mktemp("ray-models")
    broken = folder / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    entries = [
        (SEED_ENCODER, "encode", minilm_path, None),
        (SEED_RERANKER, "score", tiny_models["cross_encoder"], None),
        (TINY_A, "encode", onnx_encoder, "onnx"),
        (TINY_B, "encode", onnx_encoder, "onnx"),
        (BROKEN, "encode", broken, None),
    ]
    text = ""
    for model, task, path, backend in entries:
        text += f'[[models]]\nid = "{model}"\ntask = "{task}"\npath = "{path}"\n'
        text += f'backend = "{backend}"\n\n' if backend else "\n"
    path = folder / "models.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _engine_config(models_file: Path, **overrides: Any) -> EngineConfig:
    """What the command builds from --config (a server's strict model policy), for the in-process references."""
    env = {"SIE_CONFIG": str(models_file), "HF_HUB_OFFLINE": "1"}
    return EngineConfig.from_env(env, device="cpu", allow_any_model=False, allow_local_paths=False, **overrides)


@pytest.fixture(scope="module")
def ray_app(models_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    args = ["--config", str(models_file), "--device", "cpu", "--replicas", "2", "--num-cpus", "0.5"]
    args += ["--ingress-num-cpus", "0.25", "--max-models-per-replica", "1", "--ray-num-cpus", "2"]
    args += ["--health-check-period", "1", "--call-timeout", "60", "--load-wait", "1", "--no-mcp"]
    log = tmp_path_factory.mktemp("ray-log") / "ray-serve.log"
    server = ServeProcess(args, log, python_args=["-m", "sie_core", "ray"])
    try:
        yield server
    finally:
        code = server.stop()
        assert code == 0, server.output()[-4000:]


@pytest.fixture(scope="module")
def reference(models_file: Path) -> Iterator[Engine]:
    """The in-process engine the answers are compared with."""
    engine = Engine(_engine_config(models_file))
    yield engine
    engine.close()


# ---------------------------------------------------------------------- helpers
def _metrics(url: str) -> str:
    return httpx.get(url + "/metrics", timeout=30).text


def _series(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        match = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            out.append((labels, float(match.group(2))))
    return out


def _loads_per_replica(url: str) -> dict[str, float]:
    loads: dict[str, float] = {}
    for labels, value in _series(_metrics(url), "sie_replica_model_loads_total"):
        if labels["result"] == "ok":
            loads[labels["replica"]] = loads.get(labels["replica"], 0.0) + value
    return loads


def _held(url: str) -> dict[str, str]:
    """Model -> the replica that holds it, for the replicas that are up."""
    return {labels["model"]: labels["replica"] for labels, _ in _series(_metrics(url), "sie_replica_model_loaded")}


def _encode(url: str, model: str, text: str, client: httpx.Client | None = None) -> httpx.Response:
    body = {"items": [{"text": text}]}
    if client is not None:
        return client.post(f"{url}/v1/encode/{model}", json=body)
    return httpx.post(f"{url}/v1/encode/{model}", json=body, timeout=60)


def _vector(response: httpx.Response) -> np.ndarray:
    return np.asarray(response.json()["items"][0]["dense"]["values"], dtype=np.float32)


def _envelope(response: httpx.Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    assert response.headers["X-SIE-Error-Code"] == error["code"]
    return response.status_code, error["code"], error["message"]


# ---------------------------------------------------------------------- cold models
def test_a_cold_model_answers_model_loading_and_sies_client_retries_it(ray_app: ServeProcess) -> None:
    """Runs first: no replica has imported torch yet, so the first encoder load takes well over --load-wait 1."""
    from sie_sdk import SIEClient

    first = _encode(ray_app.url, SEED_ENCODER, "cold")
    assert first.status_code == 503, first.text
    _, code, message = _envelope(first)
    assert code == "MODEL_LOADING" and "still loading (waited 1 s)" in message
    assert first.headers["Retry-After"] == "2" and first.headers["X-SIE-Worker"].startswith("SieModel#")
    client = SIEClient(ray_app.url, timeout_s=120)
    assert client.encode(SEED_ENCODER, {"text": "cold"})["dense"].shape == (384,)
    assert client.last_retry_count >= 1  # it got MODEL_LOADING with Retry-After and retried by itself
    assert _encode(ray_app.url, SEED_ENCODER, "warm").status_code == 200


# ---------------------------------------------------------------------- same answers
def test_sie_sdk_encode_and_score_equal_the_in_process_engine(ray_app: ServeProcess, reference: Engine) -> None:
    from sie_sdk import SIEClient

    client = SIEClient(ray_app.url, timeout_s=120)
    items = [{"text": t} for t in TEXTS]
    got = client.encode(SEED_ENCODER, items, is_query=True)
    want = reference.encode(SEED_ENCODER, TEXTS, is_query=True)
    for g, w in zip(got, want):
        assert g["dense"].shape == (384,)
        np.testing.assert_allclose(g["dense"], w.dense, atol=1e-5)

    scored = client.score(SEED_RERANKER, {"text": "Berlin office revenue"}, [{"text": d} for d in DOCS])
    expected = reference.score(SEED_RERANKER, "Berlin office revenue", DOCS)
    assert [int(s["item_id"]) for s in scored["scores"]] == [e.index for e in expected.scores]
    for s, e in zip(scored["scores"], expected.scores):
        assert s["score"] == pytest.approx(e.score, abs=1e-5)

    answer = _encode(ray_app.url, SEED_ENCODER, "hello")
    assert answer.status_code == 200 and answer.headers["X-SIE-Worker"].startswith("SieModel#")
    assert float(answer.headers["X-Inference-Time"]) > 0 and len(answer.headers.get_list("X-Request-ID")) == 1


def test_openai_remote_engine_and_langchain_clients_work_unchanged(ray_app: ServeProcess, reference: Engine) -> None:
    from openai import OpenAI

    from sie_langchain import SIEEmbeddings

    want = reference.encode(SEED_ENCODER, TEXTS[0])
    openai = OpenAI(base_url=ray_app.url + "/v1", api_key="unused", timeout=120)
    embedding = openai.embeddings.create(model=SEED_ENCODER, input=[TEXTS[0]]).data[0].embedding
    np.testing.assert_allclose(np.asarray(embedding, dtype=np.float32), want.dense, atol=1e-5)
    with Engine(base_url=ray_app.url) as remote:
        np.testing.assert_allclose(remote.encode(SEED_ENCODER, TEXTS[0]).dense, want.dense, atol=1e-5)
        listed = {m.id: m for m in remote.list_models("encode")}
        assert listed[SEED_ENCODER].loaded
    vector = SIEEmbeddings(model=SEED_ENCODER, base_url=ray_app.url).embed_documents([TEXTS[0]])[0]
    np.testing.assert_allclose(np.asarray(vector, dtype=np.float32), want.dense, atol=1e-5)


# ---------------------------------------------------------------------- same errors
def test_unknown_model_bad_input_and_failed_load_give_the_single_servers_envelopes(
    ray_app: ServeProcess, models_file: Path
) -> None:
    from sie_server import ServerSettings, create_app

    cases = [
        ("/v1/encode/nobody/nothing", {"items": [{"text": "x"}]}),
        ("/v1/encode/../../etc/passwd", {"items": [{"text": "x"}]}),
        (f"/v1/encode/{SEED_RERANKER}", {"items": [{"text": "x"}]}),  # wrong task
        (f"/v1/encode/{SEED_ENCODER}", {"items": []}),
        (f"/v1/encode/{SEED_ENCODER}", {"items": [{"text": "x"}], "bogus": 1}),
        (f"/v1/score/{SEED_RERANKER}", {"query": {"text": "q"}, "items": [{"text": 1}]}),
        (f"/v1/encode/{BROKEN}", {"items": [{"text": "x"}]}),
        ("/v1/embeddings", {"model": "nobody/nothing", "input": "x"}),
    ]
    engine = Engine(_engine_config(models_file, load_wait_s=20.0))
    try:
        with serve_in_thread(create_app(engine, ServerSettings(mcp=False))) as single:
            for path, body in cases:
                ray_answer = httpx.post(ray_app.url + path, json=body, timeout=60)
                single_answer = httpx.post(single + path, json=body, timeout=60)
                assert ray_answer.status_code >= 400, (path, ray_answer.text)
                assert _envelope(ray_answer) == _envelope(single_answer), path
    finally:
        engine.close()
    broken = httpx.post(f"{ray_app.url}/v1/encode/{BROKEN}", json={"items": [{"text": "x"}]}, timeout=60)
    assert broken.status_code == 502 and "Retry-After" not in broken.headers
    assert _encode(ray_app.url, SEED_ENCODER, "still serving").status_code == 200


# ---------------------------------------------------------------------- affinity
def test_two_models_stay_on_their_replicas_where_one_server_reloads_on_every_switch(
    ray_app: ServeProcess, models_file: Path, tmp_path: Path
) -> None:
    url = ray_app.url
    _one_tiny_model_per_replica(url)
    before = _loads_per_replica(url)
    workers: dict[str, set[str]] = {TINY_A: set(), TINY_B: set()}
    with httpx.Client(timeout=60) as client:
        for i in range(200):
            model = (TINY_A, TINY_B)[i % 2]
            answer = _encode(url, model, f"request {i}", client)
            assert answer.status_code == 200, answer.text
            workers[model].add(answer.headers["X-SIE-Worker"])
    time.sleep(1.5)  # the replicas' next reports
    after = _loads_per_replica(url)
    ray_loads = {r: after.get(r, 0.0) - before.get(r, 0.0) for r in after}

    # the same 200 requests to one `sie-agents serve --max-loaded-models 1` (a process serving ONNX models only)
    args = ["--config", str(models_file), "--device", "cpu", "--max-loaded-models", "1", "--no-mcp"]
    single = ServeProcess(args, tmp_path / "serve.log")
    try:
        with httpx.Client(timeout=60) as client:
            for model in (TINY_A, TINY_B):
                assert _encode(single.url, model, "warm up", client).status_code == 200
            start = _single_loads(single.url)
            for i in range(200):
                assert _encode(single.url, (TINY_A, TINY_B)[i % 2], f"request {i}", client).status_code == 200
            single_loads = _single_loads(single.url) - start
    finally:
        single.stop()
    print(
        f"\n200 alternating requests: Ray, 2 replicas: loads per replica {ray_loads}; "
        f"one server with --max-loaded-models 1: {single_loads:.0f} loads"
    )
    assert all(v == 0 for v in ray_loads.values()), ray_loads
    assert len(workers[TINY_A]) == len(workers[TINY_B]) == 1 and workers[TINY_A] != workers[TINY_B], workers
    assert single_loads >= 190, single_loads


def _one_tiny_model_per_replica(url: str) -> None:
    """Warm up until each replica holds one of the two tiny models (Ray places a model nobody holds at random)."""
    deadline = time.monotonic() + 90
    while True:
        for model in (TINY_A, TINY_B):
            answer = _encode(url, model, "warm up")
            assert answer.status_code == 200 or _envelope(answer)[1] == "MODEL_LOADING", answer.text
        time.sleep(0.3)
        held = _held(url)
        if TINY_A in held and TINY_B in held and held[TINY_A] != held[TINY_B]:
            return
        assert time.monotonic() < deadline, held


def _single_loads(url: str) -> float:
    return sum(v for labels, v in _series(_metrics(url), "sie_model_loads_total") if labels["result"] == "ok")


# ---------------------------------------------------------------------- a replica lost mid-load
def test_a_replica_killed_mid_load_fails_no_request_uncleanly_and_the_app_recovers(
    ray_app: ServeProcess, reference: Engine
) -> None:
    """Three models on two one-model replicas keep the replicas loading; one is killed while it loads the encoder.

    The clients go on until the kill and a few calls after it (bounded), so the kill always lands in traffic and,
    with loads repeating, in a load of the encoder (seen through the registry in ``/metrics``).
    """
    url = ray_app.url
    models = (SEED_ENCODER, TINY_A, TINY_B)
    expected = {model: reference.encode(model, "lost replica").dense for model in models}
    _one_tiny_model_per_replica(url)  # so the encoder's requests make a replica load it
    outcomes: list[tuple[str, int, str]] = []
    lock = threading.Lock()
    killed = threading.Event()

    def client(index: int) -> None:
        after_kill = 0
        with httpx.Client(timeout=90) as http:
            for i in range(200):  # bounded; ends 4 calls after the kill
                if killed.is_set():
                    after_kill += 1
                    if after_kill > 4:
                        break
                model = models[(index + i) % len(models)]
                started = time.monotonic()
                try:
                    answer = _encode(url, model, "lost replica", http)
                except httpx.HTTPError as exc:  # a hang past the timeout, or a dropped connection
                    with lock:
                        outcomes.append((model, -1, f"{type(exc).__name__} after {time.monotonic() - started:.0f} s"))
                    continue
                if answer.status_code == 200:
                    ok = np.allclose(_vector(answer), expected[model], atol=1e-5)
                    result = "correct" if ok else "WRONG VECTOR"
                elif answer.status_code in (502, 503):
                    _, code, message = _envelope(answer)
                    result = code if message else "EMPTY MESSAGE"
                else:
                    result = f"unexpected {answer.text[:200]}"
                with lock:
                    outcomes.append((model, answer.status_code, result))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(16)]
    for thread in threads:
        thread.start()
    try:
        victim = _replica_loading(url, SEED_ENCODER, timeout=60)
        info = {labels["replica"]: labels for labels, _ in _series(_metrics(url), "sie_replica_info")}
        os.kill(int(info[victim]["pid"]), signal.SIGKILL)
    finally:
        killed.set()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a client hangs"

    bad = [o for o in outcomes if not (o[1] == 200 and o[2] == "correct") and o[1] not in (502, 503)]
    bad += [o for o in outcomes if o[1] in (502, 503) and o[2] == "EMPTY MESSAGE"]
    assert not bad, bad
    assert len(outcomes) >= 16 * 4, len(outcomes)  # every client made 4 calls after the kill
    failed = [o for o in outcomes if o[1] != 200]
    correct = len(outcomes) - len(failed)
    print(f"\nreplica {victim} killed mid-load: {correct} correct answers, {len(failed)} clean 5xx: {failed}")

    deadline = time.monotonic() + 120  # Ray Serve replaces the replica; every model is served again
    while True:
        ups = [labels["replica"] for labels, v in _series(_metrics(url), "sie_replica_up") if v == 1.0]
        if len(ups) == 2 and victim not in ups:
            break
        assert time.monotonic() < deadline, ups
        time.sleep(0.5)
    for model, vector in expected.items():
        while True:
            answer = _encode(url, model, "lost replica")
            if answer.status_code == 200:
                np.testing.assert_allclose(_vector(answer), vector, atol=1e-5)
                break
            assert answer.status_code == 503 and time.monotonic() < deadline, answer.text
            time.sleep(1)


def _replica_loading(url: str, model: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for labels, value in _series(_metrics(url), "sie_replica_model_loading"):
            if labels["model"] == model and value == 1.0:
                return labels["replica"]
        time.sleep(0.05)
    raise AssertionError(f"no replica was seen loading {model}")


# ---------------------------------------------------------------------- stdout
def test_the_command_writes_nothing_to_stdout(ray_app: ServeProcess) -> None:
    assert ray_app.proc.stdout is not None
    os.set_blocking(ray_app.proc.stdout.fileno(), False)
    assert not ray_app.proc.stdout.read(), "sie-agents ray serve wrote to stdout"
    assert "listening on http://127.0.0.1:" in ray_app.output()
