"""The seed's three calls, verbatim, against the in-process engine (swap SIEClient for Engine)."""

from __future__ import annotations

import asyncio

import numpy as np

from sie_core import Engine, EngineConfig, Item, ModelSpec


def test_the_seed_calls_run_in_process(tiny_models, minilm_path):
    # The seed's model ids, pointed at weights this machine has (no hub access): the same ids, other weights.
    config = EngineConfig(
        device="cpu",
        offline=True,
        models=(
            ModelSpec(id="NovaSearch/stella_en_400M_v5", task="encode", path=str(minilm_path)),
            ModelSpec(id="BAAI/bge-reranker-v2-m3", task="score", path=str(tiny_models["cross_encoder"])),
            ModelSpec(id="urchade/gliner_multi-v2.1", task="extract", path=str(tiny_models["gliner"])),
        ),
    )
    shortlist = ["Berlin office revenue grew 12%.", "The cafeteria menu.", "Q2 revenue by office."]
    engine = Engine(config)  # in the seed: client = SIEClient("http://localhost:8080")
    with engine:
        encoded = engine.encode("NovaSearch/stella_en_400M_v5", Item(text="Berlin office revenue"))
        scored = engine.score(
            "BAAI/bge-reranker-v2-m3", Item(text="Berlin office revenue"), [Item(text=c) for c in shortlist]
        )
        extracted = engine.extract(
            "urchade/gliner_multi-v2.1",
            Item(text="Invoice 4471 from Acme GmbH, due 30 June."),
            labels=["invoice_number", "organization", "date"],
        )

        async def twins():
            return await asyncio.gather(
                engine.aencode("NovaSearch/stella_en_400M_v5", Item(text="Berlin office revenue")),
                engine.ascore(
                    "BAAI/bge-reranker-v2-m3", Item(text="Berlin office revenue"), [Item(text=c) for c in shortlist]
                ),
                engine.aextract(
                    "urchade/gliner_multi-v2.1",
                    Item(text="Invoice 4471 from Acme GmbH, due 30 June."),
                    labels=["invoice_number", "organization", "date"],
                ),
            )

        a_encoded, a_scored, a_extracted = asyncio.run(twins())

    assert encoded["dense"].shape == (384,) and encoded["model"] == "NovaSearch/stella_en_400M_v5"
    assert [e["rank"] for e in scored["scores"]] == [0, 1, 2]
    assert sorted(e["index"] for e in scored["scores"]) == [0, 1, 2]
    text = "Invoice 4471 from Acme GmbH, due 30 June."
    assert all(text[e["start"] : e["end"]] == e["text"] for e in extracted["entities"])
    assert np.abs(a_encoded.dense - encoded.dense).max() <= 1e-5
    assert [e.index for e in a_scored.scores] == [e.index for e in scored.scores]
    assert [(e.start, e.end, e.label) for e in a_extracted.entities] == [
        (e.start, e.end, e.label) for e in extracted.entities
    ]
