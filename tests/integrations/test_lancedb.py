"""sie-lancedb against `sie-agents serve`: the embedding functions in an embedded table, the reranker, the extractor.

Its embedding functions size the vector column from ``GET /v1/models/{model}`` before anything is encoded; the
encoder here is configured by folder with no ``dims``, so that answer comes from the model's files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sie_core import Engine

from ._checks import assert_close, assert_entities, cosine
from ._support import COLBERT, DOCS, ENCODER, LABELS, NER, QUERY, RELEVANT, RERANKER, need

need("lancedb", "lance", "sie_lancedb")

import lancedb  # noqa: E402
import sie_lancedb  # noqa: E402  (importing it registers "sie" and "sie-multivector")
from lancedb.embeddings import get_registry  # noqa: E402
from lancedb.index import FTS  # noqa: E402
from lancedb.pydantic import LanceModel, MultiVector, Vector  # noqa: E402


@pytest.fixture(scope="module")
def table(server: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    function = get_registry().get("sie").create(model=ENCODER, base_url=server, max_retries=0)
    assert function.ndims() == 384  # the encoder is not loaded yet: read from its files

    class Docs(LanceModel):
        id: int
        text: str = function.SourceField()
        vector: Vector(function.ndims()) = function.VectorField()  # type: ignore[valid-type]

    db = lancedb.connect(tmp_path_factory.mktemp("lancedb"))
    table = db.create_table("docs", schema=Docs)
    table.add([{"id": i, "text": t} for i, t in enumerate(DOCS)])  # embedded by the function
    return table


def test_table_add_and_search(table: Any, reference: Engine) -> None:
    rows = {r["text"]: r["vector"] for r in table.to_arrow().to_pylist()}
    want = {t: r.dense for t, r in zip(DOCS, reference.encode(ENCODER, DOCS))}
    assert rows.keys() == want.keys()
    for text, vector in rows.items():
        assert_close(vector, want[text])
    found = table.search(QUERY).distance_type("cosine").limit(3).to_list()
    assert found[0]["text"] == DOCS[RELEVANT]
    query = reference.encode(ENCODER, QUERY).dense  # LanceDB embeds queries like documents (no is_query)
    for row in found:
        assert row["_distance"] == pytest.approx(1 - cosine(query, want[row["text"]]), abs=1e-5)


def test_reranker_in_a_hybrid_search(table: Any, server: str, reference: Engine) -> None:
    table.create_index("text", config=FTS(), replace=True)  # the full-text side (the column comes first)
    reranker = sie_lancedb.SIEReranker(base_url=server, model=RERANKER)
    found = table.search(QUERY, query_type="hybrid").rerank(reranker).limit(3).to_list()
    assert found[0]["text"] == DOCS[RELEVANT]
    scores = [r["_relevance_score"] for r in found]
    assert scores == sorted(scores, reverse=True)
    texts = [r["text"] for r in found]
    want = {texts[e.index]: e.score for e in reference.score(RERANKER, QUERY, texts).scores}
    assert_close(scores, [want[t] for t in texts])  # _relevance_score is float32


def test_extractor_enriches_the_table(table: Any, server: str, reference: Engine) -> None:
    extractor = sie_lancedb.SIEExtractor(base_url=server, model=NER)
    extractor.enrich_table(table, source_column="text", target_column="entities", labels=LABELS, id_column="id")
    rows = table.to_arrow().to_pylist()
    assert {r["text"] for r in rows} == set(DOCS)
    with_entities = 0
    for row, want in zip(rows, reference.extract(NER, [r["text"] for r in rows], labels=LABELS)):
        if want.entities:
            with_entities += 1
            assert_entities(row["entities"], want)
        else:
            assert row["entities"] == []
    assert with_entities >= 2


def test_multivector_table(server: str, reference: Engine, tmp_path: Path) -> None:
    function = get_registry().get("sie-multivector").create(model=COLBERT, base_url=server, max_retries=0)
    assert function.ndims() == 128

    class MultiDocs(LanceModel):
        text: str = function.SourceField()
        vector: MultiVector(function.ndims()) = function.VectorField()  # type: ignore[valid-type]

    table = lancedb.connect(tmp_path).create_table("multi", schema=MultiDocs)
    # Workaround for a LanceDB 0.40 bug: its auto-embedding on add keeps a vector only when len(vector) equals
    # ndims(), which for a multi-vector compares the token count with the token dimension and silently stores
    # None for (nearly) every row. So the documents are embedded here through the same function and added with
    # their vectors; the query side still goes through LanceDB's auto-embedding (with is_query=True).
    vectors = function.compute_source_embeddings(DOCS)
    table.add([{"text": t, "vector": v} for t, v in zip(DOCS, vectors)])
    for got, result in zip(vectors, reference.encode(COLBERT, DOCS, output_types=["multivector"])):
        assert_close(got, result.multivector)
    query = function.compute_query_embeddings(QUERY)[0]
    assert_close(query, reference.encode(COLBERT, QUERY, output_types=["multivector"], is_query=True).multivector)

    found = table.search(QUERY).limit(3).to_list()
    assert found[0]["text"] == DOCS[RELEVANT]
    maxsim = reference.score(COLBERT, QUERY, DOCS)  # the engine's late-interaction score (MaxSim)
    assert [r["text"] for r in found] == [DOCS[e.index] for e in maxsim.scores[:3]]
    assert np.isfinite([r["_distance"] for r in found]).all()
