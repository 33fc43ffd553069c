"""Malformed JSON-RPC messages get an error response with their id, over stdio and streamable HTTP, and the
session goes on (the SDK alone drops them and the client waits forever)."""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sie_mcp import jsonrpc
from sie_mcp.jsonrpc import INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR, check_message

from .helpers import free_port, server_env

PROTOCOL = "2025-06-18"
DEEP = "[" * 10_000 + "]" * 10_000


def request(request_id: Any, method: str = "tools/call", **extra: Any) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, **extra})


def call(request_id: Any, arguments: str) -> str:
    """A tools/call of list_models whose arguments are raw JSON text (to carry what json.dumps cannot make)."""
    head = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call"})[:-1]
    return head + ',"params":{"name":"list_models","arguments":' + arguments + "}}"


# (case, line, expected code, id in the answer). Every line carries an id, as a client waiting for an answer would.
MALFORMED: list[tuple[str, str, int, Any]] = [
    ("not json", '{"jsonrpc": "2.0", "id": 1, "method": ', PARSE_ERROR, None),
    ("nan", '{"jsonrpc":"2.0","id":2,"method":"ping","params":{"x":NaN}}', PARSE_ERROR, None),
    ("no jsonrpc", '{"id": 3, "method": "tools/list"}', INVALID_REQUEST, 3),
    ("wrong jsonrpc", '{"jsonrpc": "1.0", "id": 4, "method": "tools/list"}', INVALID_REQUEST, 4),
    ("jsonrpc number", '{"jsonrpc": 2.0, "id": "s5", "method": "tools/list"}', INVALID_REQUEST, "s5"),
    ("no method", '{"jsonrpc": "2.0", "id": 6}', INVALID_REQUEST, 6),
    ("method number", '{"jsonrpc": "2.0", "id": 7, "method": 42}', INVALID_REQUEST, 7),
    ("params scalar", request(8, "tools/list", params=5), INVALID_REQUEST, 8),
    ("params string", request(9, params="list_models"), INVALID_REQUEST, 9),
    ("params null", request(10, "tools/list", params=None), INVALID_REQUEST, 10),
    ("params list", request(11, params=["list_models", {}]), INVALID_PARAMS, 11),
    ("deep arguments", call(12, '{"task": ' + DEEP + "}"), INVALID_PARAMS, 12),
    (
        "deep, id last",
        '{"jsonrpc":"2.0","method":"ping","params":{"x":' + DEEP + '},"id":"last"}',
        INVALID_PARAMS,
        "last",
    ),
    ("deep envelope", '{"jsonrpc":"2.0","id":14,"method":"ping","extra":' + DEEP + "}", INVALID_REQUEST, 14),
    ("lone surrogate", call(15, '{"task": "enc\\ud800ode"}'), INVALID_PARAMS, 15),
    ("lone low surrogate key", call(16, '{"\\udc00": "encode"}'), INVALID_PARAMS, 16),
    ("surrogate method", '{"jsonrpc":"2.0","id":17,"method":"tools/\\ud800list"}', INVALID_REQUEST, 17),
    ("surrogate id", '{"jsonrpc":"2.0","id":"\\ud800","method":"tools/list"}', INVALID_REQUEST, None),
    ("fractional id", request(18.5, "tools/list"), INVALID_REQUEST, 18.5),
    ("boolean id", request(True, "tools/list"), INVALID_REQUEST, None),
    ("null id", request(None, "tools/list"), INVALID_REQUEST, None),
    ("object id", request({"n": 1}, "tools/list"), INVALID_REQUEST, None),
    ("scalar message", "19", INVALID_REQUEST, None),
    ("empty batch", "[]", INVALID_REQUEST, None),
]


