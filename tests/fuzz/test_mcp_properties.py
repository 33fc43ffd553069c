"""Property-based: any arguments of the MCP tools, valid or hostile, give either a correct result or a clean tool
error (``isError`` with a message), never a crash, and a valid call sent at the same time still returns the
reference answer. The tools are called through a real MCP session (in memory) over the fuzz engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sie_core import Engine
from sie_mcp import create_server

from .corpus import VALID_CALLS, Verdict, materialize, tool_calls, tool_verdict, valid_tool_arguments
from .harness import LoopClient, Reference, judge_tool

pytestmark = [
    pytest.mark.slow,  # loads torch and three tiny models, then a few hundred calls
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),  # the 200,000-character texts
]

FUZZ = settings(
    derandomize=True,
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module")
def client(fuzz_engine: Engine, reference: Reference) -> Iterator[LoopClient]:
    reference.prepare(VALID_CALLS)  # up front, before any hostile call
    session = LoopClient(create_server(fuzz_engine))
    yield session
    session.close()


def _run(client: LoopClient, reference: Reference, tool: str, arguments: dict[str, Any], valid: Any) -> None:
    shown = _short(arguments)
    arguments = materialize(arguments)
    verdict = tool_verdict(tool, arguments)
    valid_tool, valid_arguments = valid_tool_arguments(valid)

    async def both() -> Any:
        return await asyncio.gather(
            client.caller.call(tool, arguments),
            client.caller.call(valid_tool, valid_arguments),
            return_exceptions=True,
        )

    crashes_before = len(client.crashes)
    fuzzed, answered = client.run(both())
    if isinstance(fuzzed, UnicodeEncodeError):
        # The SDK's client cannot serialise a lone surrogate in a dict key, so nothing was sent; such bytes
        # reach the server in the stdio corpus (test_stdio_corpus.py), written raw.
        problem: str | None = None
    elif isinstance(fuzzed, BaseException):
        problem = f"the call raised {type(fuzzed).__name__} in the client: {str(fuzzed)[:300]}"
    else:
        problem = judge_tool(reference, tool, arguments, verdict, fuzzed, None)
    crashes = client.crashes[crashes_before:]
    if problem is None and crashes:
        problem = f"the server logged an unexpected exception: {crashes[0][:300]}"
    assert problem is None, f"{tool}({shown}) [{verdict.value}]: {problem}"
    if isinstance(answered, BaseException):
        raise AssertionError(f"beside {tool}({shown}): the valid call raised {answered!r}")
    problem = judge_tool(reference, valid_tool, valid_arguments, Verdict.VALID, answered, valid)
    assert problem is None, f"beside {tool}({shown}): the valid call {valid}: {problem}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 300 else text[:300] + f"...({len(text)} chars)"


@FUZZ
@given(arguments=tool_calls("encode"), valid=st.sampled_from(VALID_CALLS))
def test_encode_tool_arguments(client: LoopClient, reference: Reference, arguments: Any, valid: Any) -> None:
    _run(client, reference, "encode", arguments, valid)


@FUZZ
@given(arguments=tool_calls("rerank"), valid=st.sampled_from(VALID_CALLS))
def test_rerank_tool_arguments(client: LoopClient, reference: Reference, arguments: Any, valid: Any) -> None:
    _run(client, reference, "rerank", arguments, valid)


@FUZZ
@given(arguments=tool_calls("extract"), valid=st.sampled_from(VALID_CALLS))
def test_extract_tool_arguments(client: LoopClient, reference: Reference, arguments: Any, valid: Any) -> None:
    _run(client, reference, "extract", arguments, valid)


@settings(FUZZ, max_examples=40)
@given(arguments=tool_calls("list_models"), valid=st.sampled_from(VALID_CALLS))
def test_list_models_tool_arguments(client: LoopClient, reference: Reference, arguments: Any, valid: Any) -> None:
    _run(client, reference, "list_models", arguments, valid)
