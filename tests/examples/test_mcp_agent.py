"""examples/agents/mcp_agent.py: a create_agent loop over the MCP server's tools via langchain-mcp-adapters (stdio).

langchain-mcp-adapters 0.3.2 requires mcp<2, so these tests run in CI's mcp<2 environment and are
deselected (not skipped) under mcp 2.x (see conftest.py). The server runs from the same environment
(it supports mcp 1.x and 2.x).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from langchain_core.messages import AIMessage, ToolMessage

from sie_core import Engine, EngineConfig, ModelSpec

pytestmark = [pytest.mark.needs_mcp1, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "agents"


@pytest.fixture(scope="module")
def example() -> Iterator[ModuleType]:
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield importlib.import_module("mcp_agent")
    finally:
        sys.path.remove(str(EXAMPLES))


def server_flags(tiny: dict[str, Path]) -> list[str]:
    return [
        "--model",
        f"score=tiny-reranker={tiny['cross_encoder']}",
        "--model",
        f"extract=tiny-gliner={tiny['gliner']}",
        "--default-model",
        "score=tiny-reranker",
        "--default-model",
        "extract=tiny-gliner",
    ]


def server_env() -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "SIE_DEVICE": "cpu"}
    for key in ("SIE_CHAT_MODEL", "SIE_MCP_COMMAND", "SIE_MCP_ARGS", "SIE_CONFIG", "SIE_SCORE_MODEL"):
        env.pop(key, None)
    return env


async def test_agent_uses_the_mcp_tools_over_stdio(example: ModuleType, tiny_models: dict[str, Path]) -> None:
    from scripted_model import ScriptedChatModel

    model = ScriptedChatModel(policy=example.mcp_policy)
    args = ["-m", "sie_mcp", *server_flags(tiny_models)]
    messages = await example.run(example.QUESTION, example.PASSAGES, model, sys.executable, args, env=server_env())

    # the MCP tools, as the agent framework bound them for the chat model
    assert set(model.tool_schemas) == {"encode", "rerank", "extract", "list_models"}
    assert "documents" in model.tool_schemas["rerank"]["parameters"]["properties"]
    kinds = [(type(m).__name__, getattr(m, "name", None)) for m in messages]
    assert kinds == [
        ("HumanMessage", None),
        ("AIMessage", None),
        ("ToolMessage", "list_models"),
        ("AIMessage", None),
        ("ToolMessage", "rerank"),
        ("AIMessage", None),
        ("ToolMessage", "extract"),
        ("AIMessage", None),
    ]
    listed, ranked, extracted = (m for m in messages if isinstance(m, ToolMessage))
    assert all(m.status == "success" for m in (listed, ranked, extracted))
    assert listed.artifact["structured_content"]["defaults"]["score"] == "tiny-reranker"
    # the agent chose the models list_models named, and the server ran them
    rerank_call = messages[3].tool_calls[0]
    assert rerank_call["args"]["model"] == "tiny-reranker"
    assert rerank_call["args"]["documents"] == example.PASSAGES

    # the same models in-process give the same order and entities the agent received over MCP
    specs = (
        ModelSpec(id="tiny-reranker", task="score", path=str(tiny_models["cross_encoder"])),
        ModelSpec(id="tiny-gliner", task="extract", path=str(tiny_models["gliner"])),
    )
    with Engine(EngineConfig(device="cpu", offline=True, models=specs)) as engine:
        expected = engine.score("tiny-reranker", example.QUESTION, example.PASSAGES, top_k=2)
        results = ranked.artifact["structured_content"]["results"]
        assert [r["index"] for r in results] == [e.index for e in expected.scores]
        best = example.PASSAGES[expected.scores[0].index]
        found = engine.extract("tiny-gliner", best, labels=example.LABELS, threshold=0.3)
    entities = extracted.artifact["structured_content"]["results"][0]["entities"]
    assert [(e["label"], e["start"], e["end"]) for e in entities] == [(e.label, e.start, e.end) for e in found.entities]
    answer = messages[-1]
    assert isinstance(answer, AIMessage) and not answer.tool_calls and best in answer.text
    assert model.calls == 4


def test_example_script_runs(tiny_models: dict[str, Path]) -> None:
    env = {**server_env(), "SIE_MCP_ARGS": " ".join(server_flags(tiny_models))}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "mcp_agent.py")], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "-> list_models()"
    assert any(line.startswith("-> rerank(") and "model='tiny-reranker'" in line for line in lines)
    assert any(line.startswith("-> extract(") and "model='tiny-gliner'" in line for line in lines)
    assert lines[-1].startswith('answer: From "')
