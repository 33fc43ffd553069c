"""A generated corpus of raw JSON-RPC lines against a real ``sie-agents mcp`` over stdio, with valid
``tools/call`` requests interleaved (sent in bursts with the hostile ones) whose answers must equal the reference.

Required: every line with an id answered within 10 s (JSON-RPC 2.0: -32700 with ``"id": null`` for what is not
JSON, -32600 / -32602 for invalid requests and params, a tool error for bad tool arguments), notifications
never answered, every valid call correct, stdout nothing but JSON-RPC, the process alive at the end and
exiting cleanly when stdin closes.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .corpus import VALID, VALID_CALLS, StdioCase, stdio_corpus, valid_tool_arguments
from .harness import ANSWER_TIMEOUT_S, Reference, StdioServer, judge_tool, message_problem

pytestmark = pytest.mark.slow  # a server process, torch, and ~700 messages

RANDOM_CASES = 450
BURST = 8
CORPUS_BUDGET_S = 90.0
CLIENT = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "0"}}


@pytest.fixture(scope="module")
def corpus(fuzz_seed: int) -> list[StdioCase]:
    return stdio_corpus(fuzz_seed, random_cases=RANDOM_CASES)


@pytest.fixture(scope="module")
def stdio(
    tiny_models: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
    reference: Reference,
    corpus: list[StdioCase],
) -> Iterator[StdioServer]:
    reference.prepare(case.expect for case in corpus)  # up front, before any hostile line
    server = StdioServer(tiny_models, tmp_path_factory.mktemp("fuzz-stdio") / "stderr.log")
    server.send(json.dumps({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": CLIENT}))
    reply = server.wait_for("init", timeout=60)
    assert reply is not None and "result" in reply, f"no initialize answer: {reply}\n{server.stderr()[-3000:]}"
    server.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    # the first call of each model loads it (torch import, seconds): outside the per-request timeout
    for n, call in enumerate(VALID_CALLS):
        tool, arguments = valid_tool_arguments(call)
        server.send(_tool_line(f"warm-{n}", tool, arguments))
        assert server.wait_for(f"warm-{n}", timeout=120) is not None, server.stderr()[-3000:]
    yield server
    server.close()


def _tool_line(request_id: Any, tool: str, arguments: dict[str, Any]) -> str:
    params = {"name": tool, "arguments": arguments}
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})


def judge(case: StdioCase, answer: dict[str, Any] | None, reference: Reference) -> str | None:
    """Why the answer to ``case`` breaks the specification (None when it does not)."""
    if answer is None:
        return f"unanswered within {ANSWER_TIMEOUT_S:g} s"
    if "error" in answer:
        error = answer["error"]
        if not isinstance(error, dict) or not isinstance(error.get("code"), int):
            return f"a malformed error object: {error!r:.200}"
        problem = message_problem(error.get("message"))
        if problem:
            return problem
        if error["code"] not in case.codes:
            wanted = sorted(case.codes) or "a result"
            return f"error {error['code']} ({error.get('message', '')[:200]!r}), expected {wanted}"
        return None
    result = answer.get("result")
    if case.tool_error is None:
        return f"a malformed request was answered with a result: {result!r:.200}" if case.codes else None
    if not isinstance(result, dict):
        return f"a tools/call result that is not an object: {result!r:.200}"
    return judge_tool(reference, case.tool, case.arguments, case.tool_error, result, case.expect)


def run_corpus(
    server: StdioServer, corpus: list[StdioCase]
) -> tuple[list[tuple[StdioCase, dict[str, Any] | None]], list[str]]:
    """Send the corpus: cases answered by id in bursts, the others one at a time (their answers carry no id).

    Returns the answers of the cases due one, and the problems of answers no case called for (an
    ``"id": null`` answer after a burst or after a notification), each naming the lines that caused it.
    """
    answered: list[tuple[StdioCase, dict[str, Any] | None]] = []
    stray: list[str] = []
    burst: list[tuple[StdioCase, float]] = []

    def drain() -> None:
        for case, sent in burst:
            left = max(0.0, sent + ANSWER_TIMEOUT_S - time.monotonic())
            answered.append((case, server.wait_for(case.request_id, timeout=left)))
        extra = server.take_stray_nulls()
        if extra:
            lines = " / ".join(c.line[:160] for c, _ in burst)
            stray.append(f"an answer with id null ({json.dumps(extra[0])[:200]}) to one of: {lines}")
        burst.clear()

    for case in corpus:
        if case.answer == "id":
            server.send(case.line)
            burst.append((case, time.monotonic()))
            if len(burst) >= BURST:
                drain()
            continue
        drain()
        server.send(case.line)
        if case.answer == "null":
            answered.append((case, server.wait_for_null()))
        elif case.answer == "id-or-null":
            answered.append((case, _id_or_null(server, case)))
        elif case.answer == "any":
            answered.append((case, _id_or_null(server, case, echoed=True)))
        elif case.answer == "maybe-null":
            maybe = server.wait_for_null(timeout=1.0)
            if maybe is not None:
                answered.append((case, maybe))
        else:
            extra = server.take_stray_nulls(settle=0.3)
            if extra:
                stray.append(f"[{case.kind}] a notification was answered ({json.dumps(extra[0])[:200]}): {case.line}")
    drain()
    return answered, stray


def _id_or_null(server: StdioServer, case: StdioCase, *, echoed: bool = False) -> dict[str, Any] | None:
    """The answer by the case's id (or, for ``echoed``, by the id in its line) or the next ``"id": null`` one."""
    request_id = json.loads(case.line).get("id") if echoed else case.request_id
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while time.monotonic() < deadline:
        by_id = server.wait_for(request_id, timeout=0.05)
        if by_id is not None:
            return by_id
        null = server.wait_for_null(timeout=0.05)
        if null is not None:
            return null
    return None


