"""``sie-agents serve``: one HTTP process for SIE clients, OpenAI clients and MCP clients.

Binds 127.0.0.1:8080 unless told otherwise. SIGTERM (or Ctrl-C) stops accepting connections, lets the
requests in flight finish (up to ``--graceful-timeout`` seconds), then unloads the models.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import socket
from typing import TYPE_CHECKING, Any

from sie_core import Engine, InvalidInputError
from sie_core.cli import add_engine_arguments, config_from_args

if TYPE_CHECKING:  # the web framework is imported only when the server runs, never to build the CLI parser
    from .http_common import ServerSettings

__all__ = ["add_serve", "build_settings", "run_serve"]

logger = logging.getLogger("sie_mcp.serve")


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
        "--graceful-timeout", type=float, default=30.0, help="seconds in-flight requests get on SIGTERM (default 30)"
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
    from .http_common import ServerSettings

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
    return ServerSettings(
        host=args.host,
        port=args.port,
        auth_token=args.auth_token or env.get("SIE_AUTH_TOKEN") or None,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        load_wait_s=args.load_wait,
        mcp=not args.no_mcp,
        graceful_timeout_s=args.graceful_timeout,
        preload=tuple(args.preload),
    )


def _server_config(args: argparse.Namespace) -> Any:
    from .cli import _policy

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
    from .server import McpSettings, create_server
    from .transports import mcp_http_endpoint

    if logging.getLogger().level > logging.DEBUG:  # the SDK logs every request at INFO
        for name in ("mcp.server.lowlevel.server", "mcp.server.streamable_http_manager", "mcp.server.mcpserver"):
            logging.getLogger(name).setLevel(logging.WARNING)
    server = create_server(engine, McpSettings(max_items_per_call=min(256, engine.config.max_items_per_call)))
    return mcp_http_endpoint(server, host=settings.host, allowed_hosts=allowed_hosts or ())


def _exit_cleanly(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def run_serve(args: argparse.Namespace) -> int:
    """Run the server until SIGTERM / Ctrl-C."""
    import uvicorn

    from .http_app import create_app

    settings = build_settings(args)
    config = _server_config(args)
    if not _is_loopback(settings.host) and not settings.auth_token:  # allowed by --allow-remote
        logger.warning(
            "serving on %s without a token: anyone who can reach this port can use the models; "
            "set SIE_AUTH_TOKEN (or --auth-token)",
            settings.host,
        )
    engine = Engine(config)
    app = create_app(engine, settings, mcp=mcp_mount(engine, settings, args.allowed_host), close_engine=True)
    sock = _bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    uv_config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=max(1, round(settings.graceful_timeout_s)),
        lifespan="on",
    )

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            app.state.sie.draining = True  # /readyz says so at once while requests drain
            super().handle_exit(sig, frame)

    logger.info(
        "listening on http://%s:%d (SIE API /v1/encode|score|extract, OpenAI /v1/embeddings, %smetrics /metrics)%s",
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
        engine.close()
    return 0
