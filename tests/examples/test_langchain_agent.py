"""examples/agents/langchain_agent.py: a real create_agent loop over SIEToolkit tools, driven by a scripted model."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from sie_core import Engine, EngineConfig, ModelSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "agents"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def example() -> Iterator[ModuleType]:
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield importlib.import_module("langchain_agent")
    finally:
        sys.path.remove(str(EXAMPLES))


@pytest.fixture(scope="module")
def agent_engine(tiny_models: dict[str, Path]) -> Iterator[Engine]:
    specs = (
        ModelSpec(id="tiny/reranker", task="score", path=str(tiny_models["cross_encoder"]), description="Tiny A."),
        ModelSpec(id="tiny/reranker-b", task="score", path=str(tiny_models["cross_encoder"]), description="Tiny B."),
        ModelSpec(id="tiny/gliner", task="extract", path=str(tiny_models["gliner"]), description="Tiny GLiNER."),
    )
    engine = Engine(EngineConfig(device="cpu", offline=True, models=specs))
    yield engine
    engine.close()


TASKS = {
    "retrieve": ("encode", MINILM),
    "rerank": ("score", "tiny/reranker", "tiny/reranker-b"),
    "extract": ("extract", "tiny/gliner"),
}


def _check_run(example: ModuleType, engine: Engine, model: Any, messages: list[Any]) -> None:
    # the tools the framework bound, as a provider receives them: enums of the configured models
    schemas = model.tool_schemas
    assert sorted(schemas) == ["sie_extract", "sie_rerank", "sie_search"]
    assert schemas["sie_rerank"]["parameters"]["properties"]["model"]["enum"] == ["tiny/reranker", "tiny/reranker-b"]
    assert "- tiny/reranker-b: Tiny B." in schemas["sie_rerank"]["parameters"]["properties"]["model"]["description"]
    kinds = [(type(m).__name__, getattr(m, "name", None)) for m in messages]
    assert kinds == [
        ("HumanMessage", None),
        ("AIMessage", None),
        ("ToolMessage", "sie_search"),
        ("AIMessage", None),
        ("ToolMessage", "sie_rerank"),
        ("AIMessage", None),
        ("ToolMessage", "sie_extract"),
        ("AIMessage", None),
    ]
    search, rerank, extract = (m for m in messages if isinstance(m, ToolMessage))
    assert all(m.status == "success" for m in (search, rerank, extract))
    # search: the real MiniLM puts the Acme invoice first
    passages = [d["text"] for d in search.artifact["documents"]]
    assert passages[0] == example.CORPUS[0] and len(passages) == 4
    # rerank: the passages search found, ordered exactly as the engine scores them
    question = example.QUESTION
    expected = engine.score("tiny/reranker", question, passages, top_k=2)
    assert [r["text"] for r in rerank.artifact["results"]] == [passages[e.index] for e in expected.scores]
    assert rerank.artifact["model"] == "tiny/reranker"
    # extract: entities of the best passage, as the engine finds them
    best = rerank.artifact["results"][0]["text"]
    found = engine.extract("tiny/gliner", best, labels=example.LABELS, threshold=0.3)
    assert extract.artifact["entities"] == [e.to_dict() for e in found.entities]
    answer = messages[-1]
    assert isinstance(answer, AIMessage) and not answer.tool_calls
    assert best in str(answer.content)
    assert model.calls == 4


def test_agent_runs_search_rerank_extract(example: ModuleType, agent_engine: Engine) -> None:
    from scripted_model import ScriptedChatModel

    model = ScriptedChatModel(policy=example.research_policy)
    agent = example.build_agent(model, agent_engine, tasks=TASKS)
    state = agent.invoke({"messages": [HumanMessage(content=example.QUESTION)]})
    _check_run(example, agent_engine, model, state["messages"])


async def test_agent_runs_async(example: ModuleType, agent_engine: Engine) -> None:
    from scripted_model import ScriptedChatModel

    model = ScriptedChatModel(policy=example.research_policy)
    agent = example.build_agent(model, agent_engine, tasks=TASKS)
    state = await agent.ainvoke({"messages": [HumanMessage(content=example.QUESTION)]})
    _check_run(example, agent_engine, model, state["messages"])


def test_example_script_runs(tiny_models: dict[str, Path]) -> None:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "SIE_SCORE_MODEL": f"{tiny_models['cross_encoder']}",
        "SIE_EXTRACT_MODEL": f"{tiny_models['gliner']}",
    }
    env.pop("SIE_CHAT_MODEL", None)
    script = EXAMPLES / "langchain_agent.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("-> sie_search(") and f"model='{MINILM}'" in lines[0]
    assert "Invoice 4471 from Acme GmbH" in lines[1]
    assert any(line.startswith("-> sie_rerank(") for line in lines)
    assert any(line.startswith("-> sie_extract(") for line in lines)
    assert lines[-1].startswith('answer: From "')
    assert "a scripted model plays the chat model's part" in proc.stderr


def test_agent_carries_on_when_a_model_is_missing(example: ModuleType, agent_engine: Engine) -> None:
    """With no weights for a task, the tool answers the agent with the engine's error and the loop goes on."""
    from scripted_model import ScriptedChatModel

    tasks = {**TASKS, "extract": ("extract", "urchade/gliner_multi-v2.1")}
    model = ScriptedChatModel(policy=example.research_policy)
    agent = example.build_agent(model, agent_engine, tasks=tasks)
    state = agent.invoke({"messages": [HumanMessage(content="Who is the account manager for Acme?")]})
    extract = next(m for m in state["messages"] if isinstance(m, ToolMessage) and m.name == "sie_extract")
    assert extract.status == "error" and extract.artifact is None
    assert "model 'urchade/gliner_multi-v2.1' is not available" in str(extract.content)
    assert "sie-agents pull urchade/gliner_multi-v2.1" in str(extract.content)
    assert str(state["messages"][-1].content).endswith("(no entities: extraction failed).")
