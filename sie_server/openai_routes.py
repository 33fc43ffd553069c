"""OpenAI-compatible ``POST /v1/embeddings`` and Cohere/Jina-style ``POST /v1/rerank`` on the engine.

Both bodies are validated by :class:`sie_core.requests.EmbeddingsBody` and :class:`~sie_core.requests.RerankBody`
and become the engine's typed requests, so their options mean exactly what the SIE routes' options mean.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sie_core import Engine, InvalidInputError
from sie_core.families import family_of
from sie_core.requests import EmbeddingsBody, RerankBody, parse

from .common import read_body, respond, run_call, state_of

__all__ = ["routes"]


async def embeddings(request: Request) -> Response:
    """``POST /v1/embeddings``: ``{"input", "model", "dimensions", "encoding_format": "float"|"base64"}``."""
    body = parse(EmbeddingsBody, await read_body(request), where="the embeddings body")
    engine = state_of(request).engine
    model = body.model or engine.default_model("encode")
    _check_dense(engine, model)
    results = await run_call(request, model, "encode", lambda: engine.aencode_request(body.to_request(model)))
    data = []
    for i, r in enumerate(results):
        vector = np.asarray(r.dense, dtype="<f4")
        if body.encoding_format == "base64":
            embedding: Any = base64.b64encode(vector.tobytes()).decode("ascii")
        else:
            embedding = vector.tolist()
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    tokens = sum(r.tokens for r in results)
    answer = {
        "object": "list",
        "data": data,
        "model": results[0].model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return respond(request, answer, msgpack=False)


def _check_dense(engine: Engine, model: str) -> None:
    """Refuse, pointing to SIE's route, an encoder whose outputs OpenAI's embedding shape cannot carry."""
    spec = engine.catalog.get(model)
    if spec is None or spec.task != "encode":
        return  # the engine's own error names unknown models and wrong tasks
    outputs = family_of(spec).outputs
    if "dense" not in outputs:
        raise InvalidInputError(
            f"/v1/embeddings returns dense vectors only, and model {spec.id!r} produces {', '.join(outputs)}: "
            f"use SIE's route POST /v1/encode/{spec.id} with params.output_types={list(outputs)}"
        )


async def rerank(request: Request) -> Response:
    """``POST /v1/rerank``: ``{"query", "documents", "top_n", "model", "return_documents"}`` (Cohere/Jina style)."""
    body = parse(RerankBody, await read_body(request), where="the rerank body")
    engine = state_of(request).engine
    model = body.model or engine.default_model("score")
    result = await run_call(request, model, "score", lambda: engine.ascore_request(body.to_request(model)))
    results = []
    for entry in result.scores:
        row: dict[str, Any] = {"index": entry.index, "relevance_score": entry.relevance, "score": entry.score}
        if body.return_documents:
            row["document"] = {"text": body.documents[entry.index].text}
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
