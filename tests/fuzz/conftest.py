"""Fixtures of the fuzz suite: the seed, one in-process engine with the tiny models, the reference answers.

The seed is fixed (``SIE_FUZZ_SEED`` overrides it, to explore other corpora locally); hypothesis tests are
derandomized. Each test module that starts a server starts one (module-scoped fixtures there). The one-line
summaries the corpus tests record are printed at the end of the run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sie_core import Engine

from ..sie_mcp.helpers import server_config
from .harness import Reference

DEFAULT_SEED = 14
_SUMMARIES: list[str] = []


@pytest.fixture(scope="session")
def fuzz_seed() -> int:
    """The corpus seed: fixed, so CI always sends the same cases."""
    return int(os.environ.get("SIE_FUZZ_SEED", DEFAULT_SEED))


@pytest.fixture(scope="session")
def fuzz_engine(tiny_models: dict[str, Path]) -> Iterator[Engine]:
    """What ``sie-agents mcp`` / ``serve`` build with the tiny models: the property tests' engine and the reference."""
    engine = Engine(server_config(tiny_models))
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def reference(fuzz_engine: Engine) -> Reference:
    """The answers valid calls must give, computed in-process before any hostile input."""
    return Reference(fuzz_engine)


@pytest.fixture(scope="session")
def fuzz_summary() -> Callable[[str], None]:
    """Record a one-line summary (printed to stderr now and in pytest's terminal summary)."""

    def record(line: str) -> None:
        _SUMMARIES.append(line)
        sys.stderr.write(line + "\n")

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the corpus summaries for humans (cases, answered, statuses)."""
    if _SUMMARIES:
        terminalreporter.section("fuzz summary")
        for line in _SUMMARIES:
            terminalreporter.write_line(line)