def test_stdio_corpus(
    stdio: StdioServer, corpus: list[StdioCase], reference: Reference, fuzz_summary: Callable[[str], None]
) -> None:
    started = time.monotonic()
    answered, failures = run_corpus(stdio, corpus)
    elapsed = time.monotonic() - started
    kinds: Counter[str] = Counter()
    for case, answer in answered:
        problem = judge(case, answer, reference)
        if answer is not None:
            kinds["error " + str(answer["error"].get("code")) if "error" in answer else _result_kind(answer)] += 1
        if problem:
            failures.append(f"[{case.kind}] {problem}\n    repro: printf '%s\\n' {_shell(case.line)} | sie-agents mcp")
    if stdio.duplicates:
        twice = stdio.duplicates
        failures.append(f"{len(twice)} requests answered twice, e.g. {json.dumps(twice[0])[:200]}")
    notified = [c for c in corpus if c.answer == "none" and '"id"' in c.line]
    for case in notified:
        if stdio.wait_for(json.loads(case.line)["id"], timeout=0) is not None:
            failures.append(f"[{case.kind}] a response from the client was answered: {case.line[:200]}")
    unanswered = sum(1 for _, a in answered if a is None)
    valid = sum(1 for c in corpus if c.tool_error is VALID and c.expect is not None)
    fuzz_summary(
        f"fuzz stdio: {len(corpus)} lines ({len(answered)} due an answer, {valid} valid calls) in {elapsed:.1f} s, "
        f"{len(answered) - unanswered} answered, {len(failures)} failed; answers {dict(sorted(kinds.items()))}"
    )
    alive = stdio.alive()
    assert not failures, f"{len(failures)} of {len(corpus)} lines failed:\n" + "\n".join(failures[:60])
    assert alive, f"the stdio server died during the corpus:\n{stdio.stderr()[-3000:]}"
    assert elapsed < CORPUS_BUDGET_S, f"the corpus took {elapsed:.0f} s"


def _result_kind(answer: dict[str, Any]) -> str:
    result = answer.get("result")
    return "tool error" if isinstance(result, dict) and result.get("isError") else "result"


def _shell(line: str) -> str:
    shown = line if len(line) <= 240 else line[:200] + f"...<{len(line)} chars>"
    return "'" + shown.replace("'", "'\\''") + "'"


def test_stdio_server_serves_and_exits_cleanly_after_the_corpus(stdio: StdioServer, reference: Reference) -> None:
    for n, call in enumerate(VALID_CALLS):
        tool, arguments = valid_tool_arguments(call)
        stdio.send(_tool_line(f"after-{n}", tool, arguments))
        answer = stdio.wait_for(f"after-{n}")
        assert answer is not None and "result" in answer, answer
        assert judge_tool(reference, tool, arguments, VALID, answer["result"], call) is None
    assert stdio.alive()
    assert stdio.close() == 0, stdio.stderr()[-3000:]
    assert not stdio.not_json_rpc, f"stdout carried non-JSON-RPC lines: {stdio.not_json_rpc[:3]}"
    assert stdio.lines and all(line.endswith(b"\n") for line in stdio.lines)
    assert "Traceback" not in stdio.stderr(), stdio.stderr()[-5000:]
