"""Fixtures for the MCP server tests (helpers live in helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sie_core import Engine
from sie_mcp._compat import MCP_MAJOR

from .helpers import HttpServer, model_flags, server_config


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip) tests that need mcp 1.x when mcp 2.x is installed; CI runs them in its mcp<2 venv."""
    if MCP_MAJOR == 1:
        return
    dropped = [i for i in items if i.get_closest_marker("needs_mcp1") is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [i for i in items if i.get_closest_marker("needs_mcp1") is None]


@pytest.fixture(scope="session")
def mcp_engine(tiny_models: dict[str, Path]) -> Iterator[Engine]:
    """One server-policy engine with the tiny models, shared by the in-process tests (models stay loaded)."""
    engine = Engine(server_config(tiny_models))
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def http_server(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    """One HTTP server (bearer token required) shared by the HTTP, Inspector and adapter tests."""
    log = tmp_path_factory.mktemp("mcp-http") / "server.log"
    server = HttpServer(model_flags(tiny_models), log, token="test-token-123")
    yield server
    server.stop()
