"""An agent that uses the sie-agents MCP server's tools through langchain-mcp-adapters, over stdio.

What it shows: the MCP server (``python -m sie_mcp``) is started as a stdio subprocess; its tools
``list_models``, ``encode``, ``rerank`` and ``extract`` become LangChain tools (``load_mcp_tools`` on one
session kept open for the whole run, so the server and its loaded models live as long as the agent). The
agent is ``langchain.agents.create_agent``: it lists the models the server serves and picks one per task,
reranks the candidate passages given in the question, and extracts the facts from the best one. Each
tool's structured result reaches the agent as the message artifact (``artifact["structured_content"]``),
its short text as the content.

Run it with a real chat model (langchain-mcp-adapters 0.3.2 needs mcp<2; the server runs on mcp 1.x and 2.x):
    pip install 'mcp>=1.24,<2' langchain-mcp-adapters==0.3.2 langchain-openai && export OPENAI_API_KEY=...
    SIE_CHAT_MODEL=openai:gpt-4.1-mini python examples/agents/mcp_agent.py

Without ``SIE_CHAT_MODEL`` a scripted stand-in (``scripted_model.py``) plays the chat model's part, so it
runs with no API key. The server is ``SIE_MCP_COMMAND`` (default: this Python with ``-m sie_mcp``) plus the
flags in ``SIE_MCP_ARGS``, e.g. ``--model score=my-reranker=/models/reranker --default-model score=my-reranker``;
``SIE_*`` engine variables (``SIE_SCORE_MODEL``, ...) reach the server through the environment.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.tools import load_mcp_tools
from scripted_model import ScriptedChatModel, print_transcript

PASSAGES = [
    "Invoice 4471 from Acme GmbH is due on 30 June. Amount: 12,400 EUR.",
    "Our cafeteria serves vegetarian lunch on Fridays.",
    "Invoice 4502 from Globex Corporation was paid on 2 May. Amount: 880 EUR.",
    "The parking garage is closed for repairs until September.",
]
QUESTION = "When is the invoice from Acme GmbH due, and how much is it?"
LABELS = ["organization", "date", "amount", "invoice number"]
SYSTEM_PROMPT = (
    "You answer questions from the passages the user gives. Call list_models to see which models the server "
    "serves for each task, then rerank the passages against the question, then extract the facts from the best "
    "passage. Answer briefly and quote the passage you used."
)


def prompt(question: str, passages: Sequence[str]) -> str:
    """The user message: the question and the candidate passages, one per line."""
    return question + "\n\nPassages:\n" + "\n".join(f"- {p}" for p in passages)


def server_command() -> tuple[str, list[str]]:
    """The stdio server to start: ``SIE_MCP_COMMAND`` (default ``python -m sie_mcp``) and ``SIE_MCP_ARGS``."""
    command = shlex.split(os.environ.get("SIE_MCP_COMMAND", "")) or [sys.executable, "-m", "sie_mcp"]
    return command[0], command[1:] + shlex.split(os.environ.get("SIE_MCP_ARGS", ""))


def _structured(message: ToolMessage) -> dict[str, Any] | None:
    artifact = message.artifact
    if message.status == "error" or not isinstance(artifact, dict):
        return None
    content = artifact.get("structured_content")
    return content if isinstance(content, dict) else None


def mcp_policy(messages: Sequence[BaseMessage], tools: dict[str, dict[str, Any]]) -> AIMessage:
    """The scripted chat model's part: list the models, rerank the passages, extract from the best, answer.

    It reads the passages from the user message, and picks each task's model from list_models' answer
    (the server's default for the task), as a model reading that answer would.
    """
    user = next(str(m.content) for m in messages if isinstance(m, HumanMessage))
    question, _, listing = user.partition("\n\nPassages:\n")
    passages = [line[2:] for line in listing.splitlines() if line.startswith("- ")]
    results = {m.name: m for m in messages if isinstance(m, ToolMessage)}
    if "list_models" not in results:
        return AIMessage(content="", tool_calls=[{"name": "list_models", "args": {}, "id": "call-models"}])
    listed = _structured(results["list_models"])
    if listed is None:
        return AIMessage(content=f"The server could not list its models: {results['list_models'].text}")
    served = {m["id"] for m in listed["models"]}
    defaults = {task: model for task, model in listed["defaults"].items() if model in served}
    if "rerank" not in results:
        args: dict[str, Any] = {"query": question, "documents": passages, "top_k": 2}
        if "score" in defaults:
            args["model"] = defaults["score"]
        return AIMessage(content="", tool_calls=[{"name": "rerank", "args": args, "id": "call-rerank"}])
    ranked = _structured(results["rerank"])
    best = ranked["results"][0]["document"] if ranked else passages[0]
    if "extract" not in results:
        args = {"text": best, "labels": LABELS, "threshold": 0.3}
        if "extract" in defaults:
            args["model"] = defaults["extract"]
        return AIMessage(content="", tool_calls=[{"name": "extract", "args": args, "id": "call-extract"}])
    found = _structured(results["extract"])
    if found is None:
        return AIMessage(content=f'From "{best}" (no entities: {results["extract"].text}).')
    entities = found["results"][0]["entities"]
    facts = "; ".join(f"{e['label']}: {e['text']}" for e in entities) or "no entities found"
    return AIMessage(content=f'From "{best}" — {facts}.')


def chat_model_from_env() -> BaseChatModel:
    """``SIE_CHAT_MODEL`` (e.g. ``openai:gpt-4.1-mini``) through ``init_chat_model``, else the scripted model."""
    name = os.environ.get("SIE_CHAT_MODEL")
    if name:
        from langchain.chat_models import init_chat_model

        return init_chat_model(name)  # type: ignore[return-value]
    print("SIE_CHAT_MODEL is not set: a scripted model plays the chat model's part", file=sys.stderr)
    return ScriptedChatModel(policy=mcp_policy)


async def run(
    question: str,
    passages: Sequence[str],
    chat_model: BaseChatModel,
    command: str,
    args: Sequence[str],
    env: dict[str, str] | None = None,
) -> list[BaseMessage]:
    """Start the stdio server, load its tools, and let the agent answer; returns the conversation."""
    connection: dict[str, Any] = {"transport": "stdio", "command": command, "args": list(args)}
    connection["env"] = dict(os.environ if env is None else env)
    client = MultiServerMCPClient({"sie": connection})  # type: ignore[dict-item]
    async with client.session("sie") as session:
        tools = await load_mcp_tools(session)
        agent = create_agent(chat_model, tools, system_prompt=SYSTEM_PROMPT)
        state = await agent.ainvoke({"messages": [HumanMessage(content=prompt(question, passages))]})
    return list(state["messages"])


def main(argv: Sequence[str] | None = None) -> int:
    """Ask the agent one question (the command line's, or the built-in one) and print what it did."""
    question = " ".join(sys.argv[1:] if argv is None else argv) or QUESTION
    command, args = server_command()
    messages = asyncio.run(run(question, PASSAGES, chat_model_from_env(), command, args))
    print_transcript(messages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
