"""Contention benchmark: the engine and ``sie-agents serve`` with and without a busy loop on one core.

Run:  python -m bench.contention [--rounds 2] [--seconds 4] [--clients 1 32] [--env OMP_WAIT_POLICY=PASSIVE]

Loads all-MiniLM-L6-v2 in an in-process engine (async callers, ``bench.engine.callers``) and in a
``sie-agents serve`` subprocess on 127.0.0.1 (keep-alive HTTP clients, ``bench.http.clients``), then, each
round, runs every case quiet and busy in turn: busy = a separate busy-loop process pinned to one of this
process's CPUs (killed after the case, and bounded by its own timer in any case). Each case sends one
sentence per call for ``--seconds``. Prints, per case, throughput and p50 / p99 latency (median over the
rounds) and busy / quiet ratios; progress goes to stderr, the table to stdout.

``--env NAME=VALUE`` sets a variable for both sides before torch loads (e.g. ``OMP_WAIT_POLICY=PASSIVE``,
threads that sleep instead of spinning, or ``SIE_NUM_THREADS=1``).
A quick run (the defaults) takes about two minutes. This is a benchmark, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .engine import MODEL_ID, callers, log, measure, sentences
from .http import Server, clients

_HOG = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


class Hog:
    """A busy loop in its own process, pinned to one CPU, that ends by itself after ``seconds``."""

    def __init__(self, cpu: int, seconds: float) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _HOG.format(seconds=seconds)])
        try:
            os.sched_setaffinity(self.proc.pid, {cpu})
        except (AttributeError, OSError):  # no affinity call here: the scheduler places it
            pass

    def stop(self) -> None:
        """End the loop now."""
        self.proc.kill()
        self.proc.wait()


def run_engine_case(engine: Any, texts: list[str], n: int, seconds: float) -> dict[str, float]:
    """``n`` async callers on the in-process engine for ``seconds``."""
    elapsed, latencies = asyncio.run(callers(engine, texts, n, deadline=time.perf_counter() + seconds))
    return measure(len(latencies), elapsed, latencies)


def run_serve_case(url: str, texts: list[str], n: int, seconds: float) -> dict[str, float]:
    """``n`` keep-alive HTTP clients on the server for ``seconds``."""
    row = asyncio.run(clients(url, texts, n, 10**9, deadline=time.perf_counter() + seconds))
    return {k: float(row[k]) for k in ("throughput", "p50", "p99")}  # type: ignore[arg-type]


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="alternating quiet / busy rounds (default 2)")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per case (default 4)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 32], help="concurrency levels (default 1 32)")
    parser.add_argument("--sides", nargs="+", choices=("engine", "serve"), default=["engine", "serve"])
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="set for both sides")
    args = parser.parse_args()
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--env {item!r}: expected NAME=VALUE, e.g. OMP_WAIT_POLICY=PASSIVE")
        os.environ[name] = value
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts = sentences(4096)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))

    from sie_core import Engine, EngineConfig

    results: dict[tuple[str, int, bool], list[dict[str, float]]] = {}
    loads: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, Engine(EngineConfig(device="cpu", offline=True)) as engine:
        server = None
        try:
            runners: dict[str, Any] = {}
            if "engine" in args.sides:
                log("loading the model in-process ...")
                engine.encode(MODEL_ID, texts[:64])
                runners["engine"] = lambda n: run_engine_case(engine, texts, n, args.seconds)
            if "serve" in args.sides:
                log("starting sie-agents serve ...")
                server = Server(Path(tmp) / "serve.log")
                url = server.url
                asyncio.run(clients(url, texts, 4, 64))  # warm up
                runners["serve"] = lambda n: run_serve_case(url, texts, n, args.seconds)
            threads = {i.id: i.threads for i in engine.list_models() if i.loaded}.get(MODEL_ID)
            if server is not None and threads is None:  # the server's own plan (the engine side is off)
                import httpx

                listed = httpx.get(server.url + "/v1/models", timeout=30).json()["models"]
                threads = next((m.get("threads") for m in listed if m["id"] == MODEL_ID), None)
            for rnd in range(args.rounds):
                for side, run in runners.items():
                    for n in args.clients:
                        for busy in (False, True):
                            loads.append(loadavg())
                            log(f"round {rnd + 1}/{args.rounds}: {side}, {n} client(s), {'busy' if busy else 'quiet'}"
                                f" (loadavg {loads[-1]}) ...")  # fmt: skip
                            hog = Hog(cpus[-1], args.seconds + 30) if busy else None
                            try:
                                results.setdefault((side, n, busy), []).append(run(n))
                            finally:
                                if hog is not None:
                                    hog.stop()
        finally:
            if server is not None:
                server.stop()

    def med(side: str, n: int, busy: bool, key: str) -> float:
        return statistics.median(r[key] for r in results[(side, n, busy)])

    print(
        f"Model {MODEL_ID} (torch fp32, CPU), {len(cpus)} usable CPUs, torch threads {threads}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
        + (f", env {' '.join(args.env)}" if args.env else "")
        + f"; busy = a busy loop pinned to CPU {cpus[-1]}; median of {args.rounds} round(s) of {args.seconds:g} s"
        f" per case; loadavg at case starts {min(loads)}-{max(loads)}.\n"
    )
    print("| side | clients | quiet items/s | busy items/s | busy/quiet | quiet p50/p99 ms | busy p50/p99 ms |"
          " p99 busy/quiet |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for side in args.sides:
        for n in args.clients:
            q, b = med(side, n, False, "throughput"), med(side, n, True, "throughput")
            q50, q99 = med(side, n, False, "p50"), med(side, n, False, "p99")
            b50, b99 = med(side, n, True, "p50"), med(side, n, True, "p99")
            print(f"| {side} | {n} | {q:.0f} | {b:.0f} | {b / q:.2f}x | {q50:.1f} / {q99:.1f} | "
                  f"{b50:.1f} / {b99:.1f} | {b99 / q99:.1f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
