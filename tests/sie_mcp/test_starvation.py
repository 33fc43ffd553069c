"""Over MCP stdio: a 199,000-character extract does not hold up list_models or another model's encode."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from .helpers import model_flags, server_env, sie_agents_command, stdio_session

pytestmark = pytest.mark.slow

BIG_TEXT = ("lorem ipsum dolor sit amet " * 8000)[:199000]
#: How long the client may spend parsing the big answer before it is delivered (measured: up to about 0.8 s).
CLIENT_PARSE_S = 1.5


async def test_big_extract_over_stdio_leaves_other_calls_fast(tiny_models: dict[str, Path]) -> None:
    flags = [*model_flags(tiny_models), "--preload", "tiny-gliner", "--preload", "tiny-encoder"]
    async with stdio_session(sie_agents_command(), ["mcp", *flags], server_env()) as client:
        # Warm both models (and the session) first, so only the big call can slow anything down.
        assert (await client.call("encode", {"texts": ["warm"], "model": "tiny-encoder"}))["isError"] is False
        # The same code paths as the big call (windowing, merging, every span kept), on a text of a few windows.
        warm = await client.call(
            "extract", {"text": BIG_TEXT[:4000], "labels": ["person", "organization"], "threshold": 0.0}
        )
        assert warm["isError"] is False
        assert (await client.call("list_models", {}))["isError"] is False
        big = asyncio.ensure_future(
            client.call("extract", {"text": BIG_TEXT, "labels": ["person", "organization"], "threshold": 0.0})
        )
        await asyncio.sleep(0.8)
        delivered: list[float] = []
        big.add_done_callback(lambda _: delivered.append(time.perf_counter()))
        lists, encodes = [], []  # (started, ended) of each call
        while not big.done() and len(lists) < 8:
            started = time.perf_counter()
            listed = await client.call("list_models", {})
            lists.append((started, time.perf_counter()))
            started = time.perf_counter()
            encoded = await client.call("encode", {"texts": ["one short sentence"], "model": "tiny-encoder"})
            encodes.append((started, time.perf_counter()))
            assert listed["isError"] is False and encoded["isError"] is False
            await asyncio.sleep(0.2)
        result = await big
    # The big answer (about 20,000 entities, several MB) is parsed and validated by the SDK client in this test
    # process, on the loop that also reads the small answers; a call that overlaps that second measures the test's
    # own client, not the server, so it is left out.
    client_busy = delivered[0] - CLIENT_PARSE_S
    lists = [end - start for start, end in lists if end < client_busy]
    encodes = [end - start for start, end in encodes if end < client_busy]
    print("list_models", [round(x * 1000) for x in lists], "encode", [round(x * 1000) for x in encodes])
    assert lists, "the big extract finished before anything could be measured"
    assert result["isError"] is False and result["structuredContent"]["results"][0]["entities"]
    # Every call under 100 ms: the stalls of 0.2-0.4 s seen before were full garbage collections walking the
    # loaded libraries' objects, which servers now freeze after each load (sie_core.timing.favour_responsiveness).
    assert max(lists) < 0.1, f"list_models took up to {max(lists) * 1000:.0f} ms over stdio during the big extract"
    assert max(encodes) < 1.0, f"encode took up to {max(encodes):.2f} s over stdio during the big extract"
