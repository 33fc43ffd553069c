"""One import surface over the ``mcp`` SDK 2.x (``MCPServer``) and 1.x >= 1.24 (``FastMCP``).

Both majors share the decorator API, ``Context.report_progress``, ``ToolError``, the wire types in
``mcp.types`` (whose constructors accept the camelCase wire names in both), ``stdio_server`` with
explicit streams, and ``StreamableHTTPSessionManager``. What differs is where the server class lives
and the name of the private attribute holding the low-level server; both are bridged here and nowhere else.
"""

from __future__ import annotations

import importlib
from typing import Any

from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, TextContent, ToolAnnotations

try:
    from mcp.server.mcpserver import Context
    from mcp.server.mcpserver import MCPServer as Server
    from mcp.server.mcpserver.exceptions import ToolError

    MCP_MAJOR = 2
except ImportError:  # mcp 1.x; imported by name so that type checking against 2.x stays clean
    _v1 = importlib.import_module("mcp.server.fastmcp")
    Context = _v1.Context  # type: ignore[misc]
    Server = _v1.FastMCP  # type: ignore[misc]
    ToolError = importlib.import_module("mcp.server.fastmcp.exceptions").ToolError  # type: ignore[misc]
    MCP_MAJOR = 1

__all__ = [
    "MCP_MAJOR",
    "CallToolResult",
    "Context",
    "Server",
    "StreamableHTTPSessionManager",
    "TextContent",
    "ToolAnnotations",
    "ToolError",
    "TransportSecuritySettings",
    "lowlevel_server",
    "stdio_server",
]


def lowlevel_server(server: Any) -> Any:
    """The SDK's low-level ``Server`` inside an ``MCPServer`` (2.x) or ``FastMCP`` (1.x)."""
    inner = getattr(server, "_lowlevel_server", None)  # mcp 2.x
    if inner is None:
        inner = server._mcp_server  # mcp 1.x
    return inner
