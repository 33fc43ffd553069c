"""``sie-agents mcp`` and ``python -m sie_mcp``: run the MCP server over stdio or streamable HTTP.

This module is imported whenever the ``sie-agents`` parser is built, so it imports neither mcp nor any
web framework at module level; the server modules load only when the command runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from sie_core.cli import Handler, add_engine_arguments, config_from_args, setup_logging
from sie_core.config import EngineConfig, load_config_file
from sie_core.errors import SieError
from sie_core.threads import prepare_server_threads
from sie_core.timing import favour_responsiveness

__all__ = ["add_mcp_command", "main", "run_mcp"]

logger = logging.getLogger("sie_mcp")

TRANSPORTS = ("stdio", "streamable-http")
MCP_PATH = "/mcp"
DEFAULT_MAX_ITEMS = 256


def _env_list(name: str) -> list[str]:
    return [v.strip() for v in os.environ.get(name, "").split(",") if v.strip()]


def add_mcp_command(sub: argparse.ArgumentParser) -> Handler:
    """Add the ``mcp`` command's flags to ``sub`` and return its handler."""
    env = os.environ
    server = sub.add_argument_group("MCP server")
    server.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default=env.get("SIE_MCP_TRANSPORT", "stdio"),
        help="stdio (default; for Claude Desktop / Claude Code) or streamable-http (SIE_MCP_TRANSPORT)",
    )
    server.add_argument("--host", default=env.get("SIE_MCP_HOST", "127.0.0.1"), help="HTTP bind address")
    server.add_argument("--port", type=int, default=int(env.get("SIE_MCP_PORT", "8000")), help="HTTP port")
    server.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow --host to be a non-loopback address (the server is then reachable from other machines)",
    )
    server.add_argument(
        "--allowed-host",
        action="append",
        default=_env_list("SIE_MCP_ALLOWED_HOSTS"),
        metavar="HOST[:PORT]",
        help="extra Host header accepted by the DNS-rebinding check (repeatable; SIE_MCP_ALLOWED_HOSTS)",
    )
    server.add_argument(
        "--auth-token",
        default=env.get("SIE_MCP_AUTH_TOKEN") or None,
        help="require 'Authorization: Bearer TOKEN' on every HTTP request (prefer SIE_MCP_AUTH_TOKEN)",
    )
    server.add_argument(
        "--allow-any-model",
        action="store_true",
        default=None,
        help="let agents name any Hugging Face hub model id, not only the catalog and configured ones "
        "(SIE_ALLOW_ANY_MODEL); local paths are never accepted from agents",
    )
    server.add_argument(
        "--default-model",
        action="append",
        default=[],
        metavar="TASK=ID",
        help="default model for a task (encode, score, extract), repeatable (SIE_ENCODE_MODEL, ...)",
    )
    server.add_argument(
        "--preload",
        action="append",
        default=_env_list("SIE_MCP_PRELOAD"),
        metavar="MODEL",
        help="start loading MODEL right away instead of on first use (repeatable; SIE_MCP_PRELOAD, comma-separated)",
    )
    add_engine_arguments(sub)
    sub.set_defaults(log_level=env.get("SIE_LOG_LEVEL", "INFO"))  # MCP clients configure servers by env
    return run_mcp


def _truthy(raw: str) -> bool:
    return raw.strip().lower() in ("1", "true", "yes", "on")


def _policy(args: argparse.Namespace, name: str, flag: bool | None) -> bool:
    """A model-policy switch: off for servers unless the flag, ``SIE_<NAME>`` or the config file turns it on."""
    if flag:
        return True
    raw = os.environ.get(f"SIE_{name.upper()}")
    if raw is not None:
        return _truthy(raw)
    path = getattr(args, "config_file", None) or os.environ.get("SIE_CONFIG")
    if path:
        return bool(load_config_file(path).get(name, False))
    return False


def _defaults(values: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        task, _, model = value.partition("=")
        if task not in ("encode", "score", "extract") or not model:
            raise SieError(f"--default-model {value!r}: expected TASK=ID with TASK encode, score or extract")
        out[task] = model
    return out


def _check_host(args: argparse.Namespace) -> None:
    from .transports import LOOPBACK_HOSTS

    if args.transport == "streamable-http" and args.host not in LOOPBACK_HOSTS and not args.allow_remote:
        raise SieError(
            f"--host {args.host} is not a loopback address; binding it exposes the server to other machines. "
            "Pass --allow-remote to do so (and set SIE_MCP_AUTH_TOKEN), or keep the default 127.0.0.1"
        )


def run_mcp(args: argparse.Namespace) -> int:
    """Run the MCP server described by parsed ``args`` until its client goes away or it is stopped."""
    _check_host(args)
    wire = None
    if args.transport == "stdio":
        from .transports import claim_stdio

        wire = claim_stdio()  # before anything else can print to stdout

    favour_responsiveness()
    config = config_from_args(
        args,
        allow_any_model=_policy(args, "allow_any_model", args.allow_any_model),
        allow_local_paths=_policy(args, "allow_local_paths", None),
    )
    prepare_server_threads(config)
    defaults = _defaults(args.default_model)
    if defaults:
        config = config.replace(default_models={**config.default_models, **defaults})
    # Results of MCP calls land in an agent's context: a smaller cap than the engine's, unless one was set.
    explicit = config.max_items_per_call != EngineConfig().max_items_per_call
    max_items = config.max_items_per_call if explicit else min(DEFAULT_MAX_ITEMS, config.max_items_per_call)

    import asyncio

    from sie_core import Engine

    from .server import McpSettings, create_server
    from .transports import create_http_app, preload_models, run_stdio, serve_http

    # The SDK logs every request at INFO; keep those at WARNING unless asked for debug output.
    if logging.getLogger().level > logging.DEBUG:
        for name in ("mcp.server.lowlevel.server", "mcp.server.streamable_http_manager", "mcp.server.mcpserver"):
            logging.getLogger(name).setLevel(logging.WARNING)

    engine = Engine(config)
    server = create_server(engine, McpSettings(max_items_per_call=max_items))
    preload: list[str] = list(dict.fromkeys(args.preload))

    async def start() -> Any:
        await preload_models(engine, preload)

    on_start = start if preload else None
    policy = "any hub model" if config.allow_any_model else "catalog and configured models only"
    try:
        if wire is not None:
            logger.info("sie-agents MCP server on stdio (%s); models load on first use", policy)
            asyncio.run(run_stdio(server, stdin=wire[0], stdout=wire[1], on_start=on_start))
        else:
            app = create_http_app(
                server,
                path=MCP_PATH,
                host=args.host,
                allowed_hosts=args.allowed_host,
                auth_token=args.auth_token,
                on_start=on_start,
            )
            if args.host not in ("127.0.0.1", "localhost", "::1") and not args.auth_token:
                logger.warning("serving %s without an auth token: anyone who reaches it can use it", args.host)
            where = f"[{args.host}]" if ":" in args.host else args.host
            logger.info(
                "sie-agents MCP server on http://%s:%d%s (%s%s)",
                where,
                args.port,
                MCP_PATH,
                policy,
                ", bearer token required" if args.auth_token else "",
            )
            asyncio.run(serve_http(app, host=args.host, port=args.port, log_level=args.log_level))
    finally:
        engine.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m sie_mcp`` (the same flags as ``sie-agents mcp``)."""
    parser = argparse.ArgumentParser(
        prog="python -m sie_mcp",
        description="MCP server: encode, rerank, extract and list_models tools, the model named per call.",
    )
    handler = add_mcp_command(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        return handler(args)
    except SieError as exc:
        print(f"sie_mcp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
