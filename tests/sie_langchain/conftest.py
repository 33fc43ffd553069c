"""Fixtures for the LangChain tests: one session engine that knows the tiny models by id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import sie_langchain
from sie_core import Engine, EngineConfig, ModelSpec

from . import _shared


def tiny_specs(tiny: dict[str, Path]) -> tuple[ModelSpec, ...]:
    """Catalog additions naming the tiny random models (with one-line descriptions, as an agent sees them)."""
    return (
        ModelSpec(
            id=_shared.TINY_ENCODER,
            task="encode",
            path=str(tiny["encoder"]),
            dims=32,
            description="Tiny random sentence encoder with query/passage prompts (tests only).",
        ),
        ModelSpec(
            id=_shared.TINY_RERANKER,
            task="score",
            path=str(tiny["cross_encoder"]),
            description="Tiny random cross-encoder (tests only).",
        ),
        ModelSpec(
            id=_shared.TINY_RERANKER_B,
            task="score",
            path=str(tiny["cross_encoder"]),
            description="A second copy of the tiny cross-encoder, to offer the agent a choice.",
        ),
        ModelSpec(
            id=_shared.TINY_EXTRACTOR,
            task="extract",
            path=str(tiny["gliner"]),
            description="Tiny random GLiNER (tests only).",
        ),
    )


@pytest.fixture(scope="session", autouse=True)
def lc_engine(tiny_models: dict[str, Path]) -> Iterator[Engine]:
    """The session's engine; also published in ``_shared.STATE`` for the standard suites' properties."""
    engine = Engine(EngineConfig(device="cpu", offline=True, models=tiny_specs(tiny_models)))
    _shared.STATE["engine"] = engine
    _shared.STATE["tiny"] = tiny_models
    yield engine
    _shared.STATE.clear()
    engine.close()


@pytest.fixture
def fresh_default_engine(tiny_models: dict[str, Path]) -> Iterator[Engine]:
    """A fresh process-wide default engine for one test, restored afterwards."""
    engine = Engine(EngineConfig(device="cpu", offline=True, models=tiny_specs(tiny_models)))
    sie_langchain.set_default_engine(engine)
    yield engine
    sie_langchain.set_default_engine(None)
    engine.close()
