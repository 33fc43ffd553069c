"""Helpers for the MCP tests: configured tiny models, an in-process client for mcp 1.x and 2.x, subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sie_core import EngineConfig, ModelSpec
from sie_mcp._compat import MCP_MAJOR, lowlevel_server

ROOT = Path(__file__).resolve().parents[2]
TINY_DEFAULTS = {"encode": "tiny-encoder", "score": "tiny-reranker", "extract": "tiny-gliner"}


def tiny_specs(tiny_models: dict[str, Path]) -> tuple[ModelSpec, ...]:
    return (
        ModelSpec(id="tiny-encoder", task="encode", path=str(tiny_models["encoder"]), description="tiny test encoder"),
        ModelSpec(
            id="tiny-reranker", task="score", path=str(tiny_models["cross_encoder"]), description="tiny test reranker"
        ),
        ModelSpec(id="tiny-gliner", task="extract", path=str(tiny_models["gliner"]), description="tiny test GLiNER"),
    )


def server_config(tiny_models: dict[str, Path], **overrides: Any) -> EngineConfig:
    """What ``sie-agents mcp`` builds by default, plus the tiny models as configured catalog additions."""
    values: dict[str, Any] = {
        "device": "cpu",
        "offline": True,
        "allow_local_paths": False,
        "allow_any_model": False,
        "models": tiny_specs(tiny_models),
        "default_models": TINY_DEFAULTS,
    }
    values.update(overrides)
    return EngineConfig(**values)


class Caller:
    """The few client calls the tests need, the same on mcp 1.x and 2.x; results come back in wire form."""

    def __init__(self, session: Any) -> None:
        self.session = session

    async def tools(self) -> dict[str, dict[str, Any]]:
        listed = await self.session.list_tools()
        return {t.name: t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in listed.tools}

    async def call(self, name: str, arguments: dict[str, Any], progress: Any = None) -> dict[str, Any]:
        result = await self.session.call_tool(name, arguments, progress_callback=progress)
        return result.model_dump(by_alias=True, mode="json")


@contextlib.asynccontextmanager
async def connect(server: Any) -> AsyncIterator[Caller]:
    """An in-process client session to ``server`` (real MCP session objects, memory transport)."""
    if MCP_MAJOR == 2:
        from mcp import Client

        async with Client(server) as client:
            yield Caller(client)
    else:
        from mcp.shared.memory import create_connected_server_and_client_session

        async with create_connected_server_and_client_session(lowlevel_server(server)) as session:
            yield Caller(session)


def text_of(result: dict[str, Any]) -> str:
    return "\n".join(c["text"] for c in result["content"] if c["type"] == "text")


# ---------------------------------------------------------------------------------------------- subprocesses
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sie_agents_command() -> str:
    """The ``sie-agents`` console script of the Python running the tests."""
    script = Path(sys.executable).parent / "sie-agents"
    assert script.is_file(), f"{script} is missing; install the project with pip install -e '.[test]'"
    return str(script)


def model_flags(tiny_models: dict[str, Path]) -> list[str]:
    flags: list[str] = []
    for spec in tiny_specs(tiny_models):
        flags += ["--model", f"{spec.task}={spec.id}={spec.path}"]
    for task, model in TINY_DEFAULTS.items():
        flags += ["--default-model", f"{task}={model}"]
    return flags


def server_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "SIE_DEVICE": "cpu", "PYTHONUNBUFFERED": "1"})
    for key in ("SIE_MCP_AUTH_TOKEN", "SIE_ALLOW_ANY_MODEL", "SIE_CONFIG"):
        env.pop(key, None)
    env.update(extra)
    return env


class HttpServer:
    """A ``sie-agents mcp --transport streamable-http`` subprocess on a free loopback port."""

    def __init__(self, args: list[str], log: Path, token: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.token = token
        self.log = log
        command = [sie_agents_command(), "mcp", "--transport", "streamable-http", "--port", str(self.port), *args]
        env = server_env(**({"SIE_MCP_AUTH_TOKEN": token} if token else {}))
        self._log_file = log.open("w")
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT, env=env
        )
        self._wait_ready()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.1)
        raise AssertionError(f"server did not listen within {timeout} s:\n{self.log.read_text()}")

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
        return self.process.returncode


def inspector_command() -> list[str]:
    """The MCP Inspector CLI that .ci/run installs (npm @modelcontextprotocol/inspector); never skipped."""
    override = os.environ.get("SIE_MCP_INSPECTOR")
    script = Path(override) if override else ROOT / ".ci" / "node" / "node_modules" / ".bin" / "mcp-inspector"
    node = shutil.which("node")
    assert node and script.exists(), (
        f"MCP Inspector not found at {script} (or node missing); install it with "
        "`npm install --prefix .ci/node @modelcontextprotocol/inspector@2.12.0` (.ci/run does)"
    )
    return [str(script), "--cli"]


def run_inspector(args: list[str], tmp_path: Path, timeout: float = 120) -> tuple[int, Any, str]:
    """Run the Inspector CLI; returns (exit code, parsed JSON stdout or raw text, stderr)."""
    env = server_env(HOME=str(tmp_path), MCP_CATALOG_PATH=str(tmp_path / "catalog.json"))
    done = subprocess.run(
        [*inspector_command(), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )
    try:
        parsed: Any = json.loads(done.stdout)
    except ValueError:
        parsed = done.stdout
    return done.returncode, parsed, done.stderr


# ---------------------------------------------------------------------------------------------- real transports
@contextlib.asynccontextmanager
async def stdio_session(command: str, args: list[str], env: dict[str, str]) -> AsyncIterator[Caller]:
    """The SDK's stdio client against a spawned server process (mcp 1.x and 2.x)."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=command, args=args, env=env)
    async with stdio_client(params) as streams, ClientSession(streams[0], streams[1]) as session:
        await session.initialize()
        yield Caller(session)


@contextlib.asynccontextmanager
async def http_session(url: str, headers: dict[str, str] | None = None) -> AsyncIterator[Caller]:
    """The SDK's streamable-HTTP client (mcp 1.x and 2.x)."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(url, http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        yield Caller(session)
