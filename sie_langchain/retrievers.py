"""SIERetriever: two-stage retrieval — dense search with an encode model, then optional reranking."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from sie_core import InvalidInputError

from ._engine import SIEEngineClient
from .embeddings import _chunks
from .rerankers import ranked_documents

__all__ = ["SIERetriever"]


class SIERetriever(SIEEngineClient, BaseRetriever):
    """Search a corpus with an encode model, then (optionally) rerank the candidates with a score model.

    Two ways to hold the corpus:

    * its own in-memory index — build it with :meth:`from_texts` / :meth:`from_documents` and grow it with
      :meth:`add_documents`. Documents are embedded once per encode model (the configured one eagerly, any
      other model named per call on first use), so one corpus can be searched with several models;
    * any LangChain ``VectorStore`` (``vectorstore=``) — its own embeddings do the first stage.

    Returned documents carry ``metadata["similarity_score"]`` (cosine similarity for the own index, the
    store's score for a VectorStore) and, when reranked, ``metadata["relevance_score"]`` (0..1).

    Args:
        model: Encode model for the own index; None uses the engine's default encoder.
        rerank_model: Score model for the second stage; None skips reranking.
        k: Documents to return (per call: ``invoke(query, k=2)``).
        fetch_k: Candidates the first stage hands to the reranker.
        instruction: Task instruction for instruction-tuned encode models.
        vectorstore: Search this store instead of the own index.
        search_kwargs: Extra arguments for the store's ``similarity_search_with_score`` (e.g. ``filter``).
        engine: An existing :class:`sie_core.Engine`; by default the process-wide shared one.
        base_url: URL of a remote SIE-compatible server instead of in-process models.
        api_key: Bearer token for ``base_url``.

    Example:
        >>> from sie_langchain import SIERetriever
        >>> rerank = "cross-encoder/ms-marco-MiniLM-L12-v2"
        >>> retriever = SIERetriever.from_texts(texts, k=3, rerank_model=rerank)  # doctest: +SKIP
        >>> retriever.invoke("When is invoice 4471 due?")  # doctest: +SKIP
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), arbitrary_types_allowed=True)

    model: str | None = None
    """Encode model for the own index; None uses the engine's default encoder."""
    rerank_model: str | None = None
    """Score model that reranks the first-stage candidates; None returns them as they are."""
    k: int = Field(default=4, gt=0)
    """How many documents to return."""
    fetch_k: int = Field(default=20, gt=0)
    """How many first-stage candidates the reranker sees (at least ``k``)."""
    instruction: str | None = None
    """Task instruction for instruction-tuned encode models."""
    vectorstore: VectorStore | None = None
    """Search this LangChain vector store instead of the own index."""
    search_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra keyword arguments for the vector store's search."""

    _docs: list[Document] = PrivateAttr(default_factory=list)
    _index: dict[str, np.ndarray] = PrivateAttr(default_factory=dict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @model_validator(mode="after")
    def _check_sources(self) -> SIERetriever:
        if self.vectorstore is not None and self.model is not None:
            raise InvalidInputError(
                "model names the encoder of SIERetriever's own index; a vectorstore embeds queries with its own "
                "embeddings (e.g. SIEEmbeddings(model=...)), so leave model unset when passing vectorstore"
            )
        return self

    # ------------------------------------------------------------------ building the corpus
    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        metadatas: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> SIERetriever:
        """A retriever over ``texts`` (embedded now with ``model``); ``kwargs`` go to the constructor."""
        retriever = cls(**kwargs)
        retriever.add_texts(texts, metadatas=metadatas, ids=ids)
        return retriever

    @classmethod
    def from_documents(cls, documents: Iterable[Document], **kwargs: Any) -> SIERetriever:
        """A retriever over ``documents`` (embedded now with ``model``); ``kwargs`` go to the constructor."""
        retriever = cls(**kwargs)
        retriever.add_documents(list(documents))
        return retriever

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Add texts to the corpus; returns their ids."""
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise InvalidInputError(f"metadatas has {len(metadatas)} entries for {len(texts)} texts")
        if ids is not None and len(ids) != len(texts):
            raise InvalidInputError(f"ids has {len(ids)} entries for {len(texts)} texts")
        docs = [
            Document(page_content=t, metadata=dict(metadatas[i]) if metadatas else {}, id=ids[i] if ids else None)
            for i, t in enumerate(texts)
        ]
        return self.add_documents(docs)

    def add_documents(self, documents: Sequence[Document], **kwargs: Any) -> list[str]:
        """Add documents to the corpus (or the vector store); returns their ids.

        With the own index the documents are embedded now with ``model`` (other models embed them on their
        first search). ``kwargs`` go to the vector store's ``add_documents``.
        """
        if self.vectorstore is not None:
            return self.vectorstore.add_documents(list(documents), **kwargs)
        if kwargs:
            raise InvalidInputError(f"unexpected argument(s) {', '.join(sorted(kwargs))} for the own index")
        docs = self._append(documents)
        if docs:
            self._matrix(self._model_name(None))
        return [d.id for d in docs if d.id is not None]

    async def aadd_documents(self, documents: Sequence[Document], **kwargs: Any) -> list[str]:
        """Async twin of :meth:`add_documents`."""
        if self.vectorstore is not None:
            return await self.vectorstore.aadd_documents(list(documents), **kwargs)
        if kwargs:
            raise InvalidInputError(f"unexpected argument(s) {', '.join(sorted(kwargs))} for the own index")
        docs = self._append(documents)
        if docs:
            await self._amatrix(self._model_name(None))
        return [d.id for d in docs if d.id is not None]

    def _append(self, documents: Sequence[Document]) -> list[Document]:
        for doc in documents:
            if not isinstance(doc, Document):
                raise InvalidInputError(f"documents must be langchain Document objects, got {type(doc).__name__}")
            if not doc.page_content.strip():
                raise InvalidInputError("a document has empty page_content; every document needs text to embed")
        with self._lock:
            # A document without an id gets its position in the corpus: short, stable, and easy for an agent to cite.
            start = len(self._docs)
            docs = [
                Document(page_content=d.page_content, metadata=dict(d.metadata), id=d.id or str(start + i))
                for i, d in enumerate(documents)
            ]
            self._docs.extend(docs)
        return docs

    def __len__(self) -> int:
        """Documents in the own index."""
        return len(self._docs)

    # ------------------------------------------------------------------ the own index
    def _model_name(self, model: str | None) -> str:
        if model is not None and self.vectorstore is not None:
            raise InvalidInputError(
                f"model={model!r} cannot be chosen per call for a retriever over a vectorstore; "
                "the store embeds queries with its own embeddings"
            )
        return model or self.model or self.client.default_model("encode")

    def _pending(self, model: str) -> tuple[int, list[str]]:
        with self._lock:
            have = self._index.get(model)
            done = 0 if have is None else len(have)
            return done, [d.page_content for d in self._docs[done:]]

    def _store(self, model: str, done: int, rows: list[np.ndarray]) -> None:
        with self._lock:
            have = self._index.get(model)
            if (0 if have is None else len(have)) != done:
                return  # someone else embedded these rows meanwhile; the caller re-checks
            block = np.stack(rows).astype(np.float32, copy=False)
            self._index[model] = block if have is None else np.concatenate([have, block])

    def _matrix(self, model: str) -> np.ndarray:
        """The corpus vectors for ``model``, embedding any documents that do not have one yet."""
        while True:
            done, texts = self._pending(model)
            if not texts:
                return self._index.get(model, np.zeros((0, 0), dtype=np.float32))
            rows: list[np.ndarray] = []
            for chunk in _chunks(texts):
                results = self.client.encode(model, chunk, instruction=self.instruction, normalize=True)
                rows.extend(r.dense_vector() for r in results)
            self._store(model, done, rows)

    async def _amatrix(self, model: str) -> np.ndarray:
        while True:
            done, texts = self._pending(model)
            if not texts:
                return self._index.get(model, np.zeros((0, 0), dtype=np.float32))
            rows: list[np.ndarray] = []
            for chunk in _chunks(texts):
                results = await self.client.aencode(model, chunk, instruction=self.instruction, normalize=True)
                rows.extend(r.dense_vector() for r in results)
            self._store(model, done, rows)

    def _nearest(self, matrix: np.ndarray, query: np.ndarray, n: int) -> list[Document]:
        if len(matrix) == 0:
            return []
        sims = matrix @ np.asarray(query, dtype=np.float32)
        n = min(n, len(sims))
        top = np.argpartition(-sims, n - 1)[:n] if n < len(sims) else np.arange(len(sims))
        order = sorted(top.tolist(), key=lambda i: (-sims[i], i))
        with self._lock:
            docs = [self._docs[i] for i in order]
        return [
            Document(page_content=d.page_content, metadata={**d.metadata, "similarity_score": float(sims[i])}, id=d.id)
            for d, i in zip(docs, order)
        ]

    # ------------------------------------------------------------------ search
    def _sizes(self, k: int | None) -> tuple[int, int]:
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
            raise InvalidInputError(f"k must be a positive integer, got {k!r}")
        want = k or self.k
        return want, max(want, self.fetch_k) if self.rerank_model else want

    def search(self, query: str, *, k: int | None = None, model: str | None = None) -> list[Document]:
        """The best ``k`` documents for ``query`` (dense search, then reranking when configured).

        Args:
            query: The search query (embedded with the model's query prompt).
            k: How many documents to return (default: the retriever's ``k``).
            model: Encode model for this search (own index only; default: the retriever's ``model``).
        """
        want, fetch = self._sizes(k)
        if self.vectorstore is not None:
            self._model_name(model)
            pairs = self.vectorstore.similarity_search_with_score(query, k=fetch, **self.search_kwargs)
            candidates = [_with_similarity(d, s) for d, s in pairs]
        else:
            name = self._model_name(model)
            matrix = self._matrix(name)
            if len(matrix) == 0:
                return []
            q = self.client.encode(name, query, instruction=self.instruction, is_query=True, normalize=True)
            candidates = self._nearest(matrix, q.dense_vector(), fetch)
        if self.rerank_model is None or not candidates:
            return candidates[:want]
        result = self.client.score(self.rerank_model, query, [d.page_content for d in candidates], top_k=want)
        return ranked_documents(candidates, result)

    async def asearch(self, query: str, *, k: int | None = None, model: str | None = None) -> list[Document]:
        """Async twin of :meth:`search` (native: awaits the engine)."""
        want, fetch = self._sizes(k)
        if self.vectorstore is not None:
            self._model_name(model)
            pairs = await self.vectorstore.asimilarity_search_with_score(query, k=fetch, **self.search_kwargs)
            candidates = [_with_similarity(d, s) for d, s in pairs]
        else:
            name = self._model_name(model)
            matrix = await self._amatrix(name)
            if len(matrix) == 0:
                return []
            q = await self.client.aencode(name, query, instruction=self.instruction, is_query=True, normalize=True)
            candidates = self._nearest(matrix, q.dense_vector(), fetch)
        if self.rerank_model is None or not candidates:
            return candidates[:want]
        result = await self.client.ascore(self.rerank_model, query, [d.page_content for d in candidates], top_k=want)
        return ranked_documents(candidates, result)

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        model: str | None = None,
    ) -> list[Document]:
        return self.search(query, k=k, model=model)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        model: str | None = None,
    ) -> list[Document]:
        return await self.asearch(query, k=k, model=model)


def _with_similarity(doc: Document, score: float) -> Document:
    return Document(
        page_content=doc.page_content, metadata={**doc.metadata, "similarity_score": float(score)}, id=doc.id
    )
