"""Example tests: tests marked needs_mcp1 run only where mcp<2 is installed (CI's mcp<2 leg)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pytest


def _mcp_major() -> int:
    try:
        return int(version("mcp").split(".")[0])
    except PackageNotFoundError:
        return 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip) needs_mcp1 tests under mcp 2.x: langchain-mcp-adapters 0.3.2 requires mcp<2."""
    if _mcp_major() == 1:
        return
    dropped = [i for i in items if i.get_closest_marker("needs_mcp1") is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [i for i in items if i.get_closest_marker("needs_mcp1") is None]