@pytest.mark.parametrize(("line", "code", "request_id"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_message_is_rejected_with_code_and_id(line: str, code: int, request_id: Any) -> None:
    rejection = check_message(line)
    assert rejection is not None and rejection.answer
    answer = json.loads(rejection.wire() or "")
    assert answer["jsonrpc"] == "2.0" and answer["id"] == request_id and answer["error"]["code"] == code
    prefix = {PARSE_ERROR: "Parse error: ", INVALID_REQUEST: "Invalid Request: ", INVALID_PARAMS: "Invalid params: "}
    assert answer["error"]["message"].startswith(prefix[code])
    assert rejection.http_body() == rejection.wire()


VALID = [
    request(1, "tools/list"),
    request("a", params={"name": "list_models", "arguments": {}}),
    call(2, '{"task": "\\ud83d\\ude00"}'),  # a surrogate pair is one valid character
    call(3, '{"task": "\\\\ud800"}'),  # an escaped backslash, not a surrogate
    call(4, '{"task": ' + "[" * 97 + "]" * 97 + "}"),  # 100 levels in all: the most accepted
    '{"jsonrpc": "2.0", "method": "notifications/initialized"}',
    '{"jsonrpc": "2.0", "id": 5, "result": {}}',
    '{"jsonrpc": "2.0", "id": "r", "error": {"code": -1, "message": "no"}}',
    request(2**70, "ping"),
]


@pytest.mark.parametrize("line", VALID)
def test_valid_messages_pass_untouched(line: str) -> None:
    assert check_message(line) is None


def test_nesting_bound_is_counted_over_the_whole_message() -> None:
    rejection = check_message(call(1, '{"task": ' + "[" * 98 + "]" * 98 + "}"))
    assert rejection is not None and rejection.code == INVALID_PARAMS and "100 levels" in rejection.message


def test_notifications_and_responses_are_never_answered() -> None:
    for line in (
        '{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": [1]}',
        '{"jsonrpc": "2.0", "method": "notifications/x", "params": {"s": "\\ud800"}}',
        '{"jsonrpc": "2.0", "id": 1, "result": 5}',
        '{"jsonrpc": "2.0", "id": 1, "result": {}, "error": {"code": 1, "message": "x"}}',
        '{"jsonrpc": "2.0", "id": 1, "result": ' + DEEP + "}",
        '[{"jsonrpc": "2.0", "method": "notifications/initialized"}]',
    ):
        rejection = check_message(line)
        assert rejection is not None and rejection.wire() is None, line[:80]
        # Over HTTP a POST always gets a reply: an id-less error.
        assert json.loads(rejection.http_body())["id"] is None


def test_batch_gets_one_error_per_member_that_expects_an_answer() -> None:
    line = json.dumps(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 9, "result": {}},
            7,
            {"jsonrpc": "2.0", "id": "b", "method": "ping"},
        ]
    )
    rejection = check_message(line)
    assert rejection is not None
    answers = json.loads(rejection.wire() or "")
    assert [(a["id"], a["error"]["code"]) for a in answers] == [(1, -32600), (None, -32600), ("b", -32600)]
    assert "batches are not supported" in answers[0]["error"]["message"]


def test_malformed_deep_line_is_a_parse_error_and_answers_never_hold_lone_surrogates() -> None:
    rejection = check_message('{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":' + "[" * 10_000)
    assert rejection is not None and rejection.code == PARSE_ERROR and rejection.id is None
    assert jsonrpc.dumps({"m": "a\ud800b"}) == '{"m":"a\ufffdb"}'
    assert jsonrpc.wire_safe("plain") == "plain"


def test_message_too_large_finds_the_id_at_the_start() -> None:
    head = '{"jsonrpc": "2.0", "id": "big", "method": "tools/call", "params": {"name": "encode", "arguments": {"te'
    rejection = jsonrpc.message_too_large(head, "longer than 10 characters", "10 characters")
    assert (rejection.code, rejection.id, rejection.answer) == (INVALID_REQUEST, "big", True)
    assert "at most 10 characters" in rejection.message
    assert jsonrpc.message_too_large('{"jsonrpc": "2.0", "method"', "x", "y").id is None


# ---------------------------------------------------------------------------------------------- real transports
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": "init",
    "method": "initialize",
    "params": {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}
SILENT = [  # no answer expected: notifications, client responses, blank lines
    '{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": ["x"]}',
    '{"jsonrpc": "2.0", "id": 99, "result": 5}',
    "   ",
]


