"""Server processes move loaded models out of the garbage collector's reach, and give them back on unload."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from sie_core import Engine, timing

from ..sie_mcp.helpers import server_config


@pytest.fixture
def server_policy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """favour_responsiveness()'s GC part for this test only (the switch interval is left alone)."""
    monkeypatch.setattr(timing, "_freeze_after_loads", True)
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_a_load_freezes_what_is_alive_and_an_unload_unfreezes_it(server_policy: None, tiny_models: dict[str, Path]):
    with Engine(server_config(tiny_models)) as engine:
        assert gc.get_freeze_count() == 0
        engine.load("tiny-encoder")
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # torch, transformers and the model: what a full collection no longer walks
        survivor = [object()]  # made after the load: collected as usual
        assert gc.is_tracked(survivor) and gc.get_freeze_count() == frozen
        assert engine.unload("tiny-encoder")
        assert gc.get_freeze_count() == 0  # the unloaded model's cycles can be collected again
        engine.load("tiny-encoder")
        assert gc.get_freeze_count() > 10_000


def test_a_library_engine_leaves_the_collector_alone(tiny_models: dict[str, Path]) -> None:
    gc.unfreeze()
    with Engine(server_config(tiny_models)) as engine:
        engine.load("tiny-encoder")
        assert gc.get_freeze_count() == 0
