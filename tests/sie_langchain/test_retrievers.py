from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import RetrieversIntegrationTests

from sie_core import Engine, InvalidInputError
from sie_langchain import SIEEmbeddings, SIERetriever

from . import _shared
from ._shared import CORPUS, MINILM, TINY_ENCODER, TINY_RERANKER


class TestSIERetrieverOwnIndex(RetrieversIntegrationTests):
    """The standard suite on SIERetriever's own index with the real MiniLM weights."""

    @property
    def retriever_constructor(self) -> Callable[..., BaseRetriever]:  # type: ignore[override]
        return partial(SIERetriever.from_texts, CORPUS)

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"model": MINILM, "engine": _shared.engine()}

    @property
    def retriever_query_example(self) -> str:
        return "When is the Acme invoice due?"


class TestSIERetrieverVectorStoreRerank(RetrieversIntegrationTests):
    """The standard suite on SIERetriever over an InMemoryVectorStore, with a reranking second stage."""

    @property
    def retriever_constructor(self) -> type[SIERetriever]:
        return SIERetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        engine = _shared.engine()
        store = InMemoryVectorStore.from_texts(CORPUS, SIEEmbeddings(model=MINILM, engine=engine))
        return {"vectorstore": store, "rerank_model": TINY_RERANKER, "fetch_k": 6, "engine": engine}

    @property
    def retriever_query_example(self) -> str:
        return "Berlin office revenue"


def test_dense_search_finds_the_relevant_document(lc_engine: Engine) -> None:
    retriever = SIERetriever.from_texts(CORPUS, model=MINILM, engine=lc_engine, k=3)
    found = retriever.invoke("When is the Acme invoice due?")
    assert found[0].page_content == CORPUS[0]
    sims = [d.metadata["similarity_score"] for d in found]
    assert sims == sorted(sims, reverse=True)
    assert all(type(s) is float for s in sims)
    # cosine similarity of normalized vectors, the same as computing it from the engine's own vectors
    q = lc_engine.encode(MINILM, "When is the Acme invoice due?", is_query=True, normalize=True).dense
    d = lc_engine.encode(MINILM, CORPUS[0], normalize=True).dense
    assert sims[0] == pytest.approx(float(q @ d), abs=1e-5)
    found = retriever.invoke("Which office had revenue growth?", k=1)
    assert [doc.page_content for doc in found] == [CORPUS[1]]


def test_rerank_stage(lc_engine: Engine) -> None:
    retriever = SIERetriever.from_texts(
        CORPUS, model=MINILM, rerank_model=TINY_RERANKER, engine=lc_engine, k=2, fetch_k=5
    )
    query = "Acme invoice"
    found = retriever.invoke(query)
    assert len(found) == 2
    dense = SIERetriever.from_texts(CORPUS, model=MINILM, engine=lc_engine, k=5).invoke(query)
    expected = lc_engine.score(TINY_RERANKER, query, [d.page_content for d in dense], top_k=2)
    assert [d.page_content for d in found] == [dense[e.index].page_content for e in expected.scores]
    assert [d.metadata["relevance_score"] for d in found] == [e.relevance for e in expected.scores]
    assert all("similarity_score" in d.metadata for d in found)


def test_documents_ids_metadata_and_add_documents(lc_engine: Engine) -> None:
    retriever = SIERetriever.from_documents(
        [Document(page_content=t, metadata={"n": i}, id=f"d{i}") for i, t in enumerate(CORPUS[:4])],
        model=MINILM,
        engine=lc_engine,
        k=1,
    )
    assert len(retriever) == 4
    found = retriever.invoke("lunch menu")
    assert found[0].id == "d2" and found[0].metadata["n"] == 2
    ids = retriever.add_texts(["Quarterly tax returns are filed in April."], metadatas=[{"n": 9}])
    assert len(ids) == 1 and len(retriever) == 5
    found = retriever.invoke("When are tax returns filed?")
    assert found[0].id == ids[0] and found[0].metadata["n"] == 9
    with pytest.raises(InvalidInputError, match="empty"):
        retriever.add_texts(["  "])
    with pytest.raises(InvalidInputError, match="metadatas"):
        retriever.add_texts(["a", "b"], metadatas=[{}])


async def test_async_matches_sync_and_awaits_the_engine(lc_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    retriever = SIERetriever.from_texts(CORPUS, model=MINILM, rerank_model=TINY_RERANKER, engine=lc_engine, k=3)
    ids = await retriever.aadd_documents([Document(page_content="Tax returns are filed in April.", id="tax")])
    assert ids == ["tax"]
    sync = retriever.invoke("Berlin revenue")

    def no_sync(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the async path must await the engine")

    monkeypatch.setattr(Engine, "encode", no_sync)
    monkeypatch.setattr(Engine, "score", no_sync)
    assert await retriever.ainvoke("Berlin revenue") == sync
    assert len(retriever) == len(CORPUS) + 1
    dense = SIERetriever(model=MINILM, engine=lc_engine)
    await dense.aadd_documents([Document(page_content=t) for t in CORPUS])
    await dense.aadd_documents([Document(page_content="Tax returns are filed in April.", id="tax")])
    assert (await dense.ainvoke("When are tax returns filed?", k=1))[0].id == "tax"


def test_one_corpus_searched_with_several_encoders(lc_engine: Engine) -> None:
    retriever = SIERetriever.from_texts(CORPUS, model=MINILM, engine=lc_engine, k=len(CORPUS))
    with_minilm = retriever.invoke("invoice")
    with_tiny = retriever.invoke("invoice", model=TINY_ENCODER)
    assert len(with_tiny) == len(with_minilm) == len(CORPUS)
    tiny_q = lc_engine.encode(TINY_ENCODER, "invoice", is_query=True, normalize=True).dense
    for doc in with_tiny:
        d = lc_engine.encode(TINY_ENCODER, doc.page_content, normalize=True).dense
        assert doc.metadata["similarity_score"] == pytest.approx(float(tiny_q @ d), abs=1e-5)
    assert sorted(retriever._index) == sorted([MINILM, TINY_ENCODER])


def test_empty_corpus_and_bad_arguments(lc_engine: Engine) -> None:
    retriever = SIERetriever(model=MINILM, engine=lc_engine)
    assert retriever.invoke("anything") == []
    for bad in (0, -1, True, "3"):
        with pytest.raises(InvalidInputError, match="k must be"):
            retriever.search("anything", k=bad)  # type: ignore[arg-type]
    store = InMemoryVectorStore(SIEEmbeddings(model=MINILM, engine=lc_engine))
    with pytest.raises(ValueError, match="leave model unset"):
        SIERetriever(vectorstore=store, model=MINILM)
    over_store = SIERetriever(vectorstore=store, engine=lc_engine)
    with pytest.raises(InvalidInputError, match="cannot be chosen per call"):
        over_store.invoke("anything", model=MINILM)


def test_over_a_vector_store(lc_engine: Engine) -> None:
    store = InMemoryVectorStore(SIEEmbeddings(model=MINILM, engine=lc_engine))
    retriever = SIERetriever(vectorstore=store, engine=lc_engine, k=2)
    ids = retriever.add_documents([Document(page_content=t) for t in CORPUS])
    assert len(ids) == len(CORPUS)
    found = retriever.invoke("vegetarian lunch")
    assert len(found) == 2 and found[0].page_content == CORPUS[2]
    assert found[0].metadata["similarity_score"] >= found[1].metadata["similarity_score"]
