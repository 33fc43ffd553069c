"""``sie-agents serve``: one HTTP process for SIE clients, OpenAI clients and MCP clients.

Binds 127.0.0.1:8080 unless told otherwise. SIGTERM (or Ctrl-C) stops accepting connections and lets the
requests in flight finish; calls still waiting shortly before ``--graceful-timeout`` ends answer ``503
SHUTTING_DOWN``, then the models are unloaded and the process exits, all within the graceful timeout (a model
load that cannot be interrupted does not keep the process alive).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from sie_core import Engine, InvalidInputError
from sie_core.cli import add_engine_arguments, config_from_args
from sie_core.threads import prepare_server_threads
from sie_core.timing import favour_responsiveness

if TYPE_CHECKING:  # the web framework is imported only when the server runs, never to build the CLI parser
    from .common import ServerSettings

__all__ = ["add_serve", "build_settings", "mcp_mount", "run_serve", "server_config"]

logger = logging.getLogger("sie_server.serve")


def add_serve(sub: argparse.ArgumentParser) -> Any:
    """Add the ``serve`` flags to its subparser; returns the handler."""
    group = sub.add_argument_group("server")
    group.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    group.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow --host to be a non-loopback address (the server is then reachable from other machines)",
    )
    group.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="extra Host header the /mcp endpoint accepts (DNS-rebinding check; repeatable)",
    )
    group.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0 picks a free one)")
    group.add_argument(
        "--auth-token",
        help="require 'Authorization: Bearer TOKEN' on every route but /healthz and /readyz "
        "(SIE_AUTH_TOKEN; prefer the variable, command lines are visible to other users)",
    )
    group.add_argument("--max-body-mb", type=float, default=16.0, help="largest request body in MiB (default 16)")
    group.add_argument(
        "--load-wait",
        type=float,
        default=20.0,
        help="seconds a request waits for a cold model before answering 503 MODEL_LOADING (default 20)",
    )
    group.add_argument("--preload", action="append", metavar="MODEL", default=[], help="load MODEL at start-up")
    group.add_argument("--no-mcp", action="store_true", help="do not serve MCP at /mcp")
    group.add_argument(
        "--graceful-timeout",
        type=float,
        default=30.0,
        help="seconds in-flight requests get on SIGTERM; the process exits within them (default 30)",
    )
    group.add_argument(
        "--keep-alive-timeout",
        type=float,
        default=5.0,
        help="close a connection idle this many seconds (a new one that sends nothing, or between requests; default 5)",
    )
    group.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        help="seconds a client may take to send a request's headers before it gets 408 (default 10)",
    )
    group.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        help="seconds a client may take to send a request's body after its headers before it gets 408 (default 30)",
    )
    group.add_argument(
        "--allow-any-model",
        action="store_true",
        default=None,
        help="serve any Hugging Face hub id, not only the catalog and configured models (SIE_ALLOW_ANY_MODEL)",
    )
    group.add_argument(
        "--allow-local-paths",
        action="store_true",
        default=None,
        help="let clients name local model folders as model ids (SIE_ALLOW_LOCAL_PATHS)",
    )
    add_engine_arguments(sub)
    return run_serve


def build_settings(args: argparse.Namespace, environ: dict[str, str] | None = None) -> ServerSettings:
    """ServerSettings from parsed flags (and ``SIE_AUTH_TOKEN``)."""
    from .common import ServerSettings

    env = os.environ if environ is None else environ
    if not _is_loopback(args.host) and not args.allow_remote:
        raise InvalidInputError(
            f"--host {args.host} is not a loopback address; binding it exposes the models to "
            "other machines. Pass --allow-remote to do so (and set SIE_AUTH_TOKEN), or keep the default 127.0.0.1"
        )
    if args.port < 0 or args.port > 65535:
        raise InvalidInputError(f"--port {args.port} is not a TCP port (0-65535)")
    if args.max_body_mb <= 0 or args.load_wait <= 0 or args.graceful_timeout < 0:
        raise InvalidInputError("--max-body-mb and --load-wait must be positive, --graceful-timeout >= 0")
    for flag in ("keep_alive_timeout", "header_timeout", "body_timeout"):
        if not getattr(args, flag) > 0:
            raise InvalidInputError(f"--{flag.replace('_', '-')} must be a positive number of seconds")
    return ServerSettings(
        host=args.host,
        port=args.port,
        auth_token=args.auth_token or env.get("SIE_AUTH_TOKEN") or None,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        load_wait_s=args.load_wait,
        mcp=not args.no_mcp,
        graceful_timeout_s=args.graceful_timeout,
        preload=tuple(args.preload),
        keep_alive_timeout_s=args.keep_alive_timeout,
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
    )


def server_config(args: argparse.Namespace) -> Any:
    """The EngineConfig a server builds from its flags: models run here, and the model policy is strict."""
    from sie_mcp.cli import _policy

    if getattr(args, "base_url", None):
        raise InvalidInputError("--base-url is for clients (e.g. `sie-agents mcp`); serve runs models here")
    # A server does not load arbitrary hub ids or local folders unless an operator says so.
    config = config_from_args(
        args,
        allow_any_model=_policy(args, "allow_any_model", args.allow_any_model),
        allow_local_paths=_policy(args, "allow_local_paths", args.allow_local_paths),
    )
    if config.base_url is not None:
        logger.warning("ignoring SIE_BASE_URL=%s: `serve` runs its models in this process", config.base_url)
        config = config.replace(base_url=None, api_key=None)
    return config


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidInputError(f"cannot bind {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)  # connections queue in the backlog until the server accepts them
    sock.set_inheritable(True)
    return sock


def mcp_mount(engine: Engine, settings: ServerSettings, allowed_hosts: list[str] | None = None) -> Any:
    """The MCP streamable-HTTP endpoint for /mcp over ``engine`` and its lifespan, or None when MCP is off."""
    if not settings.mcp:
        return None
    from sie_mcp.server import McpSettings, create_server
    from sie_mcp.transports import mcp_http_endpoint

    if logging.getLogger().level > logging.DEBUG:  # the SDK logs every request at INFO
        for name in ("mcp.server.lowlevel.server", "mcp.server.streamable_http_manager", "mcp.server.mcpserver"):
            logging.getLogger(name).setLevel(logging.WARNING)
    server = create_server(engine, McpSettings(max_items_per_call=min(256, engine.config.max_items_per_call)))
    return mcp_http_endpoint(server, host=settings.host, allowed_hosts=allowed_hosts or ())


def _exit_cleanly(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def abort_delay(graceful_timeout_s: float) -> float:
    """Seconds after SIGTERM at which calls still waiting give up with 503 (leaves time to answer and unload)."""
    return max(0.0, graceful_timeout_s - min(2.0, graceful_timeout_s * 0.25))


def uvicorn_config(app: Any, settings: ServerSettings) -> Any:
    """The ``uvicorn.Config`` that ``sie-agents serve`` runs ``app`` with: the connection timers, no access log."""
    import uvicorn

    from .protocol import guarded_protocol

    return uvicorn.Config(
        app,
        http=guarded_protocol(settings.keep_alive_timeout_s, settings.header_timeout_s, settings.body_timeout_s),
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        # uvicorn's own timer (after each answer) takes whole seconds; the guarded protocol's is exact
        timeout_keep_alive=max(1, math.ceil(settings.keep_alive_timeout_s)),
        timeout_graceful_shutdown=max(1, round(settings.graceful_timeout_s)),
        lifespan="on",
    )


def _close_engine(engine: Engine, timeout: float) -> bool:
    """Close ``engine`` within ``timeout`` seconds; False when it is still busy (a load that cannot be stopped)."""
    closer = threading.Thread(target=engine.close, name="sie-close", daemon=True)
    closer.start()
    closer.join(timeout)
    return not closer.is_alive()


def _exit_joins() -> list[threading.Thread]:
    """The threads the interpreter waits for at exit: non-daemon ones, and every thread-pool worker."""
    from concurrent.futures import thread as pool_threads

    main = threading.main_thread()
    workers = list(getattr(pool_threads, "_threads_queues", {}))  # joined by concurrent.futures at exit
    return [t for t in {*workers, *threading.enumerate()} if t is not main and (not t.daemon or t in workers)]


def _busy_threads(wait: float) -> list[str]:
    """Threads that would keep the process from exiting, after up to ``wait`` seconds (idle ones end at once)."""
    deadline = time.monotonic() + wait
    for thread in _exit_joins():
        thread.join(max(0.0, deadline - time.monotonic()))
    return sorted(t.name for t in _exit_joins() if t.is_alive())


def run_serve(args: argparse.Namespace) -> int:
    """Run the server until SIGTERM / Ctrl-C."""
    import uvicorn

    from .app import create_app
    from .common import install_request_id_logging

    settings = build_settings(args)
    favour_responsiveness()
    config = server_config(args)
    prepare_server_threads(config)
    if config.load_wait_s is None:  # no request waits for a model past --load-wait, evictions included
        config = config.replace(load_wait_s=settings.load_wait_s)
    if not _is_loopback(settings.host) and not settings.auth_token:  # allowed by --allow-remote
        logger.warning(
            "serving on %s without a token: anyone who can reach this port can use the models; "
            "set SIE_AUTH_TOKEN (or --auth-token)",
            settings.host,
        )
    install_request_id_logging()
    engine = Engine(config)
    app = create_app(engine, settings, mcp=mcp_mount(engine, settings, args.allowed_host))
    state = app.state.sie
    sock = _bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    uv_config = uvicorn_config(app, settings)
    stopping: dict[str, float] = {}

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if "at" not in stopping:
                stopping["at"] = time.monotonic()
                state.draining = True  # /readyz says so at once while requests drain
                loop = getattr(self, "_sie_loop", None)
                if loop is not None:  # runs in a signal handler: hand the timer to the loop
                    delay = abort_delay(settings.graceful_timeout_s)
                    loop.call_soon_threadsafe(lambda: loop.call_later(delay, state.abort_waiting_calls))
            super().handle_exit(sig, frame)

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            import asyncio

            self._sie_loop = asyncio.get_running_loop()
            await super().startup(sockets=sockets)

    logger.info(
        "listening on http://%s:%d (SIE API /v1/encode|score|extract, OpenAI /v1/embeddings, %smetrics /metrics, "
        "status page /, API page /docs)%s",
        shown,
        port,
        "MCP /mcp, " if settings.mcp else "",
        "; bearer token required" if settings.auth_token else "",
    )
    # uvicorn re-raises the SIGTERM it handled once it has drained; this turns that into a clean exit (0).
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        Server(uv_config).run(sockets=[sock])
    finally:
        sock.close()
        started = stopping.get("at", time.monotonic())
        left = max(1.0, settings.graceful_timeout_s - (time.monotonic() - started))
        if not _close_engine(engine, left):
            logger.warning(
                "the engine did not finish closing within the graceful timeout (a model load still running); "
                "exiting anyway"
            )
            _hard_exit()
        else:
            busy = _busy_threads(min(2.0, max(0.1, settings.graceful_timeout_s - (time.monotonic() - started))))
            if busy:
                logger.warning("threads still busy at exit (%s); exiting anyway", ", ".join(busy))
                _hard_exit()
    return 0


def _hard_exit() -> None:
    """Exit now with status 0: worker threads stuck in a load would otherwise keep the interpreter alive."""
    logging.shutdown()
    sys.stderr.flush()
    os._exit(0)
