"""The one ASGI app of ``sie-agents serve``: SIE API, OpenAI API, MCP at ``/mcp``, pages, health and metrics.

Every route shares one :class:`~sie_core.Engine`, so SIE clients, OpenAI clients and MCP clients share its
loaded models and its batches. A pure-ASGI guard in front of everything

* checks the bearer token (every route but the health checks and the pages; the scheme is case-insensitive),
* enforces the body size limit and the time a client may take to send its body,
* tags the request with an id (``X-Request-ID``: the client's, or a new one) that its log lines carry,
* adds ``X-SIE-Server-Version`` to every answer and the timing headers to inference answers (with
  ``X-SIE-Worker`` when the backend says which of its workers served the call),
* answers anything that escaped a route with the error envelope, and counts answers per route.

>>> app = create_app(Engine(), ServerSettings(auth_token="s3cret"))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sie_core import Engine, InvalidInputError, SieError, __version__
from sie_core.timing import RequestTiming, current_timing

from . import openai_routes, pages, sie_routes
from .common import (
    ClientGoneError,
    HttpState,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServerSettings,
    ShuttingDownError,
    UnauthorizedError,
    dumps,
    error_response,
    escape_surrogates,
    new_request_id,
    request_id_var,
    state_of,
)
from .metrics import CONTENT_TYPE_LATEST, EngineMetrics, route_label

__all__ = ["McpMount", "ServerSettings", "create_app"]

logger = logging.getLogger("sie_server.http")

#: Routes that answer without a token: health probes, and the pages and API description (they hold no data;
#: the status page asks for the token before it reads any).
OPEN_PATHS = frozenset({"/healthz", "/health", "/readyz", "/", "/docs", "/openapi.json"})
OPEN_PREFIXES = ("/docs/assets/",)
#: Routes whose answers carry X-Total-Time (and X-Queue-Time / X-Inference-Time when the engine measured them).
INFERENCE_PREFIXES = ("/v1/encode/", "/v1/score/", "/v1/extract/", "/v1/embeddings", "/v1/rerank")
#: Status label for requests whose client went away before the answer (nginx's "client closed request").
CLIENT_CLOSED = 499

#: An ASGI app for /mcp and the context manager that must run around it (its session manager).
McpMount = tuple[ASGIApp, Callable[[], AbstractAsyncContextManager[Any]] | None]


def create_app(
    engine: Engine,
    settings: ServerSettings | None = None,
    *,
    mcp: McpMount | None = None,
    metrics: EngineMetrics | None = None,
    close_engine: bool = False,
) -> Starlette:
    """Build the app.

    Args:
        engine: The engine every route uses.
        settings: Server settings (auth token, body limit and timeouts, cold-load wait, preloads).
        mcp: The MCP streamable-HTTP app to mount at ``/mcp`` and its lifespan, if any.
        metrics: Metrics to report into; a new :class:`EngineMetrics` (registered on ``engine``) by default.
        close_engine: Close the engine when the app shuts down (after in-flight requests drained).
    """
    settings = settings or ServerSettings()
    if metrics is None:
        metrics = EngineMetrics()
        engine.add_listener(metrics)
    state = HttpState(engine, settings, metrics)

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/health", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
        *sie_routes.routes,
        *openai_routes.routes,
        *pages.routes,
    ]
    mcp_lifespan = None
    if mcp is not None:
        mcp_app, mcp_lifespan = mcp
        # An ASGI app as a Route endpoint gets the scope untouched: the MCP app routes /mcp itself.
        routes.append(Route("/mcp", endpoint=mcp_app))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if mcp_lifespan is not None:
                await stack.enter_async_context(mcp_lifespan())
            preloading = asyncio.ensure_future(_preload(state))
            try:
                yield
            finally:
                state.draining = True
                preloading.cancel()
                await asyncio.gather(preloading, return_exceptions=True)
                if close_engine:
                    await engine.aclose()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            SieError: _sie_error,
            HTTPException: _http_error,
            ClientGoneError: _client_gone,
            ClientDisconnect: _client_gone,
            RecursionError: _too_deep,
        },
    )
    app.router.redirect_slashes = False  # /v1/encode (no model) is a 404 envelope, not a 307 to /v1/encode/
    app.state.sie = state
    app.state.mcp = mcp is not None
    app.add_middleware(_Guard, state=state)
    return app


async def _preload(state: HttpState) -> None:
    for model in state.settings.preload:
        try:
            info = await state.engine.aload(model)
            logger.info("preloaded %s (%s)", info.id, ",".join(info.tasks))
        except SieError as exc:
            state.preload_errors[model] = exc.message
            logger.error("could not preload %s: %s", model, exc)
    state.ready = True


# ---------------------------------------------------------------------- ops routes
def _json(body: Any, status: int = 200) -> Response:
    return Response(dumps(body), status_code=status, media_type="application/json")


async def healthz(request: Request) -> Response:
    """The process is up (no token needed)."""
    return _json({"status": "ok", "type": "worker"})


def readiness(state: HttpState) -> tuple[str, int]:
    """``ready`` / ``starting`` / ``draining`` and the status code ``/readyz`` answers with."""
    if state.draining or state.engine.closed:
        return "draining", 503
    if not state.ready:
        return "starting", 503
    return "ready", 200


async def readyz(request: Request) -> Response:
    """Ready to serve: started, preloads done, not shutting down (no token needed)."""
    state = state_of(request)
    status, code = readiness(state)
    body: dict[str, Any] = {"status": status}
    if state.preload_errors:
        body["preload_errors"] = state.preload_errors
    return _json(body, code)


async def metrics_route(request: Request) -> Response:
    """Prometheus metrics."""
    state = state_of(request)
    return Response(await state.metrics.render(state.engine), media_type=CONTENT_TYPE_LATEST)


# ---------------------------------------------------------------------- errors
async def _sie_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SieError)
    if isinstance(exc, ShuttingDownError):
        logger.info("%s %s -> %s", request.method, request.url.path, exc.code)
    elif exc.status >= 500:
        logger.warning("%s %s -> %s: %s", request.method, request.url.path, exc.code, exc.message)
    headers = {"Connection": "close"} if isinstance(exc, (RequestTimeoutError, PayloadTooLargeError)) else None
    return error_response(exc, headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 / 405 (and any other HTTPException), in the error envelope."""
    assert isinstance(exc, HTTPException)
    path = escape_surrogates(request.url.path)
    error: SieError
    if exc.status_code == 404 and request.url.path.startswith("/v1/pools"):
        error = NotFoundError(
            f"no route {request.method} {path}: resource pools (SIEClient.create_pool, gpu='pool/profile') belong to "
            "an SIE cluster's gateway; this server has no pools and runs each model on its own configured device"
        )
    elif exc.status_code == 404:
        error = NotFoundError(
            f"no route {request.method} {path}; the routes are listed at /docs and /openapi.json "
            "(SIE: /v1/encode|score|extract/{model}, /v1/models; OpenAI: /v1/embeddings; /v1/rerank)"
        )
    elif exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        error = MethodNotAllowedError(
            f"{path} does not take {request.method}; it allows {allow or 'no method'}", allow=allow
        )
    else:
        code = "BAD_REQUEST" if exc.status_code < 500 else "INTERNAL"
        cls = type("HttpError", (SieError,), {"code": code, "status": exc.status_code})
        error = cls(f"{exc.detail} ({request.method} {path})")
    return error_response(error)


