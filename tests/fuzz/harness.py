"""What the fuzz tests share: the reference answers, answer checks, and the servers they talk to.

* :class:`Reference` computes, up front and in-process, what every valid call must return; the ``check_*``
  functions compare an answer with it (vectors within 1e-5, rerank scores within 1e-5 and best first,
  entities equal).
* :class:`ServeProcess` is a ``sie-agents serve`` subprocess on a free loopback port; :func:`raw_request` sends
  what httpx will not (dot segments in the path are kept).
* :class:`StdioServer` is a ``sie-agents mcp`` subprocess spoken to in raw JSON-RPC lines; it records every
  line the server writes to stdout.
* :class:`LoopClient` holds an in-memory MCP client session on its own event loop thread, so that hypothesis
  tests (which are synchronous) can call tools through a real MCP session.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np

from sie_core import Engine

from ..sie_mcp.helpers import TINY_DEFAULTS, connect, model_flags, server_env, tiny_specs
from .corpus import ENCODER, EXTRACTOR, RERANKER, EncodeCall, ExtractCall, ScoreCall

T = TypeVar("T")
Call = EncodeCall | ScoreCall | ExtractCall

VECTOR_TOLERANCE = 1e-5
SCORE_TOLERANCE = 1e-5
#: Per-request answer timeout: a request not answered within it counts as unanswered.
ANSWER_TIMEOUT_S = 10.0
#: Texts in error messages that show an error escaped unshaped (a traceback, a pydantic dump, a self-contradiction).
BAD_MESSAGE = re.compile(
    r"Traceback \(most recent call last\)|validation errors? for |errors\.pydantic\.dev|must be a string, got str"
    r"|object has no attribute|unhashable type|NoneType"
)


def message_problem(message: Any) -> str | None:
    """Why an error message is not a clean one (None when it is)."""
    if not isinstance(message, str) or not message.strip():
        return f"empty or non-string error message {message!r}"
    bad = BAD_MESSAGE.search(message)
    if bad:
        return f"unshaped error message ({bad.group()!r}): {message[:300]!r}"
    return None


# ---------------------------------------------------------------------------------------------- reference
class Reference:
    """What each valid call returns, computed in-process before any hostile input is sent."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._answers: dict[Call, Any] = {}

    def prepare(self, calls: Iterable[Call | None]) -> None:
        """Compute the answers of ``calls`` now (up front)."""
        for call in calls:
            if call is not None:
                self.get(call)

    def get(self, call: Call) -> Any:
        """The answer of ``call``: an array of vectors, ``{index: score}``, or a list of entity tuples."""
        if call not in self._answers:
            self._answers[call] = self._compute(call)
        return self._answers[call]

    def _compute(self, call: Call) -> Any:
        e = self.engine
        if isinstance(call, EncodeCall):
            found = e.encode(ENCODER, list(call.texts), is_query=call.is_query, dims=call.dims)
            return np.stack([np.asarray(r.dense, dtype=np.float32) for r in found])
        if isinstance(call, ScoreCall):
            ranked = e.score(RERANKER, call.query, list(call.docs))
            return {s.index: float(s.score) for s in ranked.scores}
        result = e.extract(EXTRACTOR, call.text, labels=list(call.labels), threshold=call.threshold)
        return [(x.text, x.label, x.start, x.end, float(x.score)) for x in result.entities]


def check_vectors(expected: np.ndarray, vectors: Any) -> str | None:
    """Vectors equal to the reference within 1e-5."""
    try:
        got = np.asarray([np.asarray(v, dtype=np.float32) for v in vectors], dtype=np.float32)
    except (TypeError, ValueError) as exc:
        return f"vectors are not a numeric matrix: {exc}"
    if got.shape != expected.shape:
        return f"vectors have shape {got.shape}, expected {expected.shape}"
    worst = float(np.max(np.abs(got - expected))) if got.size else 0.0
    if not worst <= VECTOR_TOLERANCE:
        return f"vectors differ from the reference by {worst:.3g} (> {VECTOR_TOLERANCE})"
    return None


def check_scores(expected: dict[int, float], ranked: Sequence[tuple[int, float]]) -> str | None:
    """Every document once, each score equal to the reference within 1e-5, best first."""
    indices = [i for i, _ in ranked]
    if sorted(indices) != sorted(expected):
        return f"ranked indices {indices}, expected each of {sorted(expected)} once"
    for index, score in ranked:
        if not abs(score - expected[index]) <= SCORE_TOLERANCE:
            return f"document {index} scored {score}, reference {expected[index]}"
    scores = [s for _, s in ranked]
    if any(a < b - 1e-9 for a, b in itertools.pairwise(scores)):
        return f"not best first: {scores}"
    return None


