"""What every HTTP route shares: settings, body decoding, answers, errors, and running an engine call.

Routes stay thin: decode and check the body, call the engine through :func:`run_call`, shape the result.
:func:`run_call` adds the two things HTTP needs around an engine call:

* **Cold models.** A model that is not loaded is loaded first, and the request waits for it up to
  ``load_wait_s``. A load that takes longer (a download, a big model) answers ``503 MODEL_LOADING`` with
  ``Retry-After`` while the load goes on; SIE's client retries that by itself, so a caller only sees a slower
  first call, and no request is held open past the client's read timeout.
* **Disconnects.** If the client goes away while its request waits or runs, the engine call is cancelled,
  which drops its queued items from the model's batch queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from sie_core import Engine, InvalidInputError, ModelLoadingError, SieError, UnknownModelError
from sie_core.wire import ERROR_CODE_HEADER, JSON, MSGPACK, error_body, packb, unpackb

__all__ = [
    "ClientGoneError",
    "HttpState",
    "PayloadTooLargeError",
    "ServerSettings",
    "UnauthorizedError",
    "error_response",
    "read_body",
    "respond",
    "run_call",
]

logger = logging.getLogger("sie_mcp.http")
T = TypeVar("T")


@dataclass(frozen=True)
class ServerSettings:
    """How ``sie-agents serve`` serves.

    Attributes:
        host: Interface to bind; 127.0.0.1 (this machine only) unless told otherwise.
        port: TCP port (0 picks a free one).
        auth_token: When set, every route but the health checks needs ``Authorization: Bearer <token>``.
        max_body_bytes: Largest request body accepted (413 beyond it).
        load_wait_s: How long a request waits for a cold model to load before answering 503 MODEL_LOADING.
        loading_retry_after_s: ``Retry-After`` sent with MODEL_LOADING.
        mcp: Mount the MCP streamable-HTTP endpoint at ``/mcp``.
        graceful_timeout_s: On SIGTERM, how long in-flight requests may take to finish.
        preload: Models to load at start-up; ``/readyz`` answers 503 until they are loaded.
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


class HttpState:
    """Per-app state the routes reach through ``request.app.state.sie``."""

    def __init__(self, engine: Engine, settings: ServerSettings, metrics: Any) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.ready = False
        self.draining = False
        self.preload_errors: dict[str, str] = {}


def state_of(request: Request) -> HttpState:
    """The app's :class:`HttpState`."""
    return request.app.state.sie


class PayloadTooLargeError(SieError):
    """The request body is larger than the server accepts."""

    code = "PAYLOAD_TOO_LARGE"
    status = 413


class UnauthorizedError(SieError):
    """The request has no valid bearer token."""

    code = "UNAUTHORIZED"
    status = 401


class ClientGoneError(Exception):
    """The client disconnected before its answer was ready; its work was cancelled."""


# ---------------------------------------------------------------------- bodies
async def read_body(request: Request) -> dict[str, Any]:
    """The request body as a dict, from MessagePack or JSON (an empty body is ``{}``).

    Raises:
        InvalidInputError: Not decodable, not an object, or an unsupported content type.
    """
    raw = await request.body()
    if not raw:
        return {}
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    try:
        if content_type in (MSGPACK, "application/x-msgpack", "application/vnd.msgpack"):
            data = unpackb(raw, arrays=False)
        elif content_type in (JSON, "", "text/plain") or content_type.endswith("+json"):
            data = json.loads(raw)
        else:
            raise InvalidInputError(
                f"content type {content_type!r} is not supported; send application/msgpack or application/json"
            )
    except ValueError as exc:
        if isinstance(exc, InvalidInputError):
            raise
        kind = "MessagePack" if "msgpack" in content_type else "JSON"
        raise InvalidInputError(f"the request body is not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"the request body must be an object (a map), not a {type(data).__name__}")
    return data


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
        return Response(packb(body), status_code=status, media_type=MSGPACK)
    return Response(dumps(body), status_code=status, media_type=JSON)


def dumps(body: Any) -> bytes:
    """Compact JSON."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def error_response(exc: SieError) -> Response:
    """The error envelope for ``exc``, with ``X-SIE-Error-Code`` and, where a retry helps, ``Retry-After``."""
    body = error_body(exc)
    body["error"]["type"] = "invalid_request_error" if exc.status < 500 else "server_error"  # OpenAI clients
    headers = {ERROR_CODE_HEADER: exc.code}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    if isinstance(exc, UnauthorizedError):
        headers["WWW-Authenticate"] = "Bearer"
    return Response(dumps(body), status_code=exc.status, media_type=JSON, headers=headers)


# ---------------------------------------------------------------------- small checks for routes
def mapping(value: Any, name: str) -> Mapping[str, Any]:
    """``value`` as a mapping (None is empty)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{name} must be an object, not a {type(value).__name__}")
    return value


def only_keys(value: Mapping[str, Any], allowed: set[str], name: str) -> None:
    """Reject keys this server does not act on, instead of silently ignoring them."""
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise InvalidInputError(
            f"{name} has unsupported field(s) {', '.join(unknown)}; supported: {', '.join(sorted(allowed))}"
        )


# ---------------------------------------------------------------------- running engine calls
async def run_call(request: Request, model: str, task: str, call: Callable[[], Awaitable[T]]) -> T:
    """Run an engine call for ``model``: wait (bounded) for a cold model, cancel if the client goes away.

    Raises:
        ModelLoadingError: The model is still loading after ``load_wait_s``.
        ClientGoneError: The client disconnected; the call was cancelled.
        SieError: Whatever the engine raised.
    """
    state = state_of(request)

    async def work() -> T:
        await _ensure_loaded(state, model, task)
        return await call()

    return await until_disconnect(request, work())


async def _ensure_loaded(state: HttpState, model: str, task: str) -> None:
    engine = state.engine
    if engine.config.base_url is not None or not isinstance(model, str) or not model.strip():
        return  # a remote engine waits on its own server; a bad id fails in the call with a clear message
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
        retry = state.settings.loading_retry_after_s
        raise ModelLoadingError(
            f"model {model!r} is still loading (waited {wait:g} s); retry in {retry:g} s — SIE clients retry "
            "by themselves",
            retry_after=retry,
        ) from None


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` unless the client disconnects first; then cancel it and raise :class:`ClientGoneError`."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        watcher.cancel()
        raise
    if task.done():
        watcher.cancel()
        return task.result()
    if watcher.exception() is not None:  # pragma: no cover - receive() failed; treat the client as gone
        logger.debug("receive failed while waiting: %r", watcher.exception())
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and getattr(current, "cancelling", lambda: 0)():
            raise  # this handler itself is being cancelled (server shutdown): let that through
    except Exception:  # whatever the call ended with goes nowhere: nobody listens any more
        pass
    raise ClientGoneError()


async def _disconnected(request: Request) -> None:
    # The body has been read, so the next ASGI message can only be the disconnect.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
