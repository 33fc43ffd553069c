"""SIEReranker: a LangChain document compressor over the engine's ``score`` (cross-encoder reranking)."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.callbacks import Callbacks
from langchain_core.documents import Document
from langchain_core.documents.compressor import BaseDocumentCompressor
from pydantic import ConfigDict

from sie_core import ScoreResult
from sie_core.requests import TopK

from ._engine import SIEEngineClient

__all__ = ["SIEReranker"]


class SIEReranker(SIEEngineClient, BaseDocumentCompressor):
    """Rerank documents against a query with any score model the engine serves.

    Returns copies of the documents, best first, each with ``metadata["relevance_score"]`` — the model's
    relevance in 0..1 (the sigmoid of a cross-encoder's logit). Use it on its own or as the
    ``base_compressor`` of a ``ContextualCompressionRetriever``.

    Args:
        model: Score model id; None uses the engine's default reranker.
        top_k: Keep only the best ``top_k`` documents (default: all, reordered).
        engine: An existing :class:`sie_core.Engine`; by default the process-wide shared one.
        base_url: URL of a remote SIE-compatible server instead of in-process models.
        api_key: Bearer token for ``base_url``.

    Example:
        >>> from sie_langchain import SIEReranker
        >>> reranker = SIEReranker(model="cross-encoder/ms-marco-MiniLM-L12-v2", top_k=3)
        >>> best = reranker.compress_documents(documents, "When is invoice 4471 due?")  # doctest: +SKIP
        >>> best[0].metadata["relevance_score"]  # doctest: +SKIP
        0.99
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), arbitrary_types_allowed=True)

    model: str | None = None
    """Score model id; None uses the engine's default reranker."""
    top_k: TopK = None
    """Keep only the best ``top_k`` documents; None keeps all of them, reordered."""

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Rerank ``documents`` by relevance to ``query``, best first.

        Args:
            documents: The candidates.
            query: The query to rank them against.
            callbacks: Unused (the engine call is one step).

        Returns:
            Copies of the documents with ``relevance_score`` in their metadata, cut to ``top_k``.
        """
        if not documents:
            return []
        result = self.client.score(self.model, query, [d.page_content for d in documents], top_k=self.top_k)
        return ranked_documents(documents, result)

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Async twin of :meth:`compress_documents` (native: awaits the engine)."""
        if not documents:
            return []
        result = await self.client.ascore(self.model, query, [d.page_content for d in documents], top_k=self.top_k)
        return ranked_documents(documents, result)


def ranked_documents(documents: Sequence[Document], result: ScoreResult) -> list[Document]:
    """Copies of ``documents`` in the order of ``result`` with ``relevance_score`` added to their metadata."""
    out = []
    for entry in result.scores:
        doc = documents[entry.index]
        metadata = {**doc.metadata, "relevance_score": entry.relevance}
        out.append(Document(page_content=doc.page_content, metadata=metadata, id=doc.id))
    return out
