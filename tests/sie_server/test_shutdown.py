"""SIGTERM while requests are stuck (issue 14, item 4): clean 503s, a bounded exit, a clean log.

A `sie-agents serve` process whose loads of ``stall/encoder`` never finish (the loader blocks forever, as a
deadlocked load did) gets 32 requests for that model plus live traffic on a working model, then SIGTERM.
Every in-flight request must answer correctly or with a ``503 SHUTTING_DOWN`` envelope, the process must exit
within its graceful timeout, and its log must show none of the asyncio teardown noise.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from sie_core import Engine, EngineConfig, ModelSpec

from .http_server import TINY_ENCODER, ServeProcess

pytestmark = pytest.mark.slow

STALL = "stall/encoder"
GRACEFUL_S = 4.0
#: Interpreter start-up is not part of it, but its teardown is; the machine is small and shared.
EXIT_SLACK_S = 3.0
IN_FLIGHT = 32

# Runs the CLI with the loader of STALL blocked forever (on a non-daemon pool thread, like a real stuck load).
LAUNCHER = f"""
import sys, threading
import sie_core.models as models
real = models.load_adapter
never = threading.Event()
def load(spec, *args, **kwargs):
    if spec.id == {STALL!r}:
        never.wait()
    return real(spec, *args, **kwargs)
models.load_adapter = load
from sie_core.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _config(folder: Path, tiny: dict[str, Path]) -> Path:
    text = "".join(
        f'[[models]]\nid = "{name}"\ntask = "encode"\npath = "{tiny["encoder"]}"\n\n' for name in (TINY_ENCODER, STALL)
    )
    path = folder / "models.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_sigterm_with_32_stuck_requests(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    config = _config(tmp_path, tiny_models)
    with Engine(
        EngineConfig(
            device="cpu",
            offline=True,
            models=(ModelSpec(id=TINY_ENCODER, task="encode", path=str(tiny_models["encoder"])),),
        )
    ) as local:
        reference = local.encode(TINY_ENCODER, "live traffic").dense
    proc = ServeProcess(
        [
            "--config",
            str(config),
            "--device",
            "cpu",
            "--offline",
            "--no-mcp",
            "--preload",
            TINY_ENCODER,
            "--load-wait",
            "120",
            "--graceful-timeout",
            str(GRACEFUL_S),
        ],
        tmp_path / "serve.log",
        python_args=["-c", LAUNCHER],
    )
    try:
        deadline = time.monotonic() + 120
        while httpx.get(proc.url + "/readyz").status_code != 200:
            assert time.monotonic() < deadline, proc.output()
            time.sleep(0.1)
        stuck, live, took = asyncio.run(_load_then_sigterm(proc))
    finally:
        proc.stop()
    log = proc.output()

    assert len(stuck) == IN_FLIGHT
    for status, body in stuck:
        assert status == 503, (status, body)
        assert body["error"]["code"] == "SHUTTING_DOWN" and body["error"]["message"], body
    assert live, "no live request was answered"
    for status, body in live:
        if status == 200:
            np.testing.assert_allclose(body["data"][0]["embedding"], reference, atol=1e-5)
        else:
            assert status == 503 and body["error"]["code"] in ("SHUTTING_DOWN", "ENGINE_CLOSED"), (status, body)
    assert proc.proc.returncode == 0, log
    assert took < GRACEFUL_S + EXIT_SLACK_S, f"exited {took:.1f} s after SIGTERM\n{log}"
    for noise in ("Task was destroyed", "different event loop", "Traceback", "Exception in ASGI application"):
        assert noise not in log, log
    assert "timeout graceful shutdown exceeded" not in log, log  # nothing was left for uvicorn to cancel
    for i in range(IN_FLIGHT):  # the request id is in the log line of its request
        assert f"[stuck-{i}] POST /v1/encode/{STALL} -> SHUTTING_DOWN" in log, log


async def _load_then_sigterm(
    proc: ServeProcess,
) -> tuple[list[tuple[int, dict]], list[tuple[int, dict]], float]:
    stuck: list[tuple[int, dict]] = []
    live: list[tuple[int, dict]] = []
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=proc.url, timeout=60, limits=limits) as http:

        async def stuck_call(i: int) -> None:
            response = await http.post(
                f"/v1/encode/{STALL}", json={"items": [{"text": f"stuck {i}"}]}, headers={"X-Request-ID": f"stuck-{i}"}
            )
            stuck.append((response.status_code, response.json()))

        async def live_client() -> None:
            while not stop.is_set():
                try:
                    response = await http.post("/v1/embeddings", json={"model": TINY_ENCODER, "input": "live traffic"})
                except httpx.TransportError:
                    return  # the server stopped accepting connections: expected once it shuts down
                live.append((response.status_code, response.json()))
                if response.status_code != 200:
                    return

        calls = [asyncio.ensure_future(stuck_call(i)) for i in range(IN_FLIGHT)]
        clients = [asyncio.ensure_future(live_client()) for _ in range(4)]
        deadline = time.monotonic() + 60
        while True:  # all 32 are in the server, waiting on the stuck load
            status = (await http.get("/v1/status")).json()
            if status["in_flight"] >= IN_FLIGHT:
                break
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        proc.terminate()
        sent = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*calls), timeout=GRACEFUL_S + 30)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*clients), timeout=30)
    while proc.proc.poll() is None:
        assert time.monotonic() - sent < GRACEFUL_S + 30, f"the server did not exit:\n{proc.output()}"
        await asyncio.sleep(0.05)
    return stuck, live, time.monotonic() - sent
