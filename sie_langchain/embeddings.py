"""SIEEmbeddings: LangChain ``Embeddings`` over the engine's ``encode``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

import numpy as np
from langchain_core.embeddings import Embeddings
from pydantic import ConfigDict, Field

from sie_core import EncodeResult
from sie_core.requests import Dims, Instruction, Normalize, OutputDtype, describe

from ._engine import SIEEngineClient

__all__ = ["SIEEmbeddings"]

# Texts per engine call; the engine batches inside each call, this only keeps calls under its per-call cap.
_CHUNK = 512


def as_floats(result: EncodeResult) -> list[float]:
    """A result's vector as plain Python floats (what LangChain and vector stores expect)."""
    return np.asarray(result.dense, dtype=np.float64).tolist()


class SIEEmbeddings(SIEEngineClient, Embeddings):
    """Dense embeddings from any encode model the engine serves, for vector stores and retrievers.

    ``embed_query`` applies the model's query prompt (e5 ``query: ``, bge's instruction, a
    sentence-transformers ``prompts["query"]``); ``embed_documents`` the document prompt. Vectors come back
    as lists of plain Python floats.

    Args:
        model: Encode model id; None uses the engine's default encoder.
        instruction: Task instruction for instruction-tuned models; replaces both prompts.
        normalize: L2-normalize the vectors; None keeps the model's default.
        dims: Keep the first ``dims`` dimensions (Matryoshka models), re-normalized.
        output_dtype: ``float32``, ``float16`` or ``int8`` (quantized values, still as floats).
        engine: An existing :class:`sie_core.Engine`; by default the process-wide shared one.
        base_url: URL of a remote SIE-compatible server instead of in-process models.
        api_key: Bearer token for ``base_url``.

    Example:
        >>> from sie_langchain import SIEEmbeddings
        >>> embeddings = SIEEmbeddings(model="sentence-transformers/all-MiniLM-L6-v2")
        >>> vector = embeddings.embed_query("Berlin office revenue")  # doctest: +SKIP
        >>> len(vector)  # doctest: +SKIP
        384
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), arbitrary_types_allowed=True)

    model: str | None = None
    """Encode model id; None uses the engine's default encoder."""
    instruction: Instruction = None
    """Task instruction for instruction-tuned models (replaces the query/document prompt)."""
    normalize: Normalize = None
    """L2-normalize; None keeps the model's default."""
    dims: Dims = None
    """Keep the first ``dims`` dimensions (Matryoshka), re-normalized."""
    output_dtype: Literal["float32", "float16", "int8"] = Field(default="float32", description=describe(OutputDtype))
    """Precision of the vectors (always returned as Python floats)."""

    def _encode(self, texts: list[str], is_query: bool) -> list[EncodeResult]:
        return self.client.encode(
            self.model,
            texts,
            instruction=self.instruction,
            is_query=is_query,
            normalize=self.normalize,
            output_dtype=self.output_dtype,
            dims=self.dims,
        )

    async def _aencode(self, texts: list[str], is_query: bool) -> list[EncodeResult]:
        return await self.client.aencode(
            self.model,
            texts,
            instruction=self.instruction,
            is_query=is_query,
            normalize=self.normalize,
            output_dtype=self.output_dtype,
            dims=self.dims,
        )

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents with the model's document prompt.

        Args:
            texts: The texts to embed.

        Returns:
            One vector (list of floats) per text, in order.
        """
        vectors: list[list[float]] = []
        for chunk in _chunks(texts):
            vectors.extend(as_floats(r) for r in self._encode(chunk, False))
        return vectors

    def embed_query(self, text: str) -> list[float]:
        """Embed a search query with the model's query prompt.

        Args:
            text: The query.

        Returns:
            Its vector as a list of floats.
        """
        return as_floats(self._encode([text], True)[0])

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async twin of :meth:`embed_documents` (native: awaits the engine, no executor thread)."""
        parts = await asyncio.gather(*(self._aencode(chunk, False) for chunk in _chunks(texts)))
        return [as_floats(r) for part in parts for r in part]

    async def aembed_query(self, text: str) -> list[float]:
        """Async twin of :meth:`embed_query`."""
        return as_floats((await self._aencode([text], True))[0])


def _chunks(texts: Sequence[str]) -> list[list[str]]:
    items = list(texts)
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]
