"""sie_mcp: the MCP server of sie-agents — tools ``encode``, ``rerank``, ``extract`` and ``list_models``.

Every tool takes the model as an argument (``model``, optional: each task has a default), so one server
serves many models through one :class:`sie_core.Engine`. Works with the ``mcp`` SDK 2.x (``MCPServer``)
and 1.x >= 1.24 (``FastMCP``).

Run it: ``sie-agents mcp`` or ``python -m sie_mcp`` (stdio), ``sie-agents mcp --transport streamable-http
--port 8000`` (HTTP, path ``/mcp``, 127.0.0.1 by default).

Embed it (the whole API)::

    from sie_core import Engine, EngineConfig
    from sie_mcp import McpSettings, create_server, create_http_app, mcp_http_endpoint, run_stdio

    engine = Engine(EngineConfig(allow_local_paths=False, allow_any_model=False))
    server = create_server(engine, McpSettings())        # tools registered; nothing loaded yet

    await run_stdio(server)                               # stdio until the client closes stdin
    app = create_http_app(server, auth_token="secret")    # standalone Starlette app, endpoint /mcp

    # Inside a bigger Starlette app that shares the same engine:
    endpoint, mcp_lifespan = mcp_http_endpoint(server, host="127.0.0.1")
    routes = [..., Route("/mcp", endpoint=endpoint)]
    # and in that app's lifespan:  async with mcp_lifespan(): yield
    # (authentication is then the outer app's job; BearerAuthMiddleware is available)

The caller owns the engine and closes it after the server stops. Importing this package does not import
mcp; the names above load on first access.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BearerAuthMiddleware",
    "McpSettings",
    "create_http_app",
    "create_server",
    "mcp_http_endpoint",
    "run_stdio",
    "serve_http",
]

_LAZY = {
    "McpSettings": "server",
    "create_server": "server",
    "BearerAuthMiddleware": "transports",
    "create_http_app": "transports",
    "mcp_http_endpoint": "transports",
    "run_stdio": "transports",
    "serve_http": "transports",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sie_mcp' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
