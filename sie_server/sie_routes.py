"""SIE's REST API on the engine: what SIE's own client (``sie-sdk``) calls.

``POST /v1/encode/{model}``, ``POST /v1/score/{model}``, ``POST /v1/extract/{model}`` (model ids keep their
slashes in the path), ``GET /v1/models`` and ``GET /v1/models/{model}``. Bodies are MessagePack (what the
client sends) or JSON; answers follow the request (MessagePack with numpy arrays, or JSON with lists).
The shapes live in :mod:`sie_core.wire`, shared with the remote backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sie_core import InvalidInputError, UnknownModelError
from sie_core.wire import (
    encode_response,
    extract_response,
    model_info_to_wire,
    score_response,
)

from .http_common import dumps, mapping, only_keys, read_body, respond, run_call, state_of, wants_msgpack

__all__ = ["routes"]

_TEXT_ONLY = ("images", "audio", "video", "document", "multivector")


def _items(value: Any, name: str = "items") -> list[Any]:
    """The items of a request: a list (one Item or string is taken as a list of one)."""
    if isinstance(value, (dict, str)):
        value = [value]
    if not isinstance(value, list):
        raise InvalidInputError(f"{name} must be a list of items like {{'text': '...'}}, got {type(value).__name__}")
    for i, item in enumerate(value):
        if isinstance(item, dict):
            for key in _TEXT_ONLY:
                if key in item:
                    raise InvalidInputError(f"{name}[{i}] has {key!r}; this server reads the 'text' of items only")
    return value


def _check_profile(options: Any) -> None:
    profile = options.get("profile")
    if profile not in (None, "default"):
        raise InvalidInputError(f"options.profile {profile!r} is not served here; only the default profile exists")


def _check_output_types(output_types: Any) -> None:
    if output_types is None:
        return
    if not isinstance(output_types, Sequence) or isinstance(output_types, str) or list(output_types) != ["dense"]:
        raise InvalidInputError(
            f"output_types {output_types!r} is not supported; this server returns dense vectors only: ['dense']"
        )


async def encode(request: Request) -> Response:
    """``POST /v1/encode/{model}``: ``{"items": [...], "params": {instruction, output_dtype, options, ...}}``."""
    model = request.path_params["model"]
    body = await read_body(request)
    only_keys(body, {"items", "params"}, "the encode body")
    items = _items(body.get("items"))
    params = mapping(body.get("params"), "params")
    only_keys(params, {"output_types", "instruction", "output_dtype", "options", "dims"}, "params")
    _check_output_types(params.get("output_types"))
    options = mapping(params.get("options"), "params.options")
    only_keys(options, {"is_query", "normalize", "dims", "profile"}, "params.options")
    _check_profile(options)
    is_query = options.get("is_query")
    if is_query is not None and not isinstance(is_query, bool):
        raise InvalidInputError(f"options.is_query must be true or false, got {is_query!r}")
    engine = state_of(request).engine
    results = await run_call(
        request,
        model,
        "encode",
        lambda: engine.aencode(
            model,
            items,
            instruction=params.get("instruction"),
            is_query=bool(is_query),
            normalize=options.get("normalize"),
            output_dtype=params.get("output_dtype") or "float32",
            dims=options.get("dims", params.get("dims")),
        ),
    )
    arrays = wants_msgpack(request)
    return respond(request, encode_response(results, results[0].model, arrays=arrays), msgpack=arrays)


async def score(request: Request) -> Response:
    """``POST /v1/score/{model}``: ``{"query": item, "items": [...], "options": {...}, "top_k": n}``."""
    model = request.path_params["model"]
    body = await read_body(request)
    only_keys(body, {"query", "items", "instruction", "options", "top_k"}, "the score body")
    if body.get("instruction") is not None:
        raise InvalidInputError("instruction is not supported for scoring here; cross-encoders take query and items")
    if "query" not in body:
        raise InvalidInputError("the score body needs a 'query' item, e.g. {'text': '...'}")
    items = _items(body.get("items"))
    query = body["query"]
    _items(query, "query")
    options = mapping(body.get("options"), "options")
    only_keys(options, {"top_k", "profile"}, "options")
    _check_profile(options)
    top_k = body.get("top_k", options.get("top_k"))
    engine = state_of(request).engine
    result = await run_call(request, model, "score", lambda: engine.ascore(model, query, items, top_k=top_k))
    return respond(request, score_response(result))


async def extract(request: Request) -> Response:
    """``POST /v1/extract/{model}``: ``{"items": [...], "params": {"labels": [...], "options": {threshold, ...}}}``."""
    model = request.path_params["model"]
    body = await read_body(request)
    only_keys(body, {"items", "params"}, "the extract body")
    items = _items(body.get("items"))
    params = mapping(body.get("params"), "params")
    only_keys(params, {"labels", "output_schema", "instruction", "options", "threshold"}, "params")
    for unsupported in ("output_schema", "instruction"):
        if params.get(unsupported) is not None:
            raise InvalidInputError(f"params.{unsupported} is not supported here; extraction takes labels only")
    options = mapping(params.get("options"), "params.options")
    only_keys(options, {"threshold", "flat_ner", "multi_label", "profile"}, "params.options")
    _check_profile(options)
    threshold = options.get("threshold", params.get("threshold", 0.5))
    flat_ner = options.get("flat_ner", True)
    multi_label = options.get("multi_label", False)
    for name, flag in (("flat_ner", flat_ner), ("multi_label", multi_label)):
        if not isinstance(flag, bool):
            raise InvalidInputError(f"options.{name} must be true or false, got {flag!r}")
    engine = state_of(request).engine
    results = await run_call(
        request,
        model,
        "extract",
        lambda: engine.aextract(
            model,
            items,
            labels=params.get("labels"),  # type: ignore[arg-type]  # the engine checks and explains
            threshold=threshold,
            flat_ner=flat_ner,
            multi_label=multi_label,
        ),
    )
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
