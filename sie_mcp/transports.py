"""Running the MCP server: stdio with a protected stdout, and streamable HTTP behind host checks and a token.

Nothing here knows about tools; it takes the server object :func:`sie_mcp.create_server` built. Both transports
screen incoming messages with :func:`sie_mcp.jsonrpc.check_message` before the SDK sees them, so that a malformed
request is answered with a JSON-RPC error instead of being dropped (see :mod:`sie_mcp.jsonrpc`).
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
from typing import Any, TextIO, cast

from sie_core import Engine, SieError

from . import jsonrpc
from ._compat import MCP_MAJOR, StreamableHTTPSessionManager, TransportSecuritySettings, lowlevel_server, stdio_server

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
    max_line_chars: int = jsonrpc.MAX_LINE_CHARS,
) -> None:
    """Serve ``server`` over stdio until the client closes stdin.

    Every incoming line is screened first (:func:`sie_mcp.jsonrpc.check_message`): a malformed request is
    answered with a JSON-RPC error on stdout and the session goes on; only valid messages reach the SDK.
    Blank lines are skipped.

    Args:
        server: What :func:`sie_mcp.create_server` returned.
        stdin: The protocol's input (default: this process's stdin, claimed with :func:`claim_stdio`).
        stdout: The protocol's output (default: this process's stdout, claimed with :func:`claim_stdio`).
        on_start: A coroutine function started in the background once serving begins (e.g. preloading).
        max_line_chars: Longest line accepted, in characters; a longer one is answered with -32600.
    """
    import anyio

    if stdin is None or stdout is None:
        claimed = claim_stdio()
        stdin = claimed[0] if stdin is None else stdin
        stdout = claimed[1] if stdout is None else stdout
    writer = _LineWriter(anyio.wrap_file(stdout))
    lines = _ScreenedLines(stdin, writer, max_line_chars)
    inner = lowlevel_server(server)
    background: asyncio.Task[Any] | None = None
    # The SDK only iterates ``stdin`` and calls ``write``/``flush`` on ``stdout``; both objects provide that.
    async with stdio_server(stdin=cast(Any, lines), stdout=cast(Any, writer)) as (read_stream, write_stream):
        if on_start is not None:
            background = asyncio.ensure_future(on_start())
        try:
            outgoing = _OffLoopSend(write_stream, writer)
            await inner.run(read_stream, cast(Any, outgoing), inner.create_initialization_options())
        finally:
            if background is not None and not background.done():
                background.cancel()
    logger.info("stdin closed; MCP stdio server stopped")


def _dump(message: Any) -> str:
    # How the SDK's own stdio writer serialises a message (mcp 2.x drops unset fields, 1.x None fields).
    if MCP_MAJOR >= 2:
        return jsonrpc.wire_safe(message.model_dump_json(by_alias=True, exclude_unset=True))
    return jsonrpc.wire_safe(message.model_dump_json(by_alias=True, exclude_none=True))


class _OffLoopSend:
    """The server's outgoing stream: each message is serialised in a worker thread, then written as one line.

    The SDK's stdio writer serialises on the event loop; a large result (tens of thousands of entities) then
    holds the loop for a few hundred milliseconds and every other session call waits. Messages of one task
    stay in order (each ``send`` returns once its line is written); messages of different tasks need no order.
    """

    def __init__(self, stream: Any, writer: _LineWriter) -> None:
        self._stream = stream
        self._writer = writer

    async def send(self, item: Any) -> None:
        """Serialise ``item.message`` off the loop and write it."""
        import anyio

        line = await anyio.to_thread.run_sync(_dump, item.message)
        await self._writer.write_line(line, safe=True)

    async def aclose(self) -> None:
        """Close the SDK's stream too (its writer task then ends)."""
        await self._stream.aclose()

    def close(self) -> None:
        """Close without awaiting."""
        self._stream.close()

    async def __aenter__(self) -> _OffLoopSend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _LineWriter:
    """The protocol's output, shared by the SDK's writer and the screen's error replies.

    One lock serializes the writes of both so that lines never interleave; text is made safe to encode first
    (a lone surrogate would otherwise kill the writer).
    """

    def __init__(self, file: Any) -> None:
        import anyio

        self._file = file
        self._lock = anyio.Lock()

    async def write(self, text: str) -> None:
        """Write ``text`` (the SDK passes one whole line at a time)."""
        async with self._lock:
            await self._file.write(jsonrpc.wire_safe(text))

    async def flush(self) -> None:
        """Flush the underlying stream."""
        async with self._lock:
            await self._file.flush()

    async def write_line(self, line: str, *, safe: bool = False) -> None:
        """Write ``line`` and a newline, then flush, with no other write in between.

        Args:
            line: One JSON-RPC message.
            safe: ``line`` went through :func:`sie_mcp.jsonrpc.wire_safe` already.
        """
        async with self._lock:
            await self._file.write((line if safe else jsonrpc.wire_safe(line)) + "\n")
            await self._file.flush()


