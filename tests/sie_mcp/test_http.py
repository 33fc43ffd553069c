"""The real server over streamable HTTP: token, host checks, one process shared by clients, SIGTERM, mounting."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sie_core import Engine
from sie_mcp import create_server, mcp_http_endpoint
from sie_mcp.transports import transport_security

from .helpers import HttpServer, free_port, http_session, server_env, sie_agents_command, text_of

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.mark.slow
def test_http_requires_the_bearer_token_and_checks_the_host_header(http_server: HttpServer) -> None:
    url = http_server.url
    no_token = httpx.post(url, json=INITIALIZE, headers=MCP_HEADERS, timeout=30)
    wrong = httpx.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": "Bearer nope"}, timeout=30)
    assert no_token.status_code == 401 and wrong.status_code == 401
    assert no_token.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(url.replace("/mcp", "/other"), timeout=30).status_code == 401  # every request, every path
    authed = {**MCP_HEADERS, **http_server.headers}
    rebinding = httpx.post(url, json=INITIALIZE, headers={**authed, "Host": "evil.example:80"}, timeout=30)
    assert rebinding.status_code == 421
    foreign_origin = httpx.post(url, json=INITIALIZE, headers={**authed, "Origin": "http://evil.example"}, timeout=30)
    assert foreign_origin.status_code == 403
    ok = httpx.post(url, json=INITIALIZE, headers=authed, timeout=30)
    assert ok.status_code == 200 and "sie-agents" in ok.text


@pytest.mark.slow
async def test_one_http_server_serves_many_clients_and_shares_loaded_models(http_server: HttpServer) -> None:
    async with (
        http_session(http_server.url, http_server.headers) as first,
        http_session(http_server.url, http_server.headers) as second,
    ):
        tools = await second.tools()
        encoded = await first.call("encode", {"texts": ["Berlin office revenue"], "model": "tiny-encoder"})
        listed = await second.call("list_models", {"task": "encode"})
        progress: list[str | None] = []

        async def on_progress(p: float, total: float | None, message: str | None) -> None:
            progress.append(message)

        ranked, extracted = await asyncio.gather(
            first.call("rerank", {"query": "invoice", "documents": ["Invoice 4471 due", "fox"]}, progress=on_progress),
            second.call("extract", {"text": "Alice Smith works for Globex", "labels": ["person"], "threshold": 0.3}),
        )
        error = await second.call("encode", {"texts": []})
    assert set(tools) == {"encode", "rerank", "extract", "list_models"}
    assert encoded["isError"] is False and encoded["structuredContent"]["dims"] == 32
    # The second client never encoded, yet sees the model the first one loaded: one engine per process.
    tiny = next(m for m in listed["structuredContent"]["models"] if m["id"] == "tiny-encoder")
    assert tiny["loaded"] is True
    assert ranked["isError"] is False and ranked["structuredContent"]["results"][0]["document"]
    assert extracted["isError"] is False and extracted["structuredContent"]["model"] == "tiny-gliner"
    assert error["isError"] is True and "texts is empty" in text_of(error)


@pytest.mark.slow
async def test_preload_then_graceful_shutdown_on_sigterm(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    flags = ["--model", f"encode=tiny-encoder={tiny_models['encoder']}", "--preload", "acme/not-served"]
    server = HttpServer([*flags, "--preload", "tiny-encoder"], tmp_path / "server.log")
    states: list[bool] = []
    code, elapsed = None, 0.0
    try:
        # The client's session is still open when SIGTERM arrives; its own teardown then fails, which is fine.
        with contextlib.suppress(Exception):
            async with http_session(server.url) as client:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and not (states and states[-1]):
                    listed = await client.call("list_models", {"task": "encode"})
                    models = {m["id"]: m for m in listed["structuredContent"]["models"]}
                    states.append(models["tiny-encoder"]["loaded"])
                    await asyncio.sleep(0.2)
                started = time.monotonic()
                code = await asyncio.to_thread(server.stop)
                elapsed = time.monotonic() - started
    finally:
        server.stop()
    log = (tmp_path / "server.log").read_text()
    assert states and states[-1] is True, log  # loaded without any tool call naming it
    assert "preload of acme/not-served failed" in log and "preloaded tiny-encoder" in log
    assert code == 0, log
    assert elapsed < 20, log
    assert "MCP HTTP server shut down" in log and "unloaded tiny-encoder (engine closed)" in log


def test_non_loopback_host_needs_an_explicit_flag() -> None:
    command = [sie_agents_command(), "mcp", "--transport", "streamable-http", "--host", "0.0.0.0", "--port", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=server_env())
    assert done.returncode == 2
    assert "--allow-remote" in done.stderr and done.stdout == ""


def test_transport_security_defaults() -> None:
    loopback = transport_security("127.0.0.1")
    assert loopback.enable_dns_rebinding_protection is True
    assert "127.0.0.1:*" in loopback.allowed_hosts and "localhost:*" in loopback.allowed_hosts
    assert all("evil" not in h for h in loopback.allowed_hosts)
    named = transport_security("10.1.2.3", ["mcp.internal:8000"])
    assert named.enable_dns_rebinding_protection is True
    assert {"10.1.2.3:*", "mcp.internal:8000"} <= set(named.allowed_hosts)
    assert "http://mcp.internal:8000" in named.allowed_origins
    assert transport_security("0.0.0.0").enable_dns_rebinding_protection is False
    assert transport_security("0.0.0.0", ["box.lan"]).enable_dns_rebinding_protection is True


@contextlib.contextmanager
def serve_in_thread(app: Any, port: int) -> Iterator[None]:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=30)


async def test_mcp_endpoint_mounts_in_a_bigger_starlette_app_sharing_the_engine(mcp_engine: Engine) -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    endpoint, mcp_lifespan = mcp_http_endpoint(create_server(mcp_engine))

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with mcp_lifespan():
            yield

    async def health(request: Any) -> JSONResponse:
        return JSONResponse({"loaded": [m.id for m in await mcp_engine.alist_models() if m.loaded]})

    app = Starlette(routes=[Route("/health", health), Route("/mcp", endpoint=endpoint)], lifespan=lifespan)
    port = free_port()
    with serve_in_thread(app, port):
        async with http_session(f"http://127.0.0.1:{port}/mcp") as client:
            result = await client.call("encode", {"texts": ["mounted"], "model": "tiny-encoder"})
        async with httpx.AsyncClient() as http:
            health_reply = (await http.get(f"http://127.0.0.1:{port}/health")).json()
    assert result["isError"] is False and result["structuredContent"]["model"] == "tiny-encoder"
    assert "tiny-encoder" in health_reply["loaded"]
