"""The real server over stdio: a real model, a stdout that carries nothing but JSON-RPC, the README entry."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .helpers import ROOT, model_flags, server_env, sie_agents_command, stdio_session, text_of

pytestmark = pytest.mark.slow

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
PLACEHOLDER_BIN = "/absolute/path/to/sie-agents/.venv/bin"


async def test_stdio_server_with_a_real_model_writes_only_json_rpc_to_stdout(tmp_path: Path) -> None:
    stdout_copy = tmp_path / "stdout.jsonl"
    # tee keeps a byte-exact copy of everything the server writes to stdout while the SDK client reads it.
    script = 'set -o pipefail; "$0" "$@" | tee "$SIE_TEST_STDOUT"'
    args = ["-c", script, sys.executable, "-m", "sie_mcp", "--log-level", "DEBUG"]
    notes: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append(message)

    async with stdio_session("bash", args, server_env(SIE_TEST_STDOUT=str(stdout_copy))) as client:
        tools = await client.tools()
        encoded = await client.call("encode", {"texts": ["Berlin office revenue", "fox"]}, progress=on_progress)
        listed = await client.call("list_models", {"task": "encode"})
        missing = await client.call("rerank", {"query": "q", "documents": ["a"]})
        unknown = await client.call("encode", {"texts": ["a"], "model": "acme/none"})
        again = await client.call("encode", {"texts": ["still here"], "is_query": True})

    assert set(tools) == {"encode", "rerank", "extract", "list_models"}
    out = encoded["structuredContent"]
    assert encoded["isError"] is False and out["model"] == MINILM and out["dims"] == 384 and out["count"] == 2
    assert np.linalg.norm(out["vectors"][0]) == pytest.approx(1.0, abs=1e-4)
    assert notes and all(m and MINILM in m for m in notes), "progress while all-MiniLM-L6-v2 loads (torch import)"
    minilm = next(m for m in listed["structuredContent"]["models"] if m["id"] == MINILM)
    assert minilm["loaded"] is True and minilm["default"] is True
    # The default reranker has no weights on this machine: a tool error that says how to fetch it.
    assert missing["isError"] is True and "sie-agents pull cross-encoder/ms-marco-MiniLM-L6-v2" in text_of(missing)
    assert unknown["isError"] is True and "not served here" in text_of(unknown)
    assert again["isError"] is False

    lines = stdout_copy.read_bytes().decode("utf-8").split("\n")
    assert lines[-1] == "" and len(lines) > 8
    for line in lines[:-1]:
        message = json.loads(line)
        assert message["jsonrpc"] == "2.0" and ("id" in message or "method" in message), line[:200]
    methods = [json.loads(line).get("method") for line in lines[:-1]]
    assert "notifications/progress" in methods


def test_stdio_cancelled_call_then_more_calls_then_clean_exit_when_stdin_closes(tiny_models: dict[str, Path]) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sie_mcp", *model_flags(tiny_models)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=server_env(),
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None

    def send(message: dict[str, Any]) -> None:
        assert process.stdin is not None
        process.stdin.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")
        process.stdin.flush()

    def read_until(request_id: int) -> list[dict[str, Any]]:
        assert process.stdout is not None
        seen = []
        while True:
            message = json.loads(process.stdout.readline())
            seen.append(message)
            if message.get("id") == request_id:
                return seen

    client = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    send({"id": 1, "method": "initialize", "params": client})
    (reply,) = read_until(1)
    assert reply["result"]["serverInfo"]["name"] == "sie-agents"
    send({"method": "notifications/initialized"})
    # A first call that waits for the model to load (torch is imported then), cancelled by the client mid-way.
    send({"id": 2, "method": "tools/call", "params": {"name": "encode", "arguments": {"texts": ["word " * 200] * 64}}})
    time.sleep(0.5)
    send({"method": "notifications/cancelled", "params": {"requestId": 2, "reason": "user gave up"}})
    send({"id": 3, "method": "tools/call", "params": {"name": "encode", "arguments": {"texts": ["after cancel"]}}})
    seen = read_until(3)
    assert seen[-1]["result"]["isError"] is False and seen[-1]["result"]["structuredContent"]["count"] == 1
    process.stdin.close()
    assert process.wait(timeout=30) == 0
    rest = [json.loads(line) for line in process.stdout.read().splitlines()]
    assert not [m for m in seen + rest if m.get("id") == 2 and "result" in m], "the cancelled call must not answer"
    assert "stdin closed" in (process.stderr.read() if process.stderr else "")


def readme_desktop_entry() -> dict[str, Any]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## MCP server\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```json\n(.*?)```", section, flags=re.S)
    (config,) = [json.loads(b) for b in blocks if "mcpServers" in b]
    entry: dict[str, Any] = config["mcpServers"]["sie-agents"]
    return entry


async def test_readme_claude_desktop_entry_launches_as_written(tmp_path: Path) -> None:
    entry = readme_desktop_entry()
    command: str = entry["command"]
    assert os.path.isabs(command) and command.startswith(PLACEHOLDER_BIN + "/")
    # The one edit a reader makes: point the absolute path at their checkout's virtual environment.
    command = str(Path(sys.executable).parent) + command[len(PLACEHOLDER_BIN) :]
    assert command == sie_agents_command()
    # Claude Desktop starts the server with a bare environment plus the entry's env block; the test only adds
    # the offline switches (this machine has no hub access).
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **entry["env"], "HF_HUB_OFFLINE": "1"}
    async with stdio_session(command, entry["args"], env) as client:
        tools = await client.tools()
        listed = await client.call("list_models", {})
    assert set(tools) == {"encode", "rerank", "extract", "list_models"}
    # Real calls over stdio with the same executable are the first test's job; this one proves the entry starts
    # a working server with the env block applied (SIE_MAX_LOADED_MODELS etc. parse) and the default models.
    assert listed["isError"] is False and listed["structuredContent"]["defaults"]["encode"] == MINILM


def test_claim_stdio_diverts_prints_fd_writes_and_children_to_stderr() -> None:
    code = (
        "import os, subprocess, sys\n"
        "from sie_mcp.transports import claim_stdio\n"
        "reader, writer = claim_stdio()\n"
        "print('python print')\n"
        "os.write(1, b'fd write\\n')\n"
        "subprocess.run(['echo', 'child process'])\n"
        'writer.write(\'{"jsonrpc": "2.0"}\\n\'); writer.flush()\n'
        "sys.stderr.write('read:' + repr(reader.readline()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], input="from client\n", capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == '{"jsonrpc": "2.0"}\n'
    for leaked in ("python print", "fd write", "child process", "read:'from client\\n'"):
        assert leaked in done.stderr
