"""What every HTTP route shares: settings, body decoding, answers, errors, request ids, and running engine calls.

Routes stay thin: decode the body, validate it with its typed body model (:mod:`sie_core.requests`), call
the engine through :func:`run_call`, shape the result. :func:`run_call` adds what HTTP needs around an
engine call:

* **Cold models.** A model that is not loaded is loaded first, and the request waits for it up to
  ``load_wait_s``. A load that takes longer (a download, a big model) answers ``503 MODEL_LOADING`` with
  ``Retry-After`` while the load goes on; SIE's client retries that by itself, so a caller only sees a slower
  first call, and no request is held open past the client's read timeout.
* **Disconnects.** If the client goes away while its request waits or runs, the engine call is cancelled,
  which drops its queued items from the model's batch queue.
* **Shutdown.** When the server stops and the graceful period is nearly over, calls still waiting are
  cancelled and answer ``503 SHUTTING_DOWN`` (with ``Retry-After``), never a bare 500 or a dropped socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from sie_core import Engine, InvalidInputError, ModelLoadingError, SieError, UnknownModelError
from sie_core.wire import ERROR_CODE_HEADER, JSON, MSGPACK, error_body, packb, unpackb

__all__ = [
    "ClientGoneError",
    "HttpState",
    "MethodNotAllowedError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RequestIdFilter",
    "RequestTimeoutError",
    "ServerSettings",
    "ShuttingDownError",
    "UnauthorizedError",
    "dumps",
    "error_response",
    "read_body",
    "request_id_var",
    "respond",
    "refuse_placement",
    "run_call",
    "still_loading",
]

logger = logging.getLogger("sie_server.http")
T = TypeVar("T")

#: The id of the request being served (``X-Request-ID``), for log lines; None outside a request.
request_id_var: ContextVar[str | None] = ContextVar("sie_request_id", default=None)
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


@dataclass(frozen=True)
class ServerSettings:
    """How ``sie-agents serve`` serves.

    Attributes:
        host: Interface to bind; 127.0.0.1 (this machine only) unless told otherwise.
        port: TCP port (0 picks a free one).
        auth_token: When set, every route but the health checks and the pages needs
            ``Authorization: Bearer <token>``.
        max_body_bytes: Largest request body accepted (413 beyond it).
        load_wait_s: How long a request waits for a cold model to load before answering 503 MODEL_LOADING.
        loading_retry_after_s: ``Retry-After`` sent with MODEL_LOADING.
        mcp: Mount the MCP streamable-HTTP endpoint at ``/mcp``.
        graceful_timeout_s: On SIGTERM, how long in-flight requests may take to finish; calls still waiting
            shortly before it ends answer 503 SHUTTING_DOWN.
        preload: Models to load at start-up; ``/readyz`` answers 503 until they are loaded.
        keep_alive_timeout_s: An idle connection (a new one that sends nothing, or one between requests) is
            closed after this long.
        header_timeout_s: Most time a client may take to send a request's headers (408, then closed).
        body_timeout_s: Most time a client may take to send a request's body, from the end of its headers
            (408, then closed).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    auth_token: str | None = field(default=None, repr=False)
    max_body_bytes: int = 16 * 1024 * 1024
    load_wait_s: float = 20.0
    loading_retry_after_s: float = 2.0
    mcp: bool = True
    graceful_timeout_s: float = 30.0
    preload: tuple[str, ...] = ()
    keep_alive_timeout_s: float = 5.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0


class HttpState:
    """Per-app state the routes reach through ``request.app.state.sie``."""

    def __init__(self, engine: Engine, settings: ServerSettings, metrics: Any) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.ready = False
        self.draining = False
        self.started = time.monotonic()
        self.preload_errors: dict[str, str] = {}
        self.http_requests = 0
        self.http_errors = 0
        self.in_flight = 0
        self._abort: asyncio.Event | None = None

    def abort_event(self) -> asyncio.Event:
        """Set when calls still waiting must give up (the end of the graceful shutdown period)."""
        if self._abort is None:
            self._abort = asyncio.Event()
        return self._abort

    def abort_waiting_calls(self) -> None:
        """Make every engine call still waiting answer 503 SHUTTING_DOWN (call on the server's loop)."""
        self.draining = True
        self.abort_event().set()


def state_of(request: Request) -> HttpState:
    """The app's :class:`HttpState`."""
    return request.app.state.sie


# ---------------------------------------------------------------------- errors of the HTTP layer
class PayloadTooLargeError(SieError):
    """The request body is larger than the server accepts."""

    code = "PAYLOAD_TOO_LARGE"
    status = 413


class UnauthorizedError(SieError):
    """The request has no valid bearer token."""

    code = "UNAUTHORIZED"
    status = 401


class NotFoundError(SieError):
    """No route has this path."""

    code = "NOT_FOUND"
    status = 404


