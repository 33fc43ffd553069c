"""sie_server: the HTTP server of sie-agents (``sie-agents serve``).

One ASGI app on one :class:`sie_core.Engine`: SIE's wire API (``/v1/encode|score|extract/{model}``,
``/v1/models``), OpenAI-compatible ``/v1/embeddings``, ``/v1/rerank``, the MCP server at ``/mcp``
(from :mod:`sie_mcp`), health (``/healthz``, ``/readyz``), Prometheus ``/metrics``, a status page at ``/``,
an API page at ``/docs`` and its OpenAPI 3.1 document at ``/openapi.json``.

Run it: ``sie-agents serve`` (127.0.0.1:8080 by default). Embed it::

    from sie_core import Engine
    from sie_server import ServerSettings, create_app

    app = create_app(Engine(), ServerSettings(auth_token="secret"))   # any ASGI server runs it

Importing this package imports neither starlette nor uvicorn; the names above load on first access.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "EngineMetrics",
    "RequestIdFilter",
    "ServerSettings",
    "add_serve",
    "build_openapi",
    "create_app",
    "guarded_protocol",
    "mcp_mount",
    "run_serve",
]

_LAZY = {
    "EngineMetrics": "metrics",
    "RequestIdFilter": "common",
    "ServerSettings": "common",
    "add_serve": "serve",
    "build_openapi": "openapi",
    "create_app": "app",
    "guarded_protocol": "protocol",
    "mcp_mount": "serve",
    "run_serve": "serve",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sie_server' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
