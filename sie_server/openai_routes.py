"""OpenAI-compatible ``POST /v1/embeddings`` and Cohere/Jina-style ``POST /v1/rerank`` on the engine."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sie_core import InvalidInputError

from .http_common import only_keys, read_body, respond, run_call, state_of

__all__ = ["routes"]

_QUERY_TYPES = {"query": True, "search_query": True, "document": False, "search_document": False, "passage": False}


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    if isinstance(value, list) and value and all(isinstance(v, (int, list)) for v in value):
        raise InvalidInputError("input holds token ids; this server embeds text only: send a string or a list of them")
    raise InvalidInputError("input must be a non-empty string or a non-empty list of strings")


async def embeddings(request: Request) -> Response:
    """``POST /v1/embeddings``: ``{"input", "model", "dimensions", "encoding_format": "float"|"base64"}``."""
    body = await read_body(request)
    only_keys(body, {"input", "model", "dimensions", "encoding_format", "user", "input_type"}, "the embeddings body")
    if "input" not in body:
        raise InvalidInputError("the embeddings body needs 'input' (a string or a list of strings)")
    texts = _texts(body["input"])
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise InvalidInputError(f"encoding_format {encoding!r} is not supported; use 'float' or 'base64'")
    input_type = body.get("input_type")
    if input_type is not None and input_type not in _QUERY_TYPES:
        raise InvalidInputError(f"input_type {input_type!r} is not known; use one of {', '.join(_QUERY_TYPES)}")
    engine = state_of(request).engine
    model = body.get("model") or engine.default_model("encode")
    dims = body.get("dimensions")
    results = await run_call(
        request,
        model,
        "encode",
        lambda: engine.aencode(model, texts, is_query=_QUERY_TYPES.get(input_type or "", False), dims=dims),
    )
    data = []
    for i, r in enumerate(results):
        vector = np.asarray(r.dense, dtype="<f4")
        embedding: Any = base64.b64encode(vector.tobytes()).decode("ascii") if encoding == "base64" else vector.tolist()
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    tokens = sum(r.tokens for r in results)
    answer = {
        "object": "list",
        "data": data,
        "model": results[0].model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return respond(request, answer, msgpack=False)


async def rerank(request: Request) -> Response:
    """``POST /v1/rerank``: ``{"query", "documents", "top_n", "model", "return_documents"}`` (Cohere/Jina style)."""
    body = await read_body(request)
    only_keys(body, {"query", "documents", "top_n", "model", "return_documents", "max_chunks_per_doc"}, "the body")
    query = body.get("query")
    if not isinstance(query, str):
        raise InvalidInputError("query must be a string")
    documents = body.get("documents")
    if not isinstance(documents, list) or not documents:
        raise InvalidInputError("documents must be a non-empty list of strings or {'text': ...} objects")
    texts: list[Any] = [d.get("text") if isinstance(d, dict) else d for d in documents]
    return_documents = body.get("return_documents", False)
    if not isinstance(return_documents, bool):
        raise InvalidInputError(f"return_documents must be true or false, got {return_documents!r}")
    engine = state_of(request).engine
    model = body.get("model") or engine.default_model("score")
    top_n = body.get("top_n")
    result = await run_call(request, model, "score", lambda: engine.ascore(model, query, texts, top_k=top_n))
    results = []
    for entry in result.scores:
        row: dict[str, Any] = {"index": entry.index, "relevance_score": entry.relevance, "score": entry.score}
        if return_documents:
            row["document"] = {"text": texts[entry.index]}
        results.append(row)
    answer = {
        "id": str(uuid.uuid4()),
        "model": result.model,
        "results": results,
        "meta": {"billed_units": {"search_units": 1}},
    }
    return respond(request, answer, msgpack=False)


routes = [
    Route("/v1/embeddings", embeddings, methods=["POST"]),
    Route("/v1/rerank", rerank, methods=["POST"]),
]