def check_entities(expected: list[tuple[Any, ...]], entities: Sequence[tuple[Any, ...]]) -> str | None:
    """The same entities (text, label, start, end) in the same order, scores within 1e-4."""
    spans = [tuple(e[:4]) for e in entities]
    if spans != [tuple(e[:4]) for e in expected]:
        return f"entities {spans[:6]} differ from the reference {[tuple(e[:4]) for e in expected][:6]}"
    for got, want in zip(entities, expected):
        if not abs(float(got[4]) - want[4]) <= 1e-4:
            return f"entity {got[:4]} scored {got[4]}, reference {want[4]}"
    return None


def finite_vectors(vectors: Any, count: int) -> str | None:
    """``count`` vectors of finite numbers, all of one length."""
    rows = [np.asarray(v, dtype=np.float64) for v in vectors]
    if len(rows) != count:
        return f"{len(rows)} vectors for {count} inputs"
    if len({r.shape for r in rows}) > 1:
        return f"vectors of different shapes {[r.shape for r in rows][:5]}"
    if rows and not all(np.isfinite(r).all() for r in rows):
        return "a vector holds NaN or infinity"
    return None


def ranked_shape(ranked: Sequence[tuple[int, float]], count: int, top_k: int | None) -> str | None:
    """Distinct indices into the documents, ``min(top_k, count)`` of them, best first."""
    indices = [i for i, _ in ranked]
    want = count if top_k is None else min(top_k, count)
    if len(indices) != want or len(set(indices)) != want or not all(0 <= i < count for i in indices):
        return f"ranked indices {indices[:10]} for {count} documents and top_k={top_k}"
    scores = [s for _, s in ranked]
    if any(not math.isfinite(s) for s in scores) or any(a < b - 1e-9 for a, b in itertools.pairwise(scores)):
        return f"scores not finite or not best first: {scores[:10]}"
    return None


def entity_shape(text: str, entities: Sequence[tuple[Any, ...]], labels: Sequence[str], threshold: float) -> str | None:
    """Each entity's text is ``text[start:end]``, its label one asked for, its score at least the threshold."""
    for e_text, label, start, end, score in entities:
        if text[start:end] != e_text:
            return f"entity {e_text!r} is not text[{start}:{end}] ({text[start:end]!r})"
        if label not in labels:
            return f"entity label {label!r} was not asked for ({list(labels)})"
        if not (math.isfinite(score) and score >= threshold - 1e-6):
            return f"entity score {score} below the threshold {threshold}"
    return None


# ---------------------------------------------------------------------------------------------- HTTP server
def serve_config(tiny_models: dict[str, Path]) -> str:
    """A TOML config serving the tiny models (what ``sie-agents mcp`` gets as flags) and making them the defaults."""
    entries = "".join(
        f'[[models]]\nid = "{spec.id}"\ntask = "{spec.task}"\npath = "{spec.path}"\n\n'
        for spec in tiny_specs(tiny_models)
    )
    defaults = "".join(f'{task} = "{model}"\n' for task, model in TINY_DEFAULTS.items())
    return entries + "[default_models]\n" + defaults


class ServeProcess:
    """``sie-agents serve`` on a free loopback port with the tiny models (stderr to a log file)."""

    def __init__(self, tiny_models: dict[str, Path], log: Path, *, token: str, extra: Sequence[str] = ()) -> None:
        self.log = log
        self.token = token
        self._file = log.open("wb")
        config = log.with_name("models.toml")
        config.write_text(serve_config(tiny_models), encoding="utf-8")
        command = [sys.executable, "-m", "sie_core", "serve", "--port", "0", "--device", "cpu", "--offline"]
        command += ["--config", str(config), *extra]
        env = server_env(SIE_AUTH_TOKEN=token)
        env.pop("SIE_BASE_URL", None)
        self.proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=self._file, stderr=subprocess.STDOUT, env=env
        )
        self.url = self._wait_listening()
        self.port = int(self.url.rsplit(":", 1)[1])

    def _wait_listening(self, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", self.output())
            if match:
                url = match.group(1)
                while time.monotonic() < deadline:
                    with contextlib.suppress(httpx.TransportError):
                        if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                            return url
                    time.sleep(0.05)
            if self.proc.poll() is not None:
                raise RuntimeError(f"sie-agents serve exited with {self.proc.returncode}:\n{self.output()[-4000:]}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sie-agents serve did not start within {timeout:g} s:\n{self.output()[-4000:]}")

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, wait, return the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._file.close()
        return self.proc.returncode

    def output(self) -> str:
        """What the server logged so far."""
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""


def raw_request(
    port: int, method: str, target: str, headers: dict[str, str], body: bytes, timeout: float = ANSWER_TIMEOUT_S
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request over a plain socket, the target sent byte for byte; returns (status, headers, body)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + body)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ")[1])
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    if parsed.get("transfer-encoding", "").lower() == "chunked":
        rest = _dechunk(rest)
    return status, parsed, rest


def _dechunk(data: bytes) -> bytes:
    out: list[bytes] = []
    pos = 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[end + 2 : end + 2 + size])
        pos = end + 2 + size + 2


