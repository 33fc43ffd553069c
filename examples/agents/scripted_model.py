"""A scripted stand-in for a chat model, so the agent examples run without an API key (and in CI).

It is langchain_core's ``FakeMessagesListChatModel`` plus two things a tool-calling agent needs:
``bind_tools`` (it records the tool schemas the agent framework sends, exactly as a real provider would
receive them) and responses computed from the conversation so far by a ``policy`` function — the part a
real LLM plays. A policy sees the messages and the bound tools' JSON schemas and returns the next
``AIMessage``: tool calls, or the final answer. Everything else — the agent loop, argument validation
against the tool schemas, the tool calls and their results — is the real thing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

#: A policy: (conversation so far, bound tool schemas by name) -> the next message.
Policy = Callable[[Sequence[BaseMessage], dict[str, dict[str, Any]]], AIMessage]


class ScriptedChatModel(FakeMessagesListChatModel):
    """A fake chat model that binds tools and answers by a policy instead of a fixed list."""

    responses: list[BaseMessage] = []
    policy: Policy
    tool_schemas: dict[str, dict[str, Any]] = {}
    """The tools bound by the agent framework, as the OpenAI-style function schemas a provider receives."""
    calls: int = 0

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Record the tools' schemas (as a provider would receive them) and return this model."""
        schemas = [convert_to_openai_tool(t)["function"] for t in tools]
        self.tool_schemas = {s["name"]: s for s in schemas}
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls += 1
        message = self.policy(messages, self.tool_schemas)
        for call in message.tool_calls:
            if call["name"] not in self.tool_schemas:
                raise ValueError(f"the script called {call['name']!r}, which the agent did not bind")
        return ChatResult(generations=[ChatGeneration(message=message)])

    @property
    def _llm_type(self) -> str:
        return "scripted-chat-model"


def enum_choice(schema: dict[str, Any], argument: str = "model", prefer: str | None = None) -> Any:
    """Pick a value of an enum argument the way a model reading the schema would (``prefer`` if offered)."""
    options = schema["parameters"]["properties"][argument]["enum"]
    return prefer if prefer in options else options[0]


def print_transcript(messages: Sequence[BaseMessage]) -> None:
    """Print an agent run: each tool call, the first lines of each tool result, and the final answer."""
    for message in messages:
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                args = {k: (f"[{len(v)} items]" if isinstance(v, list) else v) for k, v in call["args"].items()}
                print(f"-> {call['name']}({', '.join(f'{k}={v!r}' for k, v in args.items())})")
            if message.text and not message.tool_calls:
                print(f"answer: {message.text}")
        elif isinstance(message, ToolMessage):
            lines = message.text.splitlines() or [""]
            more = f" (+{len(lines) - 3} more lines)" if len(lines) > 3 else ""
            print(f"   {message.name}: " + "\n   ".join(lines[:3]) + more)
