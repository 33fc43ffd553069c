"""A LangChain agent that picks the model per task: search -> rerank -> extract over a small corpus.

What it shows: ``SIEToolkit`` turns the task -> model table into three tools (``sie_search``,
``sie_rerank``, ``sie_extract``) whose ``model`` argument is an enum of the models configured for that
task, each described in one line, so the agent chooses the model per call. All three tasks run in this
process on one shared ``sie_core.Engine``. The agent is ``langchain.agents.create_agent``.

Run it with a real chat model (any provider ``init_chat_model`` knows; install its package first):
    pip install -e '.[all]' langchain-openai && export OPENAI_API_KEY=...
    SIE_CHAT_MODEL=openai:gpt-4.1-mini python examples/agents/langchain_agent.py "When is the Acme invoice due?"

Without ``SIE_CHAT_MODEL`` a scripted stand-in (``scripted_model.py``) plays the chat model's part — it
calls search, then rerank on what search found, then extract on the best passage, choosing each model
from the tool's enum — so the example runs with no API key; the tools, their schemas and the agent loop
are real. Choose the models with ``SIE_ENCODE_MODEL``, ``SIE_SCORE_MODEL`` and ``SIE_EXTRACT_MODEL``;
a comma-separated list offers the agent several models for that task. A task whose weights are not
available answers the agent with the engine's error (what is missing and how to get it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from scripted_model import ScriptedChatModel, enum_choice, print_transcript

from sie_core import Engine, EngineConfig
from sie_langchain import SIERetriever, SIEToolkit


def _models(variable: str, default: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in os.environ.get(variable, default).split(",") if m.strip())


# The task -> (engine function, model, ...) table of route_tasks.py; several models per task are allowed.
TASKS: dict[str, tuple[str, ...]] = {
    "retrieve": ("encode", *_models("SIE_ENCODE_MODEL", "sentence-transformers/all-MiniLM-L6-v2")),
    "rerank": ("score", *_models("SIE_SCORE_MODEL", "cross-encoder/ms-marco-MiniLM-L12-v2")),
    "extract": ("extract", *_models("SIE_EXTRACT_MODEL", "urchade/gliner_multi-v2.1")),
}

CORPUS = [
    "Invoice 4471 from Acme GmbH is due on 30 June. Amount: 12,400 EUR.",
    "The Berlin office reported revenue of 3.2 million EUR in the second quarter.",
    "Our cafeteria serves vegetarian lunch on Fridays.",
    "Acme GmbH moved its headquarters from Munich to Berlin in 2021.",
    "Invoice 4502 from Globex Corporation was paid on 2 May. Amount: 880 EUR.",
    "Payment terms: net 30 days after the invoice date, unless the contract says otherwise.",
    "Alice Smith is the account manager for Acme GmbH.",
    "The parking garage is closed for repairs until September.",
]
QUESTION = "When is the invoice from Acme GmbH due, and how much is it?"
LABELS = ["organization", "date", "amount", "invoice number"]
SYSTEM_PROMPT = (
    "You answer questions about the company's documents. First call sie_search to find candidate passages, "
    "then sie_rerank with the question and those passages, then sie_extract on the best passage to pull out "
    "the facts. Choose each tool's model from its list. Answer briefly and quote the passage you used."
)


def build_agent(
    chat_model: BaseChatModel,
    engine: Engine,
    corpus: Sequence[str] = CORPUS,
    tasks: dict[str, tuple[str, ...]] | None = None,
) -> Any:
    """The agent: the chat model plus the toolkit's tools over ``corpus``, all on ``engine``."""
    tasks = tasks or TASKS
    retriever = SIERetriever.from_texts(corpus, model=tasks["retrieve"][1], engine=engine, k=4)
    toolkit = SIEToolkit(tasks=tasks, retriever=retriever, engine=engine, labels=LABELS, threshold=0.3)
    return create_agent(chat_model, toolkit.get_tools(), system_prompt=SYSTEM_PROMPT)


def research_policy(messages: Sequence[BaseMessage], tools: dict[str, dict[str, Any]]) -> AIMessage:
    """The scripted chat model's part: search, rerank what was found, extract from the best, answer.

    Like a careful model it carries on when a step fails (say, a model's weights are missing): without a
    reranking it extracts from the top search hit, and without entities it answers with the passage.
    """
    question = next(str(m.content) for m in messages if isinstance(m, HumanMessage))
    results = {m.name: m for m in messages if isinstance(m, ToolMessage)}
    ok = {name: m for name, m in results.items() if m.status != "error" and m.artifact is not None}
    if "sie_search" not in results:
        args = {"query": question, "k": 4, "model": enum_choice(tools["sie_search"])}
        return AIMessage(content="", tool_calls=[{"name": "sie_search", "args": args, "id": "call-search"}])
    if "sie_search" not in ok:
        return AIMessage(content=f"I could not search the documents: {results['sie_search'].content}")
    passages = [d["text"] for d in ok["sie_search"].artifact["documents"]]
    if not passages:
        return AIMessage(content="No document answers that.")
    if "sie_rerank" not in results:
        args = {"query": question, "documents": passages, "top_k": 2, "model": enum_choice(tools["sie_rerank"])}
        return AIMessage(content="", tool_calls=[{"name": "sie_rerank", "args": args, "id": "call-rerank"}])
    best = ok["sie_rerank"].artifact["results"][0]["text"] if "sie_rerank" in ok else passages[0]
    if "sie_extract" not in results:
        args = {"text": best, "labels": LABELS, "model": enum_choice(tools["sie_extract"])}
        return AIMessage(content="", tool_calls=[{"name": "sie_extract", "args": args, "id": "call-extract"}])
    if "sie_extract" not in ok:
        return AIMessage(content=f'From "{best}" (no entities: extraction failed).')
    facts = "; ".join(f"{e['label']}: {e['text']}" for e in ok["sie_extract"].artifact["entities"])
    return AIMessage(content=f'From "{best}" — {facts or "no entities found"}.')


def chat_model_from_env() -> BaseChatModel:
    """``SIE_CHAT_MODEL`` (e.g. ``openai:gpt-4.1-mini``) through ``init_chat_model``, else the scripted model."""
    name = os.environ.get("SIE_CHAT_MODEL")
    if name:
        from langchain.chat_models import init_chat_model

        return init_chat_model(name)  # type: ignore[return-value]
    print("SIE_CHAT_MODEL is not set: a scripted model plays the chat model's part", file=sys.stderr)
    return ScriptedChatModel(policy=research_policy)


def main(argv: Sequence[str] | None = None) -> int:
    """Ask the agent one question (the command line's, or the built-in one) and print what it did."""
    args = list(sys.argv[1:] if argv is None else argv)
    question = " ".join(args) or QUESTION
    with Engine(EngineConfig.from_env()) as engine:
        agent = build_agent(chat_model_from_env(), engine)
        state = agent.invoke({"messages": [HumanMessage(content=question)]})
    print_transcript(state["messages"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