# ---------------------------------------------------------------------------------------------- stdio server
class StdioServer:
    """``sie-agents mcp`` over stdio with the tiny models, spoken to in raw lines.

    A reader thread parses every stdout line; lines that are not JSON-RPC messages are kept in
    :attr:`not_json_rpc`. Answers are looked up by id (:meth:`wait_for`) or, for ``"id": null``, in order
    (:meth:`wait_for_null`).
    """

    def __init__(self, tiny_models: dict[str, Path], log: Path) -> None:
        self.log = log
        self._file = log.open("wb")
        command = [sys.executable, "-m", "sie_mcp", *model_flags(tiny_models)]
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._file, env=server_env()
        )
        self.lines: list[bytes] = []
        self.not_json_rpc: list[bytes] = []
        self.by_id: dict[Any, dict[str, Any]] = {}
        self.null_answers: list[dict[str, Any]] = []
        self.duplicates: list[dict[str, Any]] = []
        self._null_taken = 0
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="stdio-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw)
            try:
                message = json.loads(raw)
            except ValueError:
                self.not_json_rpc.append(raw)
                continue
            if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
                self.not_json_rpc.append(raw)
                continue
            if "method" in message and "id" not in message:
                continue  # a notification from the server (progress, log)
            if not ("id" in message and ("result" in message or "error" in message)):
                self.not_json_rpc.append(raw)
                continue
            with self._changed:
                key = _id_key(message["id"])
                if message["id"] is None:
                    self.null_answers.append(message)
                elif key in self.by_id:
                    self.duplicates.append(message)
                else:
                    self.by_id[key] = message
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def send(self, line: str) -> None:
        """Write one line (``surrogatepass`` lets a raw lone surrogate through as the bytes a client would send)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode("utf-8", "surrogatepass") + b"\n")
        self.proc.stdin.flush()

    def wait_for(self, request_id: Any, timeout: float = ANSWER_TIMEOUT_S) -> dict[str, Any] | None:
        """The answer with ``request_id``, or None when none came within ``timeout``."""
        key = _id_key(request_id)
        deadline = time.monotonic() + timeout
        with self._changed:
            while key not in self.by_id:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    return None
                self._changed.wait(left)
            return self.by_id[key]

    def wait_for_null(self, timeout: float = ANSWER_TIMEOUT_S) -> dict[str, Any] | None:
        """The next answer with ``"id": null`` not yet taken, or None."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.null_answers) <= self._null_taken:
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    return None
                self._changed.wait(left)
            self._null_taken += 1
            return self.null_answers[self._null_taken - 1]

    def take_stray_nulls(self, settle: float = 0.0) -> list[dict[str, Any]]:
        """Answers with ``"id": null`` that arrived (within ``settle`` seconds) though none was waited for."""
        if settle:
            time.sleep(settle)
        with self._changed:
            stray = self.null_answers[self._null_taken :]
            self._null_taken = len(self.null_answers)
        return stray

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None

    def close(self, timeout: float = 30.0) -> int:
        """Close stdin (the way a client ends the session), wait for the exit, return its code."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10)
        self._file.close()
        return self.proc.returncode

    def stderr(self) -> str:
        """What the server logged."""
        return self.log.read_text(encoding="utf-8", errors="replace")


def _id_key(value: Any) -> Any:
    # 1 and 1.0 and True are equal dict keys in Python; JSON-RPC ids are not
    return (type(value).__name__, json.dumps(value, sort_keys=True))


# ---------------------------------------------------------------------------------------------- MCP in memory
class LoopClient:
    """An in-memory MCP client session (``tests.sie_mcp.helpers.connect``) on its own event loop thread.

    Every ERROR record the MCP SDK logs while serving (an unexpected exception in a tool) is kept in
    :attr:`crashes`.
    """

    def __init__(self, server: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="mcp-client-loop", daemon=True)
        self._thread.start()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.crashes: list[str] = []
        self._handler = _CrashRecorder(self.crashes)
        logging.getLogger("mcp").addHandler(self._handler)
        self._holder = asyncio.run_coroutine_threadsafe(self._hold(server), self.loop)
        if not self._ready.wait(60):
            raise RuntimeError("the in-memory MCP session did not start")
        if self._holder.done():
            self._holder.result()

    async def _hold(self, server: Any) -> None:
        self._stop = asyncio.Event()
        try:
            async with connect(server) as caller:
                self.caller = caller
                self._ready.set()
                await self._stop.wait()
        finally:
            self._ready.set()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        """Run ``coro`` on the session's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        """End the session and the loop thread."""
        logging.getLogger("mcp").removeHandler(self._handler)
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        with contextlib.suppress(Exception):
            self._holder.result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()