class MethodNotAllowedError(SieError):
    """The route exists but not with this HTTP method."""

    code = "METHOD_NOT_ALLOWED"
    status = 405

    def __init__(self, message: str, *, allow: str) -> None:
        super().__init__(message)
        self.allow = allow


class RequestTimeoutError(SieError):
    """The client took too long to send its request."""

    code = "REQUEST_TIMEOUT"
    status = 408


class ShuttingDownError(SieError):
    """The server is stopping; the call was cancelled before it finished."""

    code = "SHUTTING_DOWN"
    status = 503


class ClientGoneError(Exception):
    """The client disconnected before its answer was ready; its work was cancelled."""


# ---------------------------------------------------------------------- request ids in log lines
def new_request_id(client_value: str | None) -> str:
    """The client's ``X-Request-ID`` if it is a plain token (letters, digits, ``._:-``; at most 128), else a new one."""
    if client_value and _CLIENT_REQUEST_ID.fullmatch(client_value):
        return client_value
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """A handler filter that prefixes log lines written while serving a request with ``[<request id>]``.

    ``sie-agents serve`` installs it on the root logger's handlers; an app that embeds :func:`create_app`
    can do the same (``handler.addFilter(RequestIdFilter())``). Records also get a ``request_id`` attribute
    for formats that want it (``%(request_id)s``; ``-`` outside a request).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Tag ``record`` (never drops it)."""
        if getattr(record, "request_id", None) is not None:
            return True  # tagged already (a record passes each handler's filter)
        request_id = request_id_var.get()
        record.request_id = request_id or "-"
        if request_id:
            record.msg = f"[{request_id}] {record.msg}"
        return True


def install_request_id_logging(logger_: logging.Logger | None = None) -> None:
    """Add a :class:`RequestIdFilter` to every handler of ``logger_`` (the root logger by default)."""
    target = logger_ or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())


# ---------------------------------------------------------------------- bodies
_MSGPACK_TYPES = (MSGPACK, "application/x-msgpack", "application/vnd.msgpack")


async def read_body(request: Request) -> dict[str, Any]:
    """The request body as a dict, from MessagePack or JSON (an empty body is ``{}``).

    Raises:
        InvalidInputError: Not decodable, nested too deeply, not an object, or an unsupported content type.
        ClientGoneError: The client disconnected before the body was complete.
    """
    try:
        raw = await request.body()
    except ClientDisconnect:
        raise ClientGoneError() from None
    if not raw:
        return {}
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type in _MSGPACK_TYPES:
        try:
            data = unpackb(raw, arrays=False)
        except ValueError as exc:
            raise InvalidInputError(f"the request body is {exc}") from None
    elif content_type in (JSON, "", "text/plain") or content_type.endswith("+json"):
        try:
            data = json.loads(raw)
        except RecursionError:
            raise InvalidInputError(
                "the request body is JSON nested too deeply (about 1,000 levels or more); request bodies nest a "
                "few levels: items, params, options"
            ) from None
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise InvalidInputError(f"the request body is not valid JSON: {exc}") from None
    else:
        raise InvalidInputError(
            f"content type {content_type!r} is not supported; send application/json or application/msgpack"
        )
    if not isinstance(data, dict):
        raise InvalidInputError(f"the request body must be an object (a map), not {_kind(data)}")
    return data


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), f"a {type(value).__name__}"
    )


def wants_msgpack(request: Request) -> bool:
    """Whether to answer in MessagePack: asked for in Accept, or the request came as MessagePack."""
    accept = request.headers.get("accept", "")
    if "msgpack" in accept:
        return True
    if JSON in accept:
        return False
    return "msgpack" in request.headers.get("content-type", "")


def respond(request: Request, body: Any, *, msgpack: bool | None = None, status: int = 200) -> Response:
    """Answer with ``body`` in MessagePack (numpy arrays kept) or JSON."""
    use_msgpack = wants_msgpack(request) if msgpack is None else msgpack
    if use_msgpack:
        try:
            packed = packb(body)
        except UnicodeEncodeError:  # a lone surrogate echoed from the request (an item id, say)
            packed = packb(_escape_surrogates(body))
        return Response(packed, status_code=status, media_type=MSGPACK)
    return Response(dumps(body), status_code=status, media_type=JSON)


