"""Interop with langchain-mcp-adapters (MultiServerMCPClient), over stdio and streamable HTTP.

langchain-mcp-adapters requires mcp<2, so this module runs in CI's mcp<2 environment (.ci/run) and is
deselected, not skipped, under mcp 2.x (see conftest.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from .helpers import HttpServer, model_flags, server_env

pytestmark = [pytest.mark.needs_mcp1, pytest.mark.slow]


async def call(tool: Any, args: dict[str, Any]) -> Any:
    """Invoke a LangChain tool the way an agent does (a tool call), returning the ToolMessage."""
    return await tool.ainvoke({"type": "tool_call", "id": "call-1", "name": tool.name, "args": args})


async def test_tools_load_as_langchain_tools_and_return_structured_results(
    tiny_models: dict[str, Path], http_server: HttpServer
) -> None:
    from langchain_mcp_adapters.client import MultiServerMCPClient
    from langchain_mcp_adapters.tools import load_mcp_tools

    client = MultiServerMCPClient(
        {
            "sie_stdio": {
                "transport": "stdio",
                "command": sys.executable,
                "args": ["-m", "sie_mcp", *model_flags(tiny_models)],
                "env": server_env(),
            },
            "sie_http": {"transport": "streamable_http", "url": http_server.url, "headers": http_server.headers},
        }
    )
    # Over HTTP the default (a new session per call) is cheap; over stdio it would respawn the server per call,
    # so the stdio tools are loaded from one kept-open session, as the adapters' docs recommend.
    await check_tools("sie_http", await client.get_tools(server_name="sie_http"))
    async with client.session("sie_stdio") as session:
        await check_tools("sie_stdio", await load_mcp_tools(session))


async def check_tools(server_name: str, loaded: list[Any]) -> None:
    from langchain_core.tools import BaseTool

    tools = {t.name: t for t in loaded}
    assert set(tools) == {"encode", "rerank", "extract", "list_models"}, server_name
    assert all(isinstance(t, BaseTool) for t in tools.values())
    assert "texts" in tools["encode"].args and "model" in tools["encode"].args

    encoded = await call(tools["encode"], {"texts": ["hello agents", "second"], "model": "tiny-encoder"})
    structured = encoded.artifact["structured_content"]
    assert structured["model"] == "tiny-encoder" and len(structured["vectors"]) == 2, server_name
    assert "2 vectors of 32 dimensions" in str(encoded.content)  # the agent sees the short summary only

    ranked = await call(tools["rerank"], {"query": "invoice", "documents": ["Invoice 4471 due", "a fox"]})
    assert [r["rank"] for r in ranked.artifact["structured_content"]["results"]] == [1, 2], server_name

    failed = await call(tools["encode"], {"texts": ["x"], "model": "acme/unknown"})
    assert "not served here" in str(failed.content), server_name
