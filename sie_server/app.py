"""The one ASGI app of ``sie-agents serve``: SIE API, OpenAI API, MCP at ``/mcp``, health and metrics.

Every route shares one :class:`~sie_core.Engine`, so SIE clients, OpenAI clients and MCP clients share its
loaded models and its batches. A pure-ASGI guard in front of everything checks the bearer token (every route
but the health checks), enforces the body size limit and counts answers per route.

>>> app = create_app(Engine(), ServerSettings(auth_token="s3cret"))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sie_core import Engine, SieError

from . import openai_api, sie_api
from .http_common import (
    ClientGoneError,
    HttpState,
    PayloadTooLargeError,
    ServerSettings,
    UnauthorizedError,
    dumps,
    error_response,
    state_of,
)
from .metrics import CONTENT_TYPE_LATEST, EngineMetrics, route_label

__all__ = ["McpMount", "ServerSettings", "create_app"]

logger = logging.getLogger("sie_mcp.http")

#: Routes that answer without a token (orchestrators probe them).
OPEN_PATHS = frozenset({"/healthz", "/health", "/readyz"})

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
        settings: Server settings (auth token, body limit, cold-load wait, preloads).
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
        *sie_api.routes,
        *openai_api.routes,
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
                if close_engine:
                    await engine.aclose()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            SieError: _sie_error,
            ClientGoneError: _client_gone,
            Exception: _internal_error,
        },
    )
    app.state.sie = state
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
async def healthz(request: Request) -> Response:
    """The process is up (no token needed)."""
    return Response(dumps({"status": "ok", "type": "worker"}), media_type="application/json")


async def readyz(request: Request) -> Response:
    """Ready to serve: started, preloads done, not shutting down (no token needed)."""
    state = state_of(request)
    if state.draining or state.engine.closed:
        status, code = "draining", 503
    elif not state.ready:
        status, code = "starting", 503
    else:
        status, code = "ready", 200
    body: dict[str, Any] = {"status": status}
    if state.preload_errors:
        body["preload_errors"] = state.preload_errors
    return Response(dumps(body), status_code=code, media_type="application/json")


async def metrics_route(request: Request) -> Response:
    """Prometheus metrics."""
    state = state_of(request)
    return Response(await state.metrics.render(state.engine), media_type=CONTENT_TYPE_LATEST)


# ---------------------------------------------------------------------- errors
async def _sie_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SieError)
    if exc.status >= 500:
        logger.warning("%s %s -> %s: %s", request.method, request.url.path, exc.code, exc.message)
    return error_response(exc)


async def _client_gone(request: Request, exc: Exception) -> Response:
    logger.info("%s %s: client disconnected; its work was cancelled", request.method, request.url.path)
    return Response(status_code=499)


async def _internal_error(request: Request, exc: Exception) -> Response:
    logger.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
    body = {
        "error": {
            "code": "INTERNAL",
            "message": f"internal server error ({type(exc).__name__}); see the server log",
            "type": "server_error",
        }
    }
    return Response(dumps(body), status_code=500, media_type="application/json")


# ---------------------------------------------------------------------- guard: auth, body limit, counting
class _Guard:
    """Bearer token on every route but the health checks; body size limit; answers counted per route."""

    def __init__(self, app: ASGIApp, state: HttpState) -> None:
        self.app = app
        self.state = state
        token = state.settings.auth_token
        self.expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        status = 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if self.expected is not None and path not in OPEN_PATHS and not self._authorized(scope):
                error = UnauthorizedError(
                    "this server needs 'Authorization: Bearer <token>' (the token given to `sie-agents serve` with "
                    "--auth-token or SIE_AUTH_TOKEN)"
                )
                await error_response(error)(scope, receive, counting_send)
                return
            limit = self.state.settings.max_body_bytes
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                await error_response(_too_large(declared, limit))(scope, receive, counting_send)
                return
            await self.app(scope, _limited(receive, limit), counting_send)
        finally:
            self.state.metrics.count_http(route_label(path), status)

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                return hmac.compare_digest(value, self.expected or b"")
        return False


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(size: int, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the request body has {size:,} bytes or more; at most {limit:,} are accepted (send fewer items per "
        "request, or start the server with a larger --max-body-mb)"
    )


def _limited(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(seen, limit)
        return message

    return wrapped