def good(n: int) -> tuple[str, str]:
    """A valid request with id ``ok-n``: tools/list or a list_models call in turn."""
    if n % 2:
        return f"ok-{n}", request(f"ok-{n}", "tools/list")
    return f"ok-{n}", request(f"ok-{n}", params={"name": "list_models", "arguments": {"task": "encode"}})


def assert_good(message: dict[str, Any]) -> None:
    result = message["result"]
    assert "tools" in result or result["isError"] is False, message


class StdioServer:
    """``python -m sie_mcp`` over pipes; stdout lines land in a queue (reads never block the test forever)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sie_mcp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=server_env(),
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.raw: list[bytes] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.raw.append(line)
            self.lines.put(line)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode("utf-8", "surrogatepass") + b"\n")
        self.process.stdin.flush()

    def receive(self) -> Any:
        try:
            return json.loads(self.lines.get(timeout=60))
        except queue.Empty:
            raise AssertionError("the server did not answer within 60 s") from None

    def until(self, request_id: str) -> list[Any]:
        seen = []
        while True:
            message = self.receive()
            seen.append(message)
            if isinstance(message, dict) and message.get("id") == request_id:
                return seen


@pytest.fixture(scope="module")
def stdio_server() -> Iterator[StdioServer]:
    server = StdioServer()
    server.send(json.dumps(INITIALIZE))
    (reply,) = server.until("init")
    assert reply["result"]["serverInfo"]["name"] == "sie-agents"
    server.send('{"jsonrpc": "2.0", "method": "notifications/initialized"}')
    yield server
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait()


@pytest.mark.slow
def test_stdio_answers_every_malformed_request_once_and_keeps_serving(stdio_server: StdioServer) -> None:
    for n, (case, line, code, request_id) in enumerate(MALFORMED):
        ok_id, ok = good(n)
        stdio_server.send(line)
        stdio_server.send(ok)
        seen = stdio_server.until(ok_id)
        assert len(seen) == 2, (case, seen)
        error, answer = seen
        assert error["id"] == request_id and error["error"]["code"] == code, (case, error)
        assert_good(answer)
    for n, line in enumerate(SILENT, start=len(MALFORMED)):
        ok_id, ok = good(n)
        stdio_server.send(line)
        stdio_server.send(ok)
        (answer,) = stdio_server.until(ok_id)
        assert_good(answer)


@pytest.mark.slow
def test_stdio_batch_and_over_long_line_then_clean_exit(stdio_server: StdioServer) -> None:
    stdio_server.send('[{"jsonrpc": "2.0", "id": "b1", "method": "ping"}, 5]')
    ok_id, ok = good(100)
    stdio_server.send(ok)
    batch, answer = stdio_server.until(ok_id)
    assert [(m["id"], m["error"]["code"]) for m in batch] == [("b1", INVALID_REQUEST), (None, INVALID_REQUEST)]
    assert_good(answer)

    # One character over the bound: answered with the id found at the line's start, and the line's rest skipped.
    head = call("big", '{"task": "')
    stdio_server.send(head + "x" * (jsonrpc.MAX_LINE_CHARS - len(head) + 1) + '"}}}')
    ok_id, ok = good(101)
    stdio_server.send(ok)
    error, answer = stdio_server.until(ok_id)
    assert error["id"] == "big" and error["error"]["code"] == INVALID_REQUEST
    assert f"{jsonrpc.MAX_LINE_CHARS:,} characters" in error["error"]["message"]
    assert_good(answer)

    process = stdio_server.process
    assert process.stdin is not None and process.stderr is not None
    process.stdin.close()
    assert process.wait(timeout=30) == 0
    assert "stdin closed" in process.stderr.read().decode()
    # stdout carried nothing but JSON-RPC messages (an array only as the answer to a batch), all valid UTF-8.
    for raw in stdio_server.raw:
        message = json.loads(raw.decode("utf-8"))
        for item in message if isinstance(message, list) else [message]:
            assert item["jsonrpc"] == "2.0" and ("id" in item or "method" in item), raw[:200]


class McpHttp:
    """``python -m sie_mcp --transport streamable-http`` on a free loopback port, with one initialized session."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self._log = log.open("w")
        command = [sys.executable, "-m", "sie_mcp", "--transport", "streamable-http", "--port", str(self.port)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=server_env()
        )
        self._wait_ready(log)
        self.client = httpx.Client(timeout=60)
        self.headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        reply = self.client.post(self.url, headers=self.headers, json=INITIALIZE)
        assert reply.status_code == 200, reply.text
        self.headers.update({"mcp-session-id": reply.headers["mcp-session-id"], "mcp-protocol-version": PROTOCOL})
        assert self.post('{"jsonrpc": "2.0", "method": "notifications/initialized"}').status_code == 202

    def _wait_ready(self, log: Path) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{log.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.1)
        raise AssertionError(f"server did not listen within 60 s:\n{log.read_text()}")

    def post(self, body: str | bytes) -> httpx.Response:
        data = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
        return self.client.post(self.url, headers=self.headers, content=data)

    def answer(self, body: str) -> Any:
        """The JSON-RPC answer to a valid request (an SSE stream or a JSON body)."""
        reply = self.post(body)
        assert reply.status_code == 200, reply.text
        if reply.headers["content-type"].startswith("application/json"):
            return reply.json()
        data = [line[5:] for line in reply.text.splitlines() if line.startswith("data:") and line[5:].strip()]
        return json.loads(data[-1])

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture(scope="module")
def http_mcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpHttp]:
    server = McpHttp(tmp_path_factory.mktemp("mcp-jsonrpc") / "server.log")
    yield server
    server.stop()


