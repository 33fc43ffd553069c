"""SIERetriever: two-stage retrieval — dense (or hybrid dense + sparse) search, then optional reranking."""

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

from sie_core import EncodeResult, InvalidInputError, SparseVector

from ._engine import SIEEngineClient
from ._sparse_index import SparseIndex, reciprocal_rank_fusion
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

    **Hybrid search** (own index): with ``sparse_model`` (a SPLADE-family model) each document also gets a
    sparse vector, and the first stage fuses the dense ranking and the sparse ranking (dot product of term
    weights) by reciprocal-rank fusion: ``sum(1 / (rrf_k + rank))`` over the two lists, ranks from 1. Exact
    terms, names and codes that a dense model blurs then still find their documents. **Late-interaction
    reranking**: ``rerank_model`` may be a ColBERT model (scored by MaxSim) as well as a cross-encoder.

    Returned documents carry ``metadata["similarity_score"]`` (cosine similarity for the own index, the
    store's score for a VectorStore), in hybrid mode ``metadata["sparse_score"]`` and ``metadata["fusion_score"]``
    (a score is absent when the document was not in that list's candidates), and, when reranked,
    ``metadata["relevance_score"]`` (0..1).

    Args:
        model: Encode model for the own index; None uses the engine's default encoder.
        sparse_model: Sparse encode model for hybrid search (own index only); None searches dense only.
        rrf_k: The constant of reciprocal-rank fusion (60, as in Cormack et al.); larger flattens the ranks.
        rerank_model: Score model (cross-encoder or ColBERT) for the second stage; None skips reranking.
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
    sparse_model: str | None = None
    """Sparse (SPLADE) model whose ranking is fused with the dense one (own index); None: dense only."""
    rrf_k: int = Field(default=60, gt=0)
    """Reciprocal-rank fusion constant: a document's fused score is sum(1 / (rrf_k + rank))."""
    rerank_model: str | None = None
    """Score model (cross-encoder, or ColBERT by MaxSim) that reranks the candidates; None keeps them as they are."""
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
    _sparse: dict[str, SparseIndex] = PrivateAttr(default_factory=dict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @model_validator(mode="after")
    def _check_sources(self) -> SIERetriever:
        if self.vectorstore is not None and self.model is not None:
            raise InvalidInputError(
                "model names the encoder of SIERetriever's own index; a vectorstore embeds queries with its own "
                "embeddings (e.g. SIEEmbeddings(model=...)), so leave model unset when passing vectorstore"
            )
        if self.vectorstore is not None and self.sparse_model is not None:
            raise InvalidInputError(
                "sparse_model adds sparse vectors to SIERetriever's own index; a vectorstore searches with its own "
                "embeddings only, so leave sparse_model unset when passing vectorstore"
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
            if self.sparse_model is not None:
                self._sparse_index(self.sparse_model)
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
            if self.sparse_model is not None:
                await self._asparse_index(self.sparse_model)
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

    def _sparse_pending(self, model: str) -> tuple[int, list[str]]:
        with self._lock:
            done = len(self._sparse[model]) if model in self._sparse else 0
            return done, [d.page_content for d in self._docs[done:]]

    def _sparse_store(self, model: str, done: int, results: list[EncodeResult]) -> None:
        with self._lock:
            index = self._sparse.setdefault(model, SparseIndex())
            if len(index) == done:  # else someone else added these rows meanwhile; the caller re-checks
                index.extend([r.sparse for r in results if r.sparse is not None])

    def _sparse_index(self, model: str) -> SparseIndex:
        """The corpus's sparse vectors for ``model``, encoding any documents that do not have one yet."""
        while True:
            done, texts = self._sparse_pending(model)
            if not texts:
                return self._sparse.get(model, SparseIndex())
            results = [r for c in _chunks(texts) for r in self.client.encode(model, c, output_types=["sparse"])]
            self._sparse_store(model, done, results)

    async def _asparse_index(self, model: str) -> SparseIndex:
        while True:
            done, texts = self._sparse_pending(model)
            if not texts:
                return self._sparse.get(model, SparseIndex())
            results = [r for c in _chunks(texts) for r in await self.client.aencode(model, c, output_types=["sparse"])]
            self._sparse_store(model, done, results)

    def _nearest(self, matrix: np.ndarray, query: np.ndarray, n: int) -> list[Document]:
        if len(matrix) == 0:
            return []
        sims = matrix @ np.asarray(query, dtype=np.float32)
        order = _top(sims, n)
        return self._documents(order, similarity_score={i: float(sims[i]) for i in order})

    def _hybrid(
        self, matrix: np.ndarray, dense: np.ndarray, index: SparseIndex, sparse: SparseVector | None, n: int
    ) -> list[Document]:
        """The first ``n`` documents by reciprocal-rank fusion of the dense and the sparse ranking."""
        if len(matrix) == 0:
            return []
        sims = matrix @ np.asarray(dense, dtype=np.float32)
        dots = index.scores(sparse)
        dense_top = _top(sims, n)
        sparse_top = [i for i in _top(dots, n) if dots[i] > 0]  # no shared term: not a sparse match at all
        fused = reciprocal_rank_fusion([dense_top, sparse_top], self.rrf_k)
        order = sorted(fused, key=lambda i: (-fused[i], i))[:n]
        in_dense, in_sparse = set(dense_top), set(sparse_top)
        return self._documents(
            order,
            similarity_score={i: float(sims[i]) for i in order if i in in_dense},
            sparse_score={i: float(dots[i]) for i in order if i in in_sparse},
            fusion_score=fused,
        )

    def _documents(self, order: list[int], **scores: dict[int, float]) -> list[Document]:
        """The documents at ``order`` with each score they have as metadata (by the score's name)."""
        with self._lock:
            docs = [self._docs[i] for i in order]
        out = []
        for d, i in zip(docs, order):
            extra = {name: by_doc[i] for name, by_doc in scores.items() if i in by_doc}
            out.append(Document(page_content=d.page_content, metadata={**d.metadata, **extra}, id=d.id))
        return out

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
            if self.sparse_model is None:
                candidates = self._nearest(matrix, q.dense_vector(), fetch)
            else:
                index = self._sparse_index(self.sparse_model)
                sq = self.client.encode(self.sparse_model, query, output_types=["sparse"], is_query=True)
                candidates = self._hybrid(matrix, q.dense_vector(), index, sq.sparse, fetch)
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
            if self.sparse_model is None:
                candidates = self._nearest(matrix, q.dense_vector(), fetch)
            else:
                index = await self._asparse_index(self.sparse_model)
                sq = await self.client.aencode(self.sparse_model, query, output_types=["sparse"], is_query=True)
                candidates = self._hybrid(matrix, q.dense_vector(), index, sq.sparse, fetch)
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


def _top(scores: np.ndarray, n: int) -> list[int]:
    """Positions of the ``n`` highest scores, best first (ties by position)."""
    n = min(n, len(scores))
    if n <= 0:
        return []
    top = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
    return sorted(top.tolist(), key=lambda i: (-scores[i], i))


def _with_similarity(doc: Document, score: float) -> Document:
    return Document(
        page_content=doc.page_content, metadata={**doc.metadata, "similarity_score": float(score)}, id=doc.id
    )
