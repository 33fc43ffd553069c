"""The LangChain classes with ``base_url=``: against a live `sie-agents serve` app they give the local results."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document

from sie_core import Engine, EngineConfig, ModelSpec
from sie_langchain import SIEEmbeddings, SIEReranker
from sie_server.app import create_app
from sie_server.common import ServerSettings

from ..sie_server.http_server import MINILM, serve_in_thread

pytestmark = pytest.mark.slow

RERANK = "tiny/reranker"


@pytest.fixture(scope="module")
def local(tiny_models: dict[str, Path]) -> Iterator[Engine]:
    specs = (ModelSpec(id=RERANK, task="score", path=str(tiny_models["cross_encoder"])),)
    engine = Engine(EngineConfig(device="cpu", offline=True, allow_local_paths=False, models=specs))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def url(local: Engine) -> Iterator[str]:
    with serve_in_thread(create_app(local, ServerSettings(auth_token="lc-token"))) as base:
        yield base


def test_embeddings_with_base_url(url: str, local: Engine) -> None:
    texts = ["Berlin office revenue", "Invoice 4471 from Acme GmbH"]
    remote = SIEEmbeddings(model=MINILM, base_url=url, api_key="lc-token")
    here = SIEEmbeddings(model=MINILM, engine=local)
    np.testing.assert_allclose(remote.embed_documents(texts), here.embed_documents(texts), atol=1e-6)
    np.testing.assert_allclose(remote.embed_query("Berlin"), here.embed_query("Berlin"), atol=1e-6)
    assert isinstance(remote.embed_query("Berlin")[0], float)


async def test_reranker_with_base_url(url: str, local: Engine) -> None:
    docs = [Document(page_content=t) for t in ("Berlin revenue grew", "the cat sat", "office costs in Berlin")]
    remote = SIEReranker(model=RERANK, top_k=2, base_url=url, api_key="lc-token")
    here = SIEReranker(model=RERANK, top_k=2, engine=local)
    got = await remote.acompress_documents(docs, "Berlin office revenue")
    want = here.compress_documents(docs, "Berlin office revenue")
    assert [d.page_content for d in got] == [d.page_content for d in want]
    for g, w in zip(got, want):
        assert g.metadata["relevance_score"] == pytest.approx(w.metadata["relevance_score"], abs=1e-6)