@pytest.mark.slow
def test_http_answers_every_malformed_post_with_400_and_a_json_rpc_error(http_mcp: McpHttp) -> None:
    for n, (case, body, code, request_id) in enumerate(MALFORMED):
        reply = http_mcp.post(body)
        assert reply.status_code == 400 and reply.headers["content-type"] == "application/json", (case, reply.text)
        error = reply.json()
        assert error["jsonrpc"] == "2.0" and error["id"] == request_id and error["error"]["code"] == code, case
        ok_id, ok = good(n)
        answer = http_mcp.answer(ok)
        assert answer["id"] == ok_id
        assert_good(answer)


@pytest.mark.slow
def test_http_batch_notification_bad_utf8_and_too_large_bodies(http_mcp: McpHttp) -> None:
    reply = http_mcp.post('[{"jsonrpc": "2.0", "id": "b1", "method": "ping"}]')
    assert reply.status_code == 400 and [(m["id"], m["error"]["code"]) for m in reply.json()] == [("b1", -32600)]
    # A malformed notification: HTTP always replies, here with an id-less error.
    reply = http_mcp.post('{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": ["x"]}')
    assert reply.status_code == 400 and reply.json()["id"] is None and reply.json()["error"]["code"] == INVALID_PARAMS
    reply = http_mcp.post(b'{"jsonrpc": "2.0", "id": 1, "method": "\xff"}')
    assert reply.status_code == 400 and reply.json()["error"]["code"] == PARSE_ERROR and "UTF-8" in reply.text

    # The Host-header (DNS-rebinding) check still comes first: a foreign Host learns nothing about the body.
    rebinding = http_mcp.client.post(http_mcp.url, headers={**http_mcp.headers, "Host": "evil.example"}, content=b"[")
    assert rebinding.status_code == 421

    from mcp.server import streamable_http_manager

    limit = int(getattr(streamable_http_manager, "DEFAULT_MAX_REQUEST_BODY_SIZE", jsonrpc.MAX_LINE_CHARS))
    head = call("big", '{"task": "')
    reply = http_mcp.post(head + "x" * (limit - len(head) + 1) + '"}}}')
    assert reply.status_code == 413 and reply.json()["error"]["code"] == INVALID_REQUEST
    assert f"{limit:,} bytes" in reply.json()["error"]["message"]

    ok_id, ok = good(0)
    answer = http_mcp.answer(ok)
    assert answer["id"] == ok_id
    assert_good(answer)
