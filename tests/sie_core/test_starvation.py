"""One valid but huge request never freezes the engine: other calls keep answering while it runs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from sie_core import Engine

from ..sie_mcp.helpers import server_config

pytestmark = pytest.mark.slow

#: Just under the 200,000-character limit: ~1,500 windows on the tiny GLiNER, tens of thousands of raw entities.
BIG_TEXT = ("lorem ipsum dolor sit amet " * 8000)[:199000]


async def test_a_199k_character_extract_does_not_starve_list_models_or_other_models(tiny_models: dict[str, Path]):
    engine = Engine(server_config(tiny_models))
    try:
        await engine.aload("tiny-gliner")
        await engine.aload("tiny-encoder")
        big = asyncio.ensure_future(
            engine.aextract("tiny-gliner", BIG_TEXT, labels=["person", "organization"], threshold=0.0)
        )
        await asyncio.sleep(0.5)  # the big call is planning, running windows or merging now
        lists, encodes = [], []
        while not big.done() and len(lists) < 10:
            started = time.perf_counter()
            await engine.alist_models()
            lists.append(time.perf_counter() - started)
            started = time.perf_counter()
            vector = await engine.aencode("tiny-encoder", "one short sentence")
            encodes.append(time.perf_counter() - started)
            assert vector.dims == 32
            await asyncio.sleep(0.2)
        result = await big
    finally:
        engine.close()
    assert lists, "the big extract finished before anything could be measured; make it bigger"
    assert result.windows > 100 and result.entities  # it really was a big, windowed call
    assert all(e.text == BIG_TEXT[e.start : e.end] for e in result.entities[:1000])
    assert max(lists) < 0.1, f"list_models took up to {max(lists) * 1000:.0f} ms while the big extract ran"
    assert max(encodes) < 1.0, f"a one-sentence encode took up to {max(encodes):.2f} s while the big extract ran"
