"""sie-dspy against `sie-agents serve`: the embedder in dspy.retrievers.Embeddings, the reranker and extractor."""

from __future__ import annotations

import numpy as np

from sie_core import Engine

from ._checks import assert_close, assert_entities, assert_ranking, cosine
from ._support import DOCS, ENCODER, LABELS, NER, NER_TEXT, QUERY, RELEVANT, RERANKER, SPLADE, need

need("dspy", "sie_dspy")

import dspy  # noqa: E402
from sie_dspy import SIEEmbedder, SIEExtractor, SIEReranker, SIESparseEmbedder  # noqa: E402


def test_embedder_in_an_embeddings_retriever(server: str, reference: Engine) -> None:
    embedder = SIEEmbedder(base_url=server, model=ENCODER)
    retriever = dspy.retrievers.Embeddings(corpus=DOCS, embedder=embedder, k=3)
    found = retriever(QUERY)
    assert found.passages[0] == DOCS[RELEVANT] and found.indices[0] == RELEVANT
    # dspy ranks by the dot product of the vectors the server gave; the engine's give the same order
    corpus = np.stack([r.dense for r in reference.encode(ENCODER, DOCS)])
    query = reference.encode(ENCODER, QUERY).dense  # the retriever embeds queries as a list: no is_query
    assert list(found.indices) == list(np.argsort(-(corpus @ query), kind="stable")[:3])
    assert_close(retriever.corpus_embeddings, corpus)


def test_embedder_alone(server: str, reference: Engine) -> None:
    embedder = SIEEmbedder(base_url=server, model=ENCODER)
    one = embedder(QUERY)
    assert one.shape == (384,) and one.dtype == np.float32
    assert_close(one, reference.encode(ENCODER, QUERY, is_query=True).dense)
    many = embedder(DOCS[:2])
    assert_close(many, np.stack([r.dense for r in reference.encode(ENCODER, DOCS[:2])]))
    assert cosine(one, many[0]) > cosine(one, many[1])


def test_reranker_module(server: str, reference: Engine) -> None:
    passages = list(reversed(DOCS))
    ranked = SIEReranker(base_url=server, model=RERANKER)(query=QUERY, passages=passages, k=3)
    assert ranked.passages[0] == DOCS[RELEVANT] and len(ranked.passages) == 3
    assert_ranking(zip(ranked.passages, ranked.scores), reference.score(RERANKER, QUERY, passages), passages)


def test_extractor_module(server: str, reference: Engine) -> None:
    found = SIEExtractor(base_url=server, model=NER, labels=LABELS)(text=NER_TEXT)
    want = reference.extract(NER, NER_TEXT, labels=LABELS)
    assert_entities(found.entities, want)
    assert_entities(found.entities_dict, want)
    assert found.relations == [] and found.classifications == []


def test_sparse_embedder(server: str, reference: Engine) -> None:
    sparse = SIESparseEmbedder(base_url=server, model=SPLADE)
    query = sparse.embed_query(QUERY)
    want = reference.encode(SPLADE, QUERY, output_types=["sparse"], is_query=True).sparse
    assert want is not None and list(query["indices"]) == want.indices.tolist()
    assert_close(query["values"], want.values)
    for got, result in zip(
        sparse.embed_documents(DOCS[:2]), reference.encode(SPLADE, DOCS[:2], output_types=["sparse"])
    ):
        assert result.sparse is not None and list(got["indices"]) == result.sparse.indices.tolist()
        assert_close(got["values"], result.sparse.values)
