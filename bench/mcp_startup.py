"""Cold start and idle memory of the MCP server, next to a minimal one-tool server on the same SDK.

Each run spawns a fresh process and times, from spawn, until ``initialize`` and ``tools/list`` have both been
answered over stdio; runs alternate between the servers so background load hits them alike. After the answer
the benchmark reads the process's resident memory (no model loaded) and whether libtorch is mapped.

    python -m bench.mcp_startup            # 7 runs each
    python -m bench.mcp_startup --runs 15
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sie_mcp._compat import MCP_MAJOR

TARGET_EXTRA_S = 0.25
TARGET_RSS_MB = 120.0

MINIMAL_SERVER = {
    2: (
        "from mcp.server.mcpserver import MCPServer\n"
        "server = MCPServer('minimal')\n"
        "@server.tool()\n"
        "def echo(text: str) -> str:\n"
        "    return text\n"
        "server.run()\n"
    ),
    1: (
        "from mcp.server.fastmcp import FastMCP\n"
        "server = FastMCP('minimal')\n"
        "@server.tool()\n"
        "def echo(text: str) -> str:\n"
        "    return text\n"
        "server.run()\n"
    ),
}


@dataclass
class Result:
    name: str
    command: list[str]
    seconds: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    tools: int = 0
    torch_loaded: bool = False


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _torch_mapped(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def _request(method: str, id_: int | None, params: dict[str, object] | None = None) -> str:
    message: dict[str, object] = {"jsonrpc": "2.0", "method": method}
    if id_ is not None:
        message["id"] = id_
    if params is not None:
        message["params"] = params
    return json.dumps(message) + "\n"


def _reply(stdout: IO[str], id_: int) -> dict[str, Any]:
    while True:
        line = stdout.readline()
        if not line:
            raise RuntimeError("the server closed stdout before answering")
        message: dict[str, Any] = json.loads(line)
        if message.get("id") == id_:
            return message


def run_once(result: Result, env: dict[str, str]) -> None:
    """Spawn the server, time initialize + tools/list from spawn, then read its idle memory."""
    initialize: dict[str, object] = {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "0"},
    }
    started = time.perf_counter()
    process = subprocess.Popen(
        result.command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
        bufsize=1,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(_request("initialize", 1, initialize))
        process.stdin.flush()
        _reply(process.stdout, 1)
        process.stdin.write(_request("notifications/initialized", None))
        process.stdin.write(_request("tools/list", 2))
        process.stdin.flush()
        listed = _reply(process.stdout, 2)
        result.seconds.append(time.perf_counter() - started)
        result.tools = len(listed["result"]["tools"])
        time.sleep(0.3)  # let start-up garbage settle before reading memory
        result.rss_mb.append(_rss_mb(process.pid))
        result.torch_loaded = result.torch_loaded or _torch_mapped(process.pid)
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="runs per server (default 7)")
    args = parser.parse_args(argv)

    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with tempfile.TemporaryDirectory() as tmp:
        minimal = Path(tmp) / "minimal_server.py"
        minimal.write_text(MINIMAL_SERVER[MCP_MAJOR])
        sie_agents = str(Path(sys.executable).parent / "sie-agents")
        results = [
            Result("minimal one-tool server (same SDK)", [sys.executable, str(minimal)]),
            Result("sie-agents mcp", [sie_agents, "mcp"]),
            Result("python -m sie_mcp", [sys.executable, "-m", "sie_mcp"]),
        ]
        for result in results:  # warm the OS file cache once, untimed
            run_once(result, env)
            result.seconds.clear()
            result.rss_mb.clear()
        for _ in range(args.runs):
            for result in results:
                run_once(result, env)

    from importlib.metadata import version

    base = statistics.median(results[0].seconds)
    print(
        f"MCP server cold start: spawn -> initialize + tools/list answered over stdio; median of {args.runs} runs "
        f"(mcp {version('mcp')}, Python {platform.python_version()}, {os.cpu_count()} CPUs)"
    )
    print(f"{'server':<36} {'median s':>9} {'min s':>7} {'max s':>7} {'vs minimal':>11} {'idle RSS MB':>12} torch")
    for r in results:
        med = statistics.median(r.seconds)
        delta = "" if r is results[0] else f"{med - base:+.3f} s"
        rss = statistics.median(r.rss_mb)
        print(
            f"{r.name:<36} {med:>9.3f} {min(r.seconds):>7.3f} {max(r.seconds):>7.3f} {delta:>11} {rss:>12.1f} "
            f"{'loaded' if r.torch_loaded else 'no'}"
        )
    ours = results[1]
    extra = statistics.median(ours.seconds) - base
    rss = statistics.median(ours.rss_mb)
    print(
        f"targets: start-up <= +{TARGET_EXTRA_S:.2f} s over the minimal server -> {extra:+.3f} s "
        f"({'met' if extra <= TARGET_EXTRA_S else 'MISSED'}); idle RSS <= {TARGET_RSS_MB:.0f} MB -> {rss:.1f} MB "
        f"({'met' if rss <= TARGET_RSS_MB else 'MISSED'}); tools listed: {ours.tools}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
