"""sie-chroma against `sie-agents serve`: its embedding function in an embedded chromadb collection (add + query)."""

from __future__ import annotations

import uuid
import warnings

import numpy as np
import pytest

from sie_core import Engine

from ._checks import assert_close, cosine
from ._support import DOCS, ENCODER, QUERY, RELEVANT, SPLADE, need

need("chromadb", "sie_chroma")

import chromadb  # noqa: E402
from sie_chroma import SIEEmbeddingFunction, SIESparseEmbeddingFunction  # noqa: E402


def test_collection_add_and_query(server: str, reference: Engine) -> None:
    function = SIEEmbeddingFunction(base_url=server, model=ENCODER)
    client = chromadb.EphemeralClient(settings=chromadb.Settings(anonymized_telemetry=False))
    with warnings.catch_warnings():
        # a legacy embedding function (it defines no name()); chromadb warns and uses it as given
        warnings.simplefilter("ignore", DeprecationWarning)
        collection = client.create_collection(
            f"docs-{uuid.uuid4().hex}",  # ephemeral clients share one store per process
            embedding_function=function,  # type: ignore[arg-type]
            configuration={"hnsw": {"space": "cosine"}},
        )
    ids = [f"d{i}" for i in range(len(DOCS))]
    collection.add(ids=ids, documents=DOCS)
    stored = collection.get(ids=ids, include=["embeddings"])
    want = {f"d{i}": r.dense for i, r in enumerate(reference.encode(ENCODER, DOCS))}
    for item_id, vector in zip(stored["ids"], stored["embeddings"]):
        assert_close(vector, want[item_id])

    found = collection.query(query_texts=[QUERY], n_results=3, include=["documents", "distances"])
    assert found["ids"][0][0] == f"d{RELEVANT}" and found["documents"][0][0] == DOCS[RELEVANT]
    query = reference.encode(ENCODER, QUERY, is_query=True).dense
    for item_id, distance in zip(found["ids"][0], found["distances"][0]):
        assert distance == pytest.approx(1 - cosine(query, want[item_id]), abs=1e-4)  # hnsw keeps float32


def test_embedding_function_alone(server: str, reference: Engine) -> None:
    function = SIEEmbeddingFunction(base_url=server, model=ENCODER)
    documents = function(DOCS[:2])
    assert_close(np.stack(documents), np.stack([r.dense for r in reference.encode(ENCODER, DOCS[:2])]))
    queries = function.embed_query([QUERY])
    assert_close(queries[0], reference.encode(ENCODER, QUERY, is_query=True).dense)


def test_sparse_embedding_function(server: str, reference: Engine) -> None:
    function = SIESparseEmbeddingFunction(base_url=server, model=SPLADE)
    for got, result in zip(function(DOCS[:2]), reference.encode(SPLADE, DOCS[:2], output_types=["sparse"])):
        assert result.sparse is not None
        assert sorted(got) == result.sparse.indices.tolist()
        assert_close([got[i] for i in result.sparse.indices.tolist()], result.sparse.values)
    query = function.embed_query([QUERY])[0]
    want = reference.encode(SPLADE, QUERY, output_types=["sparse"], is_query=True).sparse
    assert want is not None and sorted(query) == want.indices.tolist()
