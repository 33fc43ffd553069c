"""Running the MCP server: stdio with a protected stdout, and streamable HTTP behind host checks and a token.

Nothing here knows about tools; it takes the server object :func:`sie_mcp.create_server` built.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import io
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TextIO

from sie_core import Engine, SieError

from ._compat import StreamableHTTPSessionManager, TransportSecuritySettings, lowlevel_server, stdio_server

__all__ = [
    "LOOPBACK_HOSTS",
    "BearerAuthMiddleware",
    "claim_stdio",
    "create_http_app",
    "mcp_http_endpoint",
    "preload_models",
    "run_stdio",
    "serve_http",
    "transport_security",
]

logger = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


# ---------------------------------------------------------------------------------------------- preload
async def preload_models(engine: Engine, models: Sequence[str]) -> None:
    """Load ``models`` one after another; a failure is logged and the server keeps serving."""
    for model in models:
        try:
            info = await engine.aload(model)
        except SieError as exc:
            logger.error("preload of %s failed: %s", model, exc)
        else:
            logger.info("preloaded %s on %s", info.id, info.device)


# ---------------------------------------------------------------------------------------------- stdio
def claim_stdio() -> tuple[TextIO, TextIO]:
    """Take the process's stdin/stdout for the protocol and point fd 0/1 away from them.

    Afterwards fd 1 (and ``sys.stdout``) write to stderr and fd 0 reads the null device, so a library
    that prints, a progress bar, or a child process cannot put a byte on the wire. Call it before
    anything else runs. Returns text streams on private duplicates of the original descriptors.
    """
    wire_in = os.dup(0)
    wire_out = os.dup(1)
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout = sys.stderr
    reader = io.TextIOWrapper(os.fdopen(wire_in, "rb"), encoding="utf-8", errors="replace")
    writer = io.TextIOWrapper(os.fdopen(wire_out, "wb"), encoding="utf-8", newline="\n")
    return reader, writer


async def run_stdio(
    server: Any,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    on_start: Callable[[], Any] | None = None,
) -> None:
    """Serve ``server`` over stdio until the client closes stdin.

    Args:
        server: What :func:`sie_mcp.create_server` returned.
        stdin: The protocol's input (default: this process's stdin; see :func:`claim_stdio`).
        stdout: The protocol's output (default: this process's stdout).
        on_start: A coroutine function started in the background once serving begins (e.g. preloading).
    """
    import anyio

    streams: dict[str, Any] = {}
    if stdin is not None:
        streams["stdin"] = anyio.wrap_file(stdin)
    if stdout is not None:
        streams["stdout"] = anyio.wrap_file(stdout)
    inner = lowlevel_server(server)
    background: asyncio.Task[Any] | None = None
    async with stdio_server(**streams) as (read_stream, write_stream):
        if on_start is not None:
            background = asyncio.ensure_future(on_start())
        try:
            await inner.run(read_stream, write_stream, inner.create_initialization_options())
        finally:
            if background is not None and not background.done():
                background.cancel()
    logger.info("stdin closed; MCP stdio server stopped")


# ---------------------------------------------------------------------------------------------- HTTP
def transport_security(host: str, allowed_hosts: Sequence[str] = ()) -> TransportSecuritySettings:
    """DNS-rebinding protection: which ``Host`` (and ``Origin``) headers the HTTP endpoint accepts.

    Loopback binds accept only loopback names. Other binds accept the bind address plus
    ``allowed_hosts`` (``name`` or ``name:port``); a wildcard bind (0.0.0.0, ::) with no
    ``allowed_hosts`` turns the check off (a warning is logged; use a token then).
    """
    names = ["127.0.0.1", "localhost", "[::1]"]
    if host not in LOOPBACK_HOSTS and host not in ("0.0.0.0", "::"):
        names.append(f"[{host}]" if ":" in host else host)
    names += list(allowed_hosts)
    if host in ("0.0.0.0", "::") and not allowed_hosts:
        logger.warning("binding %s without --allowed-host: Host-header (DNS-rebinding) checks are off", host)
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    hosts: list[str] = []
    origins: list[str] = []
    for name in dict.fromkeys(names):
        has_port = name.rsplit(":", 1)[-1].isdigit() and not name.endswith("]")
        hosts += [name] if has_port else [name, f"{name}:*"]
        origins += [f"http://{name}", f"https://{name}"]
        if not has_port:
            origins += [f"http://{name}:*", f"https://{name}:*"]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


class BearerAuthMiddleware:
    """ASGI middleware: every HTTP request must carry ``Authorization: Bearer <token>`` (else 401).

    The comparison is constant-time. Lifespan and other non-HTTP scopes pass through.
    """

    def __init__(self, app: Any, token: str) -> None:
        if not token:
            raise ValueError("the auth token must be a non-empty string")
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        """Answer 401 unless the request carries the token; otherwise hand it to the wrapped app."""
        if scope["type"] in ("http", "websocket"):
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                body = b'{"error":"unauthorized","message":"send Authorization: Bearer <token>"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", b'Bearer realm="sie-agents"'),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class _Endpoint:
    """The streamable-HTTP endpoint as a plain ASGI app (a class, so Starlette's Route passes raw ASGI)."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self.manager = manager

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.manager.handle_request(scope, receive, send)


def mcp_http_endpoint(
    server: Any,
    *,
    host: str = "127.0.0.1",
    allowed_hosts: Sequence[str] = (),
    json_response: bool = False,
    stateless: bool = False,
) -> tuple[Any, Callable[[], AbstractAsyncContextManager[None]]]:
    """The MCP streamable-HTTP endpoint, for mounting in any Starlette app.

    Returns ``(endpoint, lifespan)``: put ``Route("/mcp", endpoint=endpoint)`` in the app's routes and
    enter ``lifespan()`` inside the app's lifespan (it runs the session manager; it can run once).
    Host-header checks follow :func:`transport_security` for ``host``; authentication is the app's job
    (see :class:`BearerAuthMiddleware`).
    """
    manager = StreamableHTTPSessionManager(
        app=lowlevel_server(server),
        json_response=json_response,
        stateless=stateless,
        security_settings=transport_security(host, allowed_hosts),
    )
    return _Endpoint(manager), manager.run


def create_http_app(
    server: Any,
    *,
    path: str = "/mcp",
    host: str = "127.0.0.1",
    allowed_hosts: Sequence[str] = (),
    auth_token: str | None = None,
    on_start: Callable[[], Any] | None = None,
) -> Any:
    """A standalone Starlette app serving ``server`` at ``path`` (streamable HTTP).

    Args:
        server: What :func:`sie_mcp.create_server` returned.
        path: URL path of the MCP endpoint.
        host: The address the app will be bound to (decides the Host-header checks).
        allowed_hosts: Extra ``Host`` header values to accept.
        auth_token: When set, every request needs ``Authorization: Bearer <auth_token>``.
        on_start: A coroutine function started in the background at startup (e.g. preloading).
    """
    from starlette.applications import Starlette
    from starlette.routing import Route

    endpoint, run_sessions = mcp_http_endpoint(server, host=host, allowed_hosts=allowed_hosts)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        background = asyncio.ensure_future(on_start()) if on_start is not None else None
        try:
            async with run_sessions():
                yield
        finally:
            if background is not None and not background.done():
                background.cancel()

    app: Any = Starlette(routes=[Route(path, endpoint=endpoint)], lifespan=lifespan)
    if auth_token:
        app = BearerAuthMiddleware(app, auth_token)
    return app


async def serve_http(app: Any, *, host: str, port: int, log_level: str = "info") -> None:
    """Serve an ASGI app with uvicorn until SIGTERM/SIGINT, then shut down gracefully and return.

    Open requests get a few seconds to finish, the app's lifespan (the MCP session manager) is exited, and
    the function returns, so the caller can close the engine and exit with status 0.
    """
    server = _uvicorn_server_class()(
        _uvicorn_config(
            app,
            host=host,
            port=port,
            log_config=None,  # our logging (stderr) handles uvicorn's loggers too
            log_level=log_level.lower(),
            access_log=log_level.upper() == "DEBUG",
            timeout_graceful_shutdown=5,
            lifespan="on",
        )
    )
    await server.serve()
    if not server.started:
        raise SieError(f"the MCP HTTP server could not start on {host}:{port} (see the log above)")
    logger.info("MCP HTTP server shut down")


def _uvicorn_config(app: Any, **options: Any) -> Any:
    import uvicorn

    return uvicorn.Config(app, **options)


def _uvicorn_server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn, minus re-raising the stop signal after shutdown (which would kill us before cleanup)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            loop = asyncio.get_running_loop()
            signals = (signal.SIGINT, signal.SIGTERM)
            for sig in signals:
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
            try:
                yield
            finally:
                for sig in signals:
                    loop.remove_signal_handler(sig)

    return Server