class _ScreenedLines:
    """The protocol's input as the SDK iterates it: only lines that pass the screen, the rest answered here."""

    # Lines longer than this are screened in a worker thread so that the event loop keeps serving.
    _THREAD_CHARS = 1024 * 1024

    def __init__(self, file: TextIO, writer: _LineWriter, max_line_chars: int) -> None:
        self._file = file
        self._writer = writer
        self._max = max_line_chars

    def __aiter__(self) -> _ScreenedLines:
        return self

    async def __anext__(self) -> str:
        import anyio

        rejection: jsonrpc.Rejection | None
        while True:
            line = await anyio.to_thread.run_sync(self._file.readline, self._max + 1)
            if not line:
                raise StopAsyncIteration
            if len(line) > self._max and not line.endswith("\n"):
                rejection = await self._drop_long_line(line)
            elif not line.strip():
                continue
            elif len(line) > self._THREAD_CHARS:
                rejection = await anyio.to_thread.run_sync(jsonrpc.check_message, line)
            else:
                rejection = jsonrpc.check_message(line)
            if rejection is None:
                return line
            logger.warning(
                "stdio message %s (id %r): %s",
                "answered" if rejection.answer else "dropped",
                rejection.id,
                rejection.message,
            )
            reply = rejection.wire()
            if reply is not None:
                await self._writer.write_line(reply)

    async def _drop_long_line(self, head: str) -> jsonrpc.Rejection:
        """Read and discard the rest of an over-long line; the answer names the id found at its start, if any."""
        import anyio

        while True:
            chunk = await anyio.to_thread.run_sync(self._file.readline, self._max)
            if not chunk or chunk.endswith("\n"):
                break
        return jsonrpc.message_too_large(
            head, f"longer than {self._max:,} characters", f"{self._max:,} characters per line"
        )


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
    """The streamable-HTTP endpoint as a plain ASGI app (a class, so Starlette's Route passes raw ASGI).

    A POST that passes the Host/Origin and Content-Type checks has its body screened
    (:func:`sie_mcp.jsonrpc.check_message`) before the SDK sees it: a malformed message is answered with HTTP 400
    and a JSON-RPC error body (the status the SDK itself gives a body that is not JSON), a body over the size
    bound with 413 and a -32600 body. Everything else goes to the SDK unchanged, the body replayed.
    """

    # Bodies larger than this are screened in a worker thread so that the event loop keeps serving.
    _THREAD_BYTES = 1024 * 1024

    def __init__(self, manager: StreamableHTTPSessionManager, security: TransportSecuritySettings) -> None:
        from mcp.server.transport_security import TransportSecurityMiddleware

        self.manager = manager
        self._security = TransportSecurityMiddleware(security)
        # The SDK's own body bound where it has one (2.x and late 1.x: 4 MiB by default), so ours answers first.
        self.max_body_bytes = int(getattr(manager, "max_request_body_size", None) or jsonrpc.MAX_LINE_CHARS)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and scope.get("method") == "POST":
            screened = await self._screen(scope, receive, send)
            if screened is None:
                return
            receive = screened
        await self.manager.handle_request(scope, receive, send)

    async def _screen(self, scope: Any, receive: Any, send: Any) -> Any:
        """The ``receive`` to hand to the SDK, or None when the request was answered here."""
        import anyio
        from starlette.requests import Request

        if await self._security.validate_request(Request(scope), is_post=True) is not None:
            return receive  # the SDK gives the same refusal
        rejection: jsonrpc.Rejection | None
        limit = f"{self.max_body_bytes:,} bytes"
        too_large = jsonrpc.message_too_large("", f"larger than {limit}", f"{limit} per request")
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await _send_json(send, 413, too_large.http_body())
            return None
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None  # the client went away
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await _send_json(send, 413, too_large.http_body())
                return None
            if not message.get("more_body", False):
                break
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            rejection = jsonrpc.Rejection(
                jsonrpc.PARSE_ERROR, f"Parse error: the body is not valid UTF-8 ({exc}); send UTF-8 JSON"
            )
        else:
            if len(body) > self._THREAD_BYTES:
                rejection = await anyio.to_thread.run_sync(jsonrpc.check_message, text)
            else:
                rejection = jsonrpc.check_message(text)
        if rejection is not None:
            logger.warning("HTTP message refused (id %r): %s", rejection.id, rejection.message)
            await _send_json(send, 400, rejection.http_body())
            return None
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        return replay


async def _send_json(send: Any, status: int, body: str) -> None:
    data = body.encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


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
    security = transport_security(host, allowed_hosts)
    manager = StreamableHTTPSessionManager(
        app=lowlevel_server(server),
        json_response=json_response,
        stateless=stateless,
        security_settings=security,
    )
    return _Endpoint(manager, security), manager.run


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
