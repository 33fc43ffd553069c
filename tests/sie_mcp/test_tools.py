"""In-process MCP client tests of every tool, every fixable error, the schemas and progress notifications."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sie_core import Engine
from sie_mcp import McpSettings, create_server
from sie_mcp._compat import MCP_MAJOR

from .helpers import TINY_DEFAULTS, connect, server_config, text_of

TEXTS = ["Invoice 4471 from Acme GmbH is due on 30 June.", "The quick brown fox jumps over the lazy dog."]
ALICE = "Alice Smith works for Globex Corporation in Paris."


@pytest.fixture(scope="module")
def server(mcp_engine: Engine) -> Any:
    return create_server(mcp_engine, McpSettings(max_items_per_call=8))


async def test_tools_schemas_annotations_and_descriptions(server: Any) -> None:
    async with connect(server) as client:
        tools = await client.tools()
    assert set(tools) == {"encode", "rerank", "extract", "list_models"}
    for name, tool in tools.items():
        assert tool["annotations"]["readOnlyHint"] is True, name
        assert tool["annotations"]["destructiveHint"] is False, name
        assert tool["annotations"]["idempotentHint"] is True, name
        assert tool["outputSchema"]["type"] == "object", name
        if name != "list_models":
            assert "model" in tool["inputSchema"]["properties"], name
            assert "model" not in tool["inputSchema"].get("required", []), name
    assert tools["encode"]["inputSchema"]["required"] == ["texts"]
    assert set(tools["rerank"]["inputSchema"]["required"]) == {"query", "documents"}
    # what an extractor needs (labels, classes, relation_labels, output_schema) is its family's: none is required
    assert tools["extract"]["inputSchema"].get("required", []) == []
    assert {"labels", "relation_labels", "classes", "output_schema"} <= set(
        tools["extract"]["inputSchema"]["properties"]
    )
    assert set(tools["encode"]["outputSchema"]["properties"]) >= {"model", "dims", "vectors", "count"}
    ranked = tools["rerank"]["outputSchema"]
    assert "results" in ranked["properties"]
    assert set(json.dumps(ranked).split('"')) >= {"index", "relevance", "score", "document"}
    assert set(json.dumps(tools["extract"]["outputSchema"]).split('"')) >= {"text", "label", "score", "start", "end"}
    # The descriptions name each task's default and which model kinds serve it, so an agent can route.
    assert TINY_DEFAULTS["encode"] in tools["encode"]["description"]
    assert "embedding" in tools["encode"]["description"]
    assert TINY_DEFAULTS["score"] in tools["rerank"]["description"]
    assert "reranker" in tools["rerank"]["description"]
    assert TINY_DEFAULTS["extract"] in tools["extract"]["description"]
    assert "GLiNER" in tools["extract"]["description"]
    assert "Only the models list_models shows" in tools["encode"]["description"]


async def test_encode_vectors_in_structured_content_and_short_text(server: Any, mcp_engine: Engine) -> None:
    async with connect(server) as client:
        result = await client.call("encode", {"texts": TEXTS})
        query = await client.call("encode", {"texts": TEXTS[:1], "is_query": True, "model": "tiny-encoder"})
    assert result["isError"] is False
    out = result["structuredContent"]
    assert out["model"] == "tiny-encoder" and out["count"] == 2 and out["dims"] == 32 and out["dtype"] == "float32"
    expected = np.stack([r.dense for r in mcp_engine.encode("tiny-encoder", TEXTS)])
    np.testing.assert_allclose(np.asarray(out["vectors"], dtype=np.float32), expected, rtol=1e-6)
    text = text_of(result)
    assert len(text) < 200 and "2 vectors of 32 dimensions" in text and "tiny-encoder" in text
    assert str(out["vectors"][0][0])[:6] not in text  # no floats in the text part
    # is_query applies the model's query prompt, so the vector differs from the document one.
    assert not np.allclose(query["structuredContent"]["vectors"][0], out["vectors"][0])


@pytest.mark.parametrize(
    ("args", "dims", "width", "kind"),
    [({"dims": 8}, 8, 8, float), ({"output_dtype": "int8"}, 32, 32, int), ({"output_dtype": "binary"}, 32, 4, int)],
)
async def test_encode_dims_and_dtypes(server: Any, args: dict[str, Any], dims: int, width: int, kind: type) -> None:
    async with connect(server) as client:
        result = await client.call("encode", {"texts": TEXTS, **args})
    out = result["structuredContent"]
    assert result["isError"] is False and out["dims"] == dims
    assert all(len(v) == width and all(isinstance(x, kind) for x in v) for v in out["vectors"])
    if "dims" in args:
        assert np.linalg.norm(out["vectors"][0]) == pytest.approx(1.0, abs=1e-5)


async def test_rerank_best_first_with_documents(server: Any, mcp_engine: Engine) -> None:
    docs = [TEXTS[1], TEXTS[0], ALICE]
    async with connect(server) as client:
        result = await client.call("rerank", {"query": "When is invoice 4471 due?", "documents": docs})
        top = await client.call("rerank", {"query": "invoice", "documents": docs, "top_k": 1})
    assert result["isError"] is False
    out = result["structuredContent"]
    direct = mcp_engine.score("tiny-reranker", "When is invoice 4471 due?", docs)
    assert [r["index"] for r in out["results"]] == [e.index for e in direct.scores]
    assert [r["rank"] for r in out["results"]] == [1, 2, 3]
    for r in out["results"]:
        assert r["document"] == docs[r["index"]]
        assert 0.0 <= r["relevance"] <= 1.0
    scores = [r["score"] for r in out["results"]]
    assert scores == sorted(scores, reverse=True)
    assert text_of(result).startswith("Ranked 3 documents with tiny-reranker, best first:")
    assert len(top["structuredContent"]["results"]) == 1


async def test_extract_one_text_and_many(server: Any) -> None:
    labels = ["person", "organization"]
    async with connect(server) as client:
        one = await client.call("extract", {"text": ALICE, "labels": labels, "threshold": 0.3})
        many = await client.call("extract", {"texts": [ALICE, TEXTS[0]], "labels": labels, "threshold": 0.3})
    assert one["isError"] is False and many["isError"] is False
    (only,) = one["structuredContent"]["results"]
    assert only["index"] == 0 and only["entities"], "random tiny GLiNER finds spans at threshold 0.3"
    for entity in only["entities"]:
        assert ALICE[entity["start"] : entity["end"]] == entity["text"]
        assert entity["label"] in labels and 0.3 <= entity["score"] <= 1.0
    results = many["structuredContent"]["results"]
    assert [r["index"] for r in results] == [0, 1]
    for r, source in zip(results, [ALICE, TEXTS[0]]):
        assert all(source[e["start"] : e["end"]] == e["text"] for e in r["entities"])
    assert text_of(one).startswith("Found ") and "tiny-gliner" in text_of(one)


async def test_list_models_marks_defaults_loaded_and_filters(server: Any) -> None:
    async with connect(server) as client:
        await client.call("encode", {"texts": ["warm up"]})
        everything = await client.call("list_models", {})
        rerankers = await client.call("list_models", {"task": "rerank"})
    out = everything["structuredContent"]
    by_id = {m["id"]: m for m in out["models"]}
    assert out["defaults"] == TINY_DEFAULTS and out["allow_any_model"] is False
    assert by_id["tiny-encoder"]["default"] is True and by_id["tiny-encoder"]["loaded"] is True
    assert by_id["tiny-encoder"]["device"] == "cpu" and by_id["tiny-encoder"]["description"] == "tiny test encoder"
    assert by_id["sentence-transformers/all-MiniLM-L6-v2"]["default"] is False
    assert {m["task"] for m in out["models"]} == {"encode", "score", "extract"}
    assert "tiny-encoder [default, loaded on cpu]" in text_of(everything)
    assert {m["task"] for m in rerankers["structuredContent"]["models"]} == {"score"}


LONG = "x" * 200_001


@pytest.mark.parametrize(
    ("tool", "args", "message"),
    [
        ("encode", {"texts": ["a"], "model": "nope/missing"}, "is not served here; available: "),
        ("encode", {"texts": ["a"], "model": "tiny-reranker"}, "is a score model and cannot encode"),
        ("rerank", {"query": "q", "documents": ["a"], "model": "tiny-encoder"}, "is an encode model and cannot score"),
        ("extract", {"text": "a b", "labels": ["x"], "model": "tiny-encoder"}, "cannot extract"),
        ("encode", {"texts": ["a"], "model": "/etc"}, "local path, and this server does not load arbitrary paths"),
        ("encode", {"texts": []}, "texts is empty; pass at least one text"),
        ("encode", {"texts": ["a", "  "]}, "texts[1] is empty"),
        ("rerank", {"query": " ", "documents": ["a"]}, "query is empty"),
        ("rerank", {"query": "q", "documents": []}, "documents is empty"),
        ("encode", {"texts": ["a"] * 9}, "texts has 9 entries; at most 8 are allowed per call"),
        ("rerank", {"query": "q", "documents": ["a"] * 9}, "documents has 9 entries; at most 8"),
        ("encode", {"texts": [LONG]}, "texts[0] has 200,001 characters; at most 200,000 are allowed"),
        ("extract", {"text": "Alice works at Globex"}, "labels"),
        ("extract", {"text": " ", "labels": ["person"]}, "text is empty"),
        ("extract", {"text": LONG, "labels": ["person"]}, "text has 200,001 characters"),
        ("extract", {"texts": ["a", ""], "labels": ["person"]}, "texts[1] is empty"),
        ("extract", {"text": "Alice works at Globex", "labels": []}, "labels are missing"),
        ("extract", {"text": "Alice", "labels": ["person"], "threshold": 1.5}, "threshold must be between 0 and 1"),
        ("extract", {"text": "Alice", "texts": ["Bob"], "labels": ["person"]}, "pass either text"),
        ("extract", {"labels": ["person"]}, "pass either text"),
        ("rerank", {"query": "q", "documents": ["a"], "top_k": 0}, "top_k must be a positive integer"),
        ("encode", {"texts": ["a"], "dims": 64}, "dims=64 is larger than tiny-encoder's 32 dimensions"),
        ("encode", {"texts": ["a"], "output_dtype": "int4"}, "output_dtype"),
        ("encode", {"texts": "not a list"}, "texts"),
        ("list_models", {"task": "summarize"}, "task 'summarize' is not known"),
    ],
)
async def test_fixable_errors_are_tool_errors_and_server_keeps_serving(
    server: Any, tool: str, args: dict[str, Any], message: str
) -> None:
    async with connect(server) as client:
        result = await client.call(tool, args)
        assert result["isError"] is True
        assert message in text_of(result)
        after = await client.call("encode", {"texts": ["still serving"]})
    assert after["isError"] is False and after["structuredContent"]["count"] == 1


async def test_unknown_model_lists_available_models(server: Any) -> None:
    async with connect(server) as client:
        result = await client.call("rerank", {"query": "q", "documents": ["a"], "model": "acme/secret-model"})
    text = text_of(result)
    assert result["isError"] is True
    assert "tiny-reranker (score)" in text and "tiny-encoder (encode)" in text and "--allow-any-model" in text


async def test_model_that_fails_to_load_says_why_and_how_to_fetch(server: Any) -> None:
    async with connect(server) as client:
        result = await client.call("encode", {"texts": ["a"], "model": "BAAI/bge-base-en-v1.5"})
        again = await client.call("encode", {"texts": ["a"]})
    text = text_of(result)
    assert result["isError"] is True
    assert "is not available" in text and "offline" in text and "sie-agents pull BAAI/bge-base-en-v1.5" in text
    assert again["isError"] is False


async def test_configured_model_with_broken_folder_is_a_load_error(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    from sie_core import ModelSpec

    broken = ModelSpec(id="broken-encoder", task="encode", path=str(tmp_path))
    config = server_config(tiny_models)
    with Engine(config.replace(models=(*config.models, broken))) as engine:
        async with connect(create_server(engine)) as client:
            result = await client.call("encode", {"texts": ["a"], "model": "broken-encoder"})
    assert result["isError"] is True and "holds no weights" in text_of(result)


async def test_allow_any_model_accepts_hub_ids_but_never_local_paths(tiny_models: dict[str, Path]) -> None:
    with Engine(server_config(tiny_models, allow_any_model=True)) as engine:
        server = create_server(engine)
        async with connect(server) as client:
            tools = await client.tools()
            hub = await client.call("encode", {"texts": ["a"], "model": "someorg/some-embedder"})
            local = await client.call("encode", {"texts": ["a"], "model": str(tiny_models["encoder"])})
            listed = await client.call("list_models", {})
    assert "Any Hugging Face hub model id" in tools["encode"]["description"]
    assert hub["isError"] is True and "not served here" not in text_of(hub)
    assert "offline" in text_of(hub)  # it tried to find the weights (the policy let it through)
    assert local["isError"] is True and "does not load arbitrary paths" in text_of(local)
    assert listed["structuredContent"]["allow_any_model"] is True


async def test_progress_notifications_while_the_model_loads(
    tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sie_core.models

    real_load = sie_core.models.load_adapter

    def slow_load(*args: Any) -> Any:
        time.sleep(0.5)  # a load that takes a while, like a first load or a download
        return real_load(*args)

    monkeypatch.setattr(sie_core.models, "load_adapter", slow_load)
    notes: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append((progress, total, message))

    with Engine(server_config(tiny_models)) as engine:
        server = create_server(engine, McpSettings(progress_interval_s=0.05))
        async with connect(server) as client:
            assert engine.model_state("tiny-gliner") == "not_loaded"
            result = await client.call("extract", {"text": ALICE, "labels": ["person"]}, progress=on_progress)
            count = len(notes)
            again = await client.call("extract", {"text": ALICE, "labels": ["person"]}, progress=on_progress)
    assert result["isError"] is False and again["isError"] is False
    assert count >= 3, "a 0.5 s load takes several 0.05 s progress intervals"
    assert [n[0] for n in notes[:count]] == list(range(1, count + 1))  # progress increases
    assert all(m and "tiny-gliner" in m for _, _, m in notes[:count])
    assert "loading model tiny-gliner" in str(notes[0][2])


async def test_cancelled_call_does_not_break_others(server: Any) -> None:
    async with connect(server) as client:
        await client.call("encode", {"texts": ["warm up"]})
        slow = asyncio.ensure_future(client.call("encode", {"texts": [ALICE * 40] * 8}))
        other = asyncio.ensure_future(client.call("encode", {"texts": TEXTS}))
        await asyncio.sleep(0.01)
        slow.cancel()
        result = await other
        after = await client.call("rerank", {"query": "q", "documents": TEXTS})
    assert result["isError"] is False and result["structuredContent"]["count"] == 2
    assert after["isError"] is False


def test_importing_and_building_the_server_loads_no_model_and_no_torch() -> None:
    code = (
        "import sys\n"
        "from sie_core import Engine, EngineConfig\n"
        "from sie_mcp import create_server\n"
        "import sie_mcp.transports\n"
        "create_server(Engine(EngineConfig(allow_local_paths=False, allow_any_model=False)))\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers', 'gliner') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from sie_core.cli import build_parser\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_sie_agents_parser_does_not_import_mcp() -> None:
    code = (
        "import sys\n"
        "from sie_core.cli import build_parser\n"
        "parser, handlers = build_parser()\n"
        "assert 'mcp' in handlers\n"
        "loaded = [m for m in ('mcp', 'starlette', 'uvicorn', 'torch') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_mcp_major_matches_installed_sdk() -> None:
    from importlib.metadata import version

    assert int(version("mcp").split(".")[0]) == MCP_MAJOR