def dumps(body: Any) -> bytes:
    r"""Compact UTF-8 JSON; lone surrogates (which UTF-8 cannot carry) are written as the text ``\udXXX``."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(_escape_surrogates(body), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_SURROGATE = re.compile("[\ud800-\udfff]")


def escape_surrogates(text: str) -> str:
    r"""``text`` with each lone surrogate replaced by the six characters of its escape, ``\ud800``."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _escape_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return escape_surrogates(value)
    if isinstance(value, dict):
        return {_escape_surrogates(k): _escape_surrogates(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_escape_surrogates(v) for v in value]
    return value


def error_response(exc: SieError, headers: dict[str, str] | None = None) -> Response:
    """The error envelope for ``exc``, with ``X-SIE-Error-Code`` and, where a retry helps, ``Retry-After``."""
    body = error_body(exc)
    body["error"]["type"] = "invalid_request_error" if exc.status < 500 else "server_error"  # OpenAI clients
    out = {ERROR_CODE_HEADER: exc.code, **(headers or {})}
    if exc.retry_after is not None:
        out["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    if isinstance(exc, UnauthorizedError):
        out["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, MethodNotAllowedError):
        out["Allow"] = exc.allow
    return Response(dumps(body), status_code=exc.status, media_type=JSON, headers=out)


# ---------------------------------------------------------------------- running engine calls
async def run_call(request: Request, model: str | None, task: str, call: Callable[[], Awaitable[T]]) -> T:
    """Run an engine call for ``model``: wait (bounded) for a cold model, cancel if the client goes away.

    Raises:
        ModelLoadingError: The model is still loading after ``load_wait_s``.
        ClientGoneError: The client disconnected; the call was cancelled.
        ShuttingDownError: The server is stopping and its graceful period is nearly over.
        SieError: Whatever the engine raised.
    """
    state = state_of(request)
    refuse_placement(request)

    async def work() -> T:
        if model is not None:
            await _ensure_loaded(state, model, task)
        return await call()

    state.in_flight += 1
    try:
        return await until_disconnect(request, work())
    finally:
        state.in_flight -= 1


def refuse_placement(request: Request) -> None:
    """Refuse SIE's ``gpu=`` routing (machine profiles, resource pools): one server has one device, no pools.

    SIE's client sends ``gpu="pool/profile"`` as ``X-SIE-Pool`` and ``X-SIE-MACHINE-PROFILE``, a cluster
    gateway's routing keys. Serving the call anyway would answer from hardware the caller did not ask for.
    """
    profile = request.headers.get("X-SIE-MACHINE-PROFILE", "")
    pool = request.headers.get("X-SIE-Pool", "")
    if profile or pool:
        gpu = escape_surrogates(f"{pool}/{profile}" if pool else profile)
        raise InvalidInputError(
            f"gpu={gpu!r} picks a machine profile or resource pool of an SIE cluster; this server runs each model on "
            "its own configured device and has no profiles or pools: leave gpu= unset"
        )


def still_loading(model: str, waited_s: float, retry_after_s: float) -> ModelLoadingError:
    """The ``MODEL_LOADING`` error for a request that waited ``waited_s`` for ``model``'s load in vain."""
    return ModelLoadingError(
        f"model {model!r} is still loading (waited {waited_s:g} s); retry in {retry_after_s:g} s — SIE clients "
        "retry by themselves",
        retry_after=retry_after_s,
    )


async def _ensure_loaded(state: HttpState, model: str, task: str) -> None:
    engine = state.engine
    if engine.remote or not model.strip():
        return  # a remote engine's server (or replica) waits for its own loads; a bad id fails in the call
    try:
        if engine.model_state(model) == "loaded":
            return
    except RuntimeError:  # the state changed under us while reading it; just take the load path
        pass
    wait = state.settings.load_wait_s
    try:
        await asyncio.wait_for(engine.aload(model, task), timeout=wait)
    except (UnknownModelError, InvalidInputError):
        return  # cheap and certain to repeat: let the call raise it, so the engine counts the failed request
    except asyncio.TimeoutError:
        raise still_loading(model, wait, state.settings.loading_retry_after_s) from None


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` unless the client disconnects or the server gives up on waiting calls first.

    Raises:
        ClientGoneError: The client disconnected; ``work`` was cancelled.
        ShuttingDownError: The server's graceful period is nearly over; ``work`` was cancelled.
    """
    state = state_of(request)
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    aborted = asyncio.ensure_future(state.abort_event().wait())
    others = (watcher, aborted)
    try:
        await asyncio.wait({task, *others}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        for t in (task, *others):
            t.cancel()
        await asyncio.gather(task, *others, return_exceptions=True)
        raise
    for t in others:
        t.cancel()
    if task.done():
        await asyncio.gather(*others, return_exceptions=True)
        return task.result()
    task.cancel()
    await asyncio.gather(task, *others, return_exceptions=True)  # whatever it ended with goes nowhere
    if aborted.done() and not aborted.cancelled():
        raise ShuttingDownError(
            "the server is shutting down and this call did not finish within its graceful period; retry it "
            "(on another replica or once the server is back)",
            retry_after=1.0,
        )
    raise ClientGoneError()


async def _disconnected(request: Request) -> None:
    # The body has been read, so the next ASGI message can only be the disconnect.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