class _CrashRecorder(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(level=logging.ERROR)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        detail = ""
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            cause = exc.__cause__ or exc
            detail = f": {type(cause).__name__}: {cause}"
        self.sink.append(record.getMessage() + detail)


# ---------------------------------------------------------------------------------------------- MCP answers
_TOOL_PREFIX = re.compile(r"^Error executing tool [^:]*(: ?|$)")


def tool_error_problem(text: str) -> str | None:
    """Why a tool error's text is not a clean one: empty, the SDK's bare crash text, or an unshaped message."""
    stripped = _TOOL_PREFIX.sub("", text, count=1).strip()
    if not stripped:
        return f"a tool crashed: its error says only {text!r} (an exception escaped the tool)"
    return message_problem(stripped)


def tool_result_problem(tool: str, arguments: dict[str, Any], structured: Any) -> str | None:
    """Whether a successful tool result fits its arguments (counts, shapes, offsets, order)."""
    if not isinstance(structured, dict):
        return f"no structuredContent: {structured!r:.200}"
    try:
        if tool == "encode":
            return finite_vectors(structured["vectors"], len(arguments["texts"]))
        if tool == "rerank":
            ranked = [(r["index"], r["score"]) for r in structured["results"]]
            return ranked_shape(ranked, len(arguments["documents"]), arguments.get("top_k"))
        if tool == "extract":
            texts = [arguments["text"]] if arguments.get("text") is not None else list(arguments["texts"])
            labels = arguments["labels"]
            labels = [labels] if isinstance(labels, str) else list(labels)
            if len(structured["results"]) != len(texts):
                return f"{len(structured['results'])} results for {len(texts)} texts"
            for text, result in zip(texts, structured["results"]):
                found = [(e["text"], e["label"], e["start"], e["end"], e["score"]) for e in result["entities"]]
                problem = entity_shape(text, found, labels, float(arguments.get("threshold", 0.5)))
                if problem:
                    return problem
            return None
        if tool == "list_models":
            return None if isinstance(structured["models"], list) else "models is not a list"
    except (KeyError, TypeError, ValueError) as exc:
        return f"unexpected result shape ({type(exc).__name__}: {exc}): {structured!r:.300}"
    return f"unknown tool {tool!r} answered with a result"


def check_tool_answer(reference: Reference, call: Call, structured: Any) -> str | None:
    """A valid tool call's structuredContent against the reference."""
    try:
        if isinstance(call, EncodeCall):
            return check_vectors(reference.get(call), structured["vectors"])
        if isinstance(call, ScoreCall):
            return check_scores(reference.get(call), [(r["index"], r["score"]) for r in structured["results"]])
        entities = structured["results"][0]["entities"]
        found = [(e["text"], e["label"], e["start"], e["end"], e["score"]) for e in entities]
        return check_entities(reference.get(call), found)
    except (KeyError, TypeError, IndexError) as exc:
        return f"unexpected result shape ({type(exc).__name__}: {exc}): {structured!r:.300}"


def text_of(result: dict[str, Any]) -> str:
    """The text parts of a tool result."""
    return "\n".join(c.get("text", "") for c in result.get("content") or [] if c.get("type") == "text")


def judge_tool(
    reference: Reference | None, tool: str, arguments: Any, verdict: Any, result: Any, call: Any
) -> str | None:
    """Why a ``tools/call`` result breaks the specification (None when it does not).

    Args:
        reference: The reference answers (for ``call``).
        tool: The tool called.
        arguments: Its arguments.
        verdict: What the arguments require (:class:`corpus.Verdict`).
        result: The result in wire form (``isError``, ``content``, ``structuredContent``).
        call: The valid call these arguments are, if they are one (its answer must equal the reference).
    """
    from .corpus import Verdict

    is_error = result.get("isError")
    if is_error:
        problem = tool_error_problem(text_of(result))
        if problem:
            return problem
        if verdict is Verdict.VALID:
            return f"a valid call was refused: {text_of(result)[:300]!r}"
        return None
    if verdict is Verdict.INVALID:
        return f"invalid arguments were accepted: {text_of(result)[:200]!r}"
    structured = result.get("structuredContent")
    if call is not None and reference is not None:
        return check_tool_answer(reference, call, structured)
    return tool_result_problem(tool, arguments, structured)
