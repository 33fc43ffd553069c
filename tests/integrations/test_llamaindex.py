"""sie-llamaindex against `sie-agents serve`: embeddings in a VectorStoreIndex, the node postprocessor, async."""

from __future__ import annotations

import numpy as np
import pytest

from sie_core import Engine

from ._checks import assert_close, assert_entities, assert_ranking, cosine
from ._support import DOCS, ENCODER, LABELS, NER, NER_TEXT, QUERY, RELEVANT, RERANKER, SPLADE, need

need("llama_index.core", "sie_llamaindex")

from llama_index.core import Document, VectorStoreIndex  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.schema import NodeWithScore, TextNode  # noqa: E402
from sie_llamaindex import (  # noqa: E402
    SIEEmbedding,
    SIENodePostprocessor,
    SIESparseEmbeddingFunction,
    create_sie_extractor_tool,
)


@pytest.fixture(scope="module")
def index(server: str) -> VectorStoreIndex:
    embedding = SIEEmbedding(base_url=server, model_name=ENCODER)
    return VectorStoreIndex.from_documents([Document(text=t) for t in DOCS], embed_model=embedding)


def test_vector_store_index_holds_the_engines_vectors(index: VectorStoreIndex, reference: Engine) -> None:
    want = {t: r.dense for t, r in zip(DOCS, reference.encode(ENCODER, DOCS))}
    stored = index.vector_store.to_dict()["embedding_dict"]
    assert len(stored) == len(DOCS)
    for node_id, vector in stored.items():
        assert_close(vector, want[index.docstore.get_node(node_id).get_content()])


def test_vector_store_index_query_finds_the_relevant_document(index: VectorStoreIndex, reference: Engine) -> None:
    nodes = index.as_retriever(similarity_top_k=3).retrieve(QUERY)
    assert nodes[0].node.get_content() == DOCS[RELEVANT]
    query = reference.encode(ENCODER, QUERY, is_query=True).dense
    for node in nodes:
        document = reference.encode(ENCODER, node.node.get_content()).dense
        assert node.score == pytest.approx(cosine(query, document), abs=1e-5)
    embedding = index._embed_model  # the SIEEmbedding the index was built with
    assert_close(embedding.get_query_embedding(QUERY), query)


def test_node_postprocessor_reranks_as_the_engine(server: str, reference: Engine) -> None:
    nodes = [NodeWithScore(node=TextNode(text=t), score=0.0) for t in reversed(DOCS)]
    reranked = SIENodePostprocessor(base_url=server, model=RERANKER, top_n=3).postprocess_nodes(nodes, query_str=QUERY)
    assert len(reranked) == 3 and reranked[0].node.get_content() == DOCS[RELEVANT]
    texts = list(reversed(DOCS))
    assert_ranking(
        [(n.node.get_content(), float(n.score or 0.0)) for n in reranked],
        reference.score(RERANKER, QUERY, texts),
        texts,
    )


def test_query_engine_with_the_reranker(index: VectorStoreIndex, server: str) -> None:
    reranker = SIENodePostprocessor(base_url=server, model=RERANKER, top_n=2)
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=4, node_postprocessors=[reranker])
    answer = engine.query(QUERY)
    assert len(answer.source_nodes) == 2 and answer.source_nodes[0].node.get_content() == DOCS[RELEVANT]
    assert answer.source_nodes[0].score is not None and answer.source_nodes[0].score > answer.source_nodes[1].score


async def test_async_embeddings(server: str, reference: Engine) -> None:
    embedding = SIEEmbedding(base_url=server, model_name=ENCODER)
    try:
        query = await embedding.aget_query_embedding(QUERY)
        documents = await embedding.aget_text_embedding_batch(DOCS)  # one request per text, all at once
    finally:
        await embedding.async_client.close()
    assert_close(query, reference.encode(ENCODER, QUERY, is_query=True).dense)
    assert_close(np.array(documents), np.stack([r.dense for r in reference.encode(ENCODER, DOCS)]))


def test_sparse_embedding_function(server: str, reference: Engine) -> None:
    sparse = SIESparseEmbeddingFunction(base_url=server, model_name=SPLADE)
    indices, values = sparse.encode_queries([QUERY])
    want = reference.encode(SPLADE, QUERY, output_types=["sparse"], is_query=True).sparse
    assert want is not None and list(indices[0]) == want.indices.tolist()
    assert_close(values[0], want.values)
    doc_indices, doc_values = sparse.encode_documents(DOCS[:2])
    for got_i, got_v, result in zip(
        doc_indices, doc_values, reference.encode(SPLADE, DOCS[:2], output_types=["sparse"])
    ):
        assert result.sparse is not None and list(got_i) == result.sparse.indices.tolist()
        assert_close(got_v, result.sparse.values)


def test_extractor_tool(server: str, reference: Engine) -> None:
    tool = create_sie_extractor_tool(base_url=server, model=NER, labels=LABELS)
    found = tool.call(text=NER_TEXT).raw_output
    assert_entities(found["entities"], reference.extract(NER, NER_TEXT, labels=LABELS))
    assert found["relations"] == [] and found["classifications"] == []
