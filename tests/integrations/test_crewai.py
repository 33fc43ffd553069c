"""sie-crewai against `sie-agents serve`: its tools run directly with their argument schemas (no agent, no LLM)."""

from __future__ import annotations

import re

import pytest

from sie_core import Engine

from ._checks import assert_close
from ._support import DOCS, LABELS, NER, NER_TEXT, QUERY, RELEVANT, RERANKER, SPLADE, need

need("crewai", "sie_crewai")

from sie_crewai import SIEExtractorTool, SIERerankerTool, SIESparseEmbedder  # noqa: E402

_RANKED = re.compile(r"^(\d+)\. \[Score: (-?\d+\.\d{4})\] (.*)$")
_ENTITY = re.compile(r"^- (.*) \((.*)\) \[confidence: (\d\.\d\d)\]$")


def test_reranker_tool(server: str, reference: Engine) -> None:
    tool = SIERerankerTool(base_url=server, model=RERANKER)
    assert set(tool.args_schema.model_json_schema()["properties"]) == {"query", "documents", "top_k"}
    documents = list(reversed(DOCS))
    text = tool.run(query=QUERY, documents=documents, top_k=3)
    lines = text.splitlines()
    assert lines[0] == "Ranked documents (most relevant first):" and len(lines) == 4
    rows = [_RANKED.match(line) for line in lines[1:]]
    assert all(rows), text
    want = reference.score(RERANKER, QUERY, documents).scores[:3]
    assert [m.group(3) for m in rows if m] == [documents[e.index] for e in want]
    assert rows[0] is not None and rows[0].group(3) == DOCS[RELEVANT]
    assert_close([float(m.group(2)) for m in rows if m], [e.score for e in want], 5e-5)  # printed to 4 places


def test_reranker_tool_validates_its_arguments(server: str) -> None:
    tool = SIERerankerTool(base_url=server, model=RERANKER)
    with pytest.raises(Exception, match="documents"):
        tool.run(query=QUERY, documents="not a list")
    assert tool.run(query=QUERY, documents=[]) == "No documents provided to rerank."


def test_extractor_tool(server: str, reference: Engine) -> None:
    tool = SIEExtractorTool(base_url=server, model=NER, labels=LABELS)
    assert set(tool.args_schema.model_json_schema()["properties"]) == {"text", "labels"}
    text = tool.run(text=NER_TEXT)
    lines = text.splitlines()
    assert lines[0] == "Extracted entities:", text
    rows = [_ENTITY.match(line) for line in lines[1:]]
    assert all(rows), text
    want = reference.extract(NER, NER_TEXT, labels=LABELS).entities
    assert want and [(m.group(1), m.group(2)) for m in rows if m] == [(e.text, e.label) for e in want]
    assert_close([float(m.group(3)) for m in rows if m], [e.score for e in want], 5e-3)  # printed to 2 places
    only_people = tool.run(text=NER_TEXT, labels=["person"])
    people = [e.text for e in reference.extract(NER, NER_TEXT, labels=["person"]).entities]
    assert people and [m.group(1) for m in map(_ENTITY.match, only_people.splitlines()[1:]) if m] == people


def test_sparse_embedder(server: str, reference: Engine) -> None:
    sparse = SIESparseEmbedder(base_url=server, model=SPLADE)
    query = sparse.embed_query(QUERY)
    want = reference.encode(SPLADE, QUERY, output_types=["sparse"], is_query=True).sparse
    assert want is not None and list(query["indices"]) == want.indices.tolist()
    assert_close(query["values"], want.values)
    got = sparse.embed_documents([DOCS[0]])[0]
    document = reference.encode(SPLADE, DOCS[0], output_types=["sparse"]).sparse
    assert document is not None and list(got["indices"]) == document.indices.tolist()
