"""SIE's REST API on the engine: what SIE's own client (``sie-sdk``) calls.

``POST /v1/encode/{model}``, ``POST /v1/score/{model}``, ``POST /v1/extract/{model}`` (model ids keep their
slashes in the path), ``GET /v1/models`` and ``GET /v1/models/{model}``. Bodies are MessagePack (what the
client sends) or JSON, validated by the typed bodies of :mod:`sie_core.requests` (strict types, unknown
fields named); answers follow the request (MessagePack with numpy arrays, or JSON with lists). The answer
shapes live in :mod:`sie_core.wire`, shared with the remote backend.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sie_core import UnknownModelError
from sie_core.requests import EncodeBody, ExtractBody, ScoreBody, parse
from sie_core.wire import encode_response, extract_response, model_info_to_wire, score_response

from .common import dumps, read_body, respond, run_call, state_of, wants_msgpack

__all__ = ["routes"]


async def encode(request: Request) -> Response:
    """``POST /v1/encode/{model}``: ``{"items": [...], "params": {instruction, output_dtype, options, ...}}``."""
    model = request.path_params["model"]
    body = parse(EncodeBody, await read_body(request), where="the encode body")
    engine = state_of(request).engine
    results = await run_call(request, model, "encode", lambda: engine.aencode_request(body.to_request(model)))
    arrays = wants_msgpack(request)
    return respond(request, encode_response(results, results[0].model, arrays=arrays), msgpack=arrays)


async def score(request: Request) -> Response:
    """``POST /v1/score/{model}``: ``{"query": item, "items": [...], "options": {...}, "top_k": n}``."""
    model = request.path_params["model"]
    body = parse(ScoreBody, await read_body(request), where="the score body")
    engine = state_of(request).engine
    result = await run_call(request, model, "score", lambda: engine.ascore_request(body.to_request(model)))
    return respond(request, score_response(result))


async def extract(request: Request) -> Response:
    """``POST /v1/extract/{model}``: ``{"items": [...], "params": {"labels": [...], "options": {threshold, ...}}}``."""
    model = request.path_params["model"]
    body = parse(ExtractBody, await read_body(request), where="the extract body")
    engine = state_of(request).engine
    results = await run_call(request, model, "extract", lambda: engine.aextract_request(body.to_request(model)))
    return respond(request, extract_response(results, results[0].model))


async def list_models(request: Request) -> Response:
    """``GET /v1/models``: ``{"models": [...]}`` (JSON)."""
    infos = await state_of(request).engine.alist_models()
    return Response(dumps({"models": [model_info_to_wire(i) for i in infos]}), media_type="application/json")


async def get_model(request: Request) -> Response:
    """``GET /v1/models/{model}``: one model (404 MODEL_NOT_FOUND when not served here)."""
    model = request.path_params["model"]
    infos = await state_of(request).engine.alist_models()
    for info in infos:
        if model == info.id or model in info.aliases:
            return Response(dumps(model_info_to_wire(info)), media_type="application/json")
    available = ", ".join(i.id for i in infos) or "none"
    raise UnknownModelError(f"model {model!r} is not served here; available: {available}")


routes = [
    Route("/v1/encode/{model:path}", encode, methods=["POST"]),
    Route("/v1/score/{model:path}", score, methods=["POST"]),
    Route("/v1/extract/{model:path}", extract, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model:path}", get_model, methods=["GET"]),
]