async def _client_gone(request: Request, exc: Exception) -> Response:
    logger.info("%s %s: client disconnected; its work was cancelled", request.method, request.url.path)
    return Response(status_code=CLIENT_CLOSED)


async def _too_deep(request: Request, exc: Exception) -> Response:
    # Only deeply nested input makes request handling recurse this far (the body decoders catch the common
    # case); answer it as the client's mistake, not as a crash.
    logger.info("%s %s: input nested too deeply (%s)", request.method, request.url.path, exc)
    return error_response(
        InvalidInputError("the request nests arrays or objects too deeply; request bodies nest a few levels")
    )


def _internal(scope: Scope, exc: BaseException) -> Response:
    logger.error("%s %s failed: %r", scope.get("method"), scope.get("path"), exc, exc_info=exc)
    body = {
        "error": {
            "code": "INTERNAL",
            "message": f"internal server error ({type(exc).__name__}); see the server log",
            "type": "server_error",
        }
    }
    return Response(
        dumps(body), status_code=500, media_type="application/json", headers={"X-SIE-Error-Code": "INTERNAL"}
    )


# ---------------------------------------------------------------------- guard
class _Guard:
    """Auth, body limit and deadline, request ids, observability headers, last-resort errors, counting."""

    def __init__(self, app: ASGIApp, state: HttpState) -> None:
        self.app = app
        self.state = state
        token = state.settings.auth_token
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        path: str = scope["path"]
        headers = _headers(scope)
        request_id = new_request_id(headers.get(b"x-request-id", b"").decode("latin-1"))
        inference = path.startswith(INFERENCE_PREFIXES)
        timing = RequestTiming() if inference else None
        status = 0

        async def tagged_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [(b"x-request-id", request_id.encode()), (b"x-sie-server-version", __version__.encode())]
                if timing is not None:
                    extra.append((b"x-total-time", _ms(time.monotonic() - started)))
                    if timing.queue_s is not None:
                        extra.append((b"x-queue-time", _ms(timing.queue_s)))
                    if timing.inference_s is not None:
                        extra.append((b"x-inference-time", _ms(timing.inference_s)))
                    if timing.worker is not None:
                        extra.append((b"x-sie-worker", timing.worker.encode("latin-1", "replace")))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        id_token = request_id_var.set(request_id)
        timing_token = current_timing.set(timing)
        try:
            if self.token is not None and not self._open(path) and not self._authorized(headers):
                error = UnauthorizedError(
                    "this server needs 'Authorization: Bearer <token>' (the token given to `sie-agents serve` with "
                    "--auth-token or SIE_AUTH_TOKEN)"
                )
                await error_response(error)(scope, receive, tagged_send)
                return
            limit = self.state.settings.max_body_bytes
            declared = _content_length(headers)
            if declared is not None and declared > limit:
                too_large = error_response(_too_large(declared, limit), {"Connection": "close"})
                await too_large(scope, receive, tagged_send)
                return
            deadline = started + self.state.settings.body_timeout_s
            try:
                await self.app(scope, _guarded_receive(receive, limit, deadline), tagged_send)
            except Exception as exc:  # a route bug: one log line with the traceback, the envelope for the client
                if status:
                    raise  # the answer had started; nothing sensible can be sent any more
                await _internal(scope, exc)(scope, receive, tagged_send)
        finally:
            current_timing.reset(timing_token)
            request_id_var.reset(id_token)
            self._count(path, status)

    def _count(self, path: str, status: int) -> None:
        if status == 0:
            status = CLIENT_CLOSED  # nothing was sent: the client went away (or the task was cancelled)
        self.state.http_requests += 1
        if status >= 400 and status != CLIENT_CLOSED:
            self.state.http_errors += 1
        label = "client_closed" if status == CLIENT_CLOSED else str(status)
        self.state.metrics.count_http(route_label(path), label)

    @staticmethod
    def _open(path: str) -> bool:
        return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        value = headers.get(b"authorization")
        if value is None or self.token is None:
            return False
        scheme, _, credentials = value.strip().partition(b" ")
        # RFC 7235: the auth scheme is case-insensitive ("bearer", "BEARER"); the token itself is not.
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.token)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        out.setdefault(name, value)
    return out


def _ms(seconds: float) -> bytes:
    return f"{seconds * 1000:.2f}".encode()


def _content_length(headers: dict[bytes, bytes]) -> int | None:
    value = headers.get(b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _too_large(size: int, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the request body has {size:,} bytes or more; at most {limit:,} are accepted (send fewer items per "
        "request, or start the server with a larger --max-body-mb)"
    )


def _guarded_receive(receive: Receive, limit: int, deadline: float) -> Receive:
    """``receive`` with the body size limit and the body deadline (both end with the body's last chunk)."""
    seen = 0
    complete = False

    async def wrapped() -> Message:
        nonlocal seen, complete
        if complete:
            return await receive()  # after the body: only the disconnect is left to wait for, without limit
        remaining = deadline - time.monotonic()
        try:
            message = await asyncio.wait_for(receive(), timeout=max(0.0, remaining))
        except asyncio.TimeoutError:
            raise RequestTimeoutError(
                "the request body did not arrive in time (it must be sent within the server's --body-timeout "
                "of its headers); send it at once"
            ) from None
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(seen, limit)
            complete = not message.get("more_body", False)
        else:
            complete = True
        return message

    return wrapped
