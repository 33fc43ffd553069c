"""sie_langchain: LangChain classes over the sie_core engine — the model is an argument of every class.

``SIEEmbeddings`` (an ``Embeddings`` for vector stores), ``SIESparseEncoder`` (SPLADE vectors for hybrid
search), ``SIEReranker`` (a document compressor), ``SIERetriever`` (dense or hybrid dense + sparse search,
plus optional cross-encoder or ColBERT reranking), ``SIEExtractor`` (an agent tool) and ``SIEToolkit``
(search, rerank and extract tools whose ``model`` argument lets the agent pick the model).
Class names and constructor arguments follow SIE's own ``sie-langchain`` package, but the models run in
this process through one shared :class:`sie_core.Engine` (no server to start); ``base_url=`` talks to a
remote SIE-compatible server instead.

>>> from sie_langchain import SIEEmbeddings, SIEReranker
>>> embeddings = SIEEmbeddings(model="sentence-transformers/all-MiniLM-L6-v2")  # nothing loads yet
>>> reranker = SIEReranker(top_k=3)  # same process-wide engine as embeddings
"""

from __future__ import annotations

from ._engine import SIEEngineClient, default_engine, remote_engine, set_default_engine
from .embeddings import SIEEmbeddings
from .rerankers import SIEReranker
from .retrievers import SIERetriever
from .sparse import SIESparseEncoder
from .toolkits import SIEToolkit
from .tools import SIEExtractor, SIERerankTool, SIESearchTool

__all__ = [
    "SIEEmbeddings",
    "SIEEngineClient",
    "SIEExtractor",
    "SIERerankTool",
    "SIEReranker",
    "SIERetriever",
    "SIESearchTool",
    "SIESparseEncoder",
    "SIEToolkit",
    "default_engine",
    "remote_engine",
    "set_default_engine",
]
