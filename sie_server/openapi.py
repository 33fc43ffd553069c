"""The server's OpenAPI 3.1 document (``GET /openapi.json``), built from the typed bodies and answer models.

Request bodies are the pydantic models of :mod:`sie_core.requests` (the same ones the routes validate with),
answers the models of :mod:`sie_server.schemas`, errors :class:`sie_core.requests.ErrorEnvelope`; every
schema lands in ``components/schemas`` so each is described once.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from sie_core import __version__
from sie_core.requests import EmbeddingsBody, EncodeBody, ErrorEnvelope, ExtractBody, RerankBody, ScoreBody

from . import schemas

__all__ = ["build_openapi"]

_REF = "#/components/schemas/{model}"
_JSON = "application/json"
_MSGPACK = "application/msgpack"
_ERRORS = {
    "400": "INVALID_INPUT: the body or an option is wrong (the message names it and what is allowed)",
    "401": "UNAUTHORIZED: no valid bearer token",
    "404": "MODEL_NOT_FOUND (no such model, or not served here) or NOT_FOUND (no such route)",
    "405": "METHOD_NOT_ALLOWED: the route takes another method (see the Allow header)",
    "408": "REQUEST_TIMEOUT: the body did not arrive within the server's body timeout",
    "413": "PAYLOAD_TOO_LARGE: the body is larger than the server accepts",
    "500": "INFERENCE_ERROR (the model failed on valid input) or INTERNAL",
    "502": "MODEL_LOAD_FAILED: the model's weights are missing or broken",
    "503": "MODEL_LOADING (retry after Retry-After; SIE clients do), QUEUE_FULL, or SHUTTING_DOWN",
}


def build_openapi(*, mcp: bool = True, auth: bool = False, examples: dict[str, str] | None = None) -> dict[str, Any]:
    """The OpenAPI document.

    Args:
        mcp: Whether ``/mcp`` is served.
        auth: Whether a bearer token is required (adds the security scheme).
        examples: A model id per task (encode, score, extract) to show in the path parameters.
    """
    examples = examples or {}
    bodies: list[type[BaseModel]] = [EncodeBody, ScoreBody, ExtractBody, EmbeddingsBody, RerankBody]
    answers: list[type[BaseModel]] = [*schemas.RESPONSE_MODELS, ErrorEnvelope]
    refs, defs = models_json_schema(
        [(m, "validation") for m in bodies] + [(m, "serialization") for m in answers], ref_template=_REF
    )

    def ref(model: type[BaseModel], mode: str = "serialization") -> dict[str, Any]:
        return dict(refs[(model, mode)])  # type: ignore[index]

    envelope = {_JSON: {"schema": ref(ErrorEnvelope)}}

    def errors(*codes: str) -> dict[str, Any]:
        out = {code: {"description": _ERRORS[code], "content": envelope} for code in codes}
        out["default"] = {"description": "Any other error, in the same envelope", "content": envelope}
        if auth:
            out["401"] = {"description": _ERRORS["401"], "content": envelope}
        return out

    def body_of(model: type[BaseModel], msgpack: bool) -> dict[str, Any]:
        content = {_JSON: {"schema": ref(model, "validation")}}
        if msgpack:
            content[_MSGPACK] = {"schema": ref(model, "validation")}
        return {"required": True, "content": content}

    def ok(model: type[BaseModel], description: str, msgpack: bool = False) -> dict[str, Any]:
        content = {_JSON: {"schema": ref(model)}}
        if msgpack:
            content[_MSGPACK] = {"schema": ref(model)}
        return {"200": {"description": description, "content": content}}

    def model_param(task: str | None) -> dict[str, Any]:
        param: dict[str, Any] = {
            "name": "model",
            "in": "path",
            "required": True,
            "description": "Model id (see GET /v1/models); its slashes may stay as they are or be sent as %2F.",
            "schema": {"type": "string", "minLength": 1},
        }
        if task and task in examples:
            param["example"] = examples[task]
        return param

    def infer(task: str, body: type[BaseModel], answer: type[BaseModel], summary: str, text: str) -> dict[str, Any]:
        return {
            "post": {
                "tags": ["SIE API"],
                "operationId": task,
                "summary": summary,
                "description": text + " Bodies may be JSON or MessagePack (SIE's client sends MessagePack); the "
                "answer follows the request's Accept header, else its content type.",
                "parameters": [model_param(task)],
                "requestBody": body_of(body, msgpack=True),
                "responses": {
                    **ok(answer, "Results", msgpack=True),
                    **errors("400", "404", "413", "500", "502", "503"),
                },
            }
        }

    def plain(
        op_id: str,
        summary: str,
        answer: type[BaseModel] | None,
        tag: str,
        *,
        open_route: bool = False,
        media: str = _JSON,
    ) -> dict[str, Any]:
        responses: dict[str, Any]
        if answer is None:
            responses = {"200": {"description": summary, "content": {media: {"schema": {"type": "string"}}}}}
        else:
            responses = ok(answer, summary)
        if tag == "Operations" and op_id == "readyz":
            responses["503"] = {
                "description": "starting or draining",
                "content": {_JSON: {"schema": ref(schemas.Readiness)}},
            }
        op: dict[str, Any] = {"tags": [tag], "operationId": op_id, "summary": summary, "responses": responses}
        if open_route:
            op["security"] = []
        else:
            op["responses"].update(errors())
        return {"get": op}

    paths: dict[str, Any] = {
        "/v1/encode/{model}": infer(
            "encode", EncodeBody, schemas.EncodeResponse, "Encode texts into vectors", "One vector per item."
        ),
        "/v1/score/{model}": infer(
            "score", ScoreBody, schemas.ScoreResponse, "Score items against a query", "Items ranked best first."
        ),
        "/v1/extract/{model}": infer(
            "extract", ExtractBody, schemas.ExtractResponse, "Extract entities", "Entities with character offsets."
        ),
        "/v1/models": plain(
            "list_models", "The models served here, with state and counters", schemas.ModelList, "SIE API"
        ),
        "/v1/models/{model}": {
            "get": {
                "tags": ["SIE API"],
                "operationId": "get_model",
                "summary": "One model",
                "parameters": [model_param("encode")],
                "responses": {**ok(schemas.ModelEntry, "The model"), **errors("404")},
            }
        },
        "/v1/embeddings": {
            "post": {
                "tags": ["OpenAI-compatible"],
                "operationId": "embeddings",
                "summary": "OpenAI embeddings",
                "description": "What the openai client's embeddings.create sends; model defaults to the configured "
                "encoder.",
                "requestBody": body_of(EmbeddingsBody, msgpack=False),
                "responses": {
                    **ok(schemas.EmbeddingsResponse, "Embeddings"),
                    **errors("400", "404", "413", "500", "502", "503"),
                },
            }
        },
        "/v1/rerank": {
            "post": {
                "tags": ["OpenAI-compatible"],
                "operationId": "rerank",
                "summary": "Rerank documents (Cohere / Jina style)",
                "requestBody": body_of(RerankBody, msgpack=False),
                "responses": {
                    **ok(schemas.RerankResponse, "Documents best first"),
                    **errors("400", "404", "413", "500", "502", "503"),
                },
            }
        },
        "/v1/status": plain("status", "Server state for the status page", schemas.ServerStatus, "Operations"),
        "/healthz": plain("healthz", "The process is up", schemas.Health, "Operations", open_route=True),
        "/health": plain(
            "health", "The process is up (alias of /healthz)", schemas.Health, "Operations", open_route=True
        ),
        "/readyz": plain("readyz", "Ready to serve", schemas.Readiness, "Operations", open_route=True),
        "/metrics": plain(
            "metrics", "Prometheus metrics (text exposition format)", None, "Operations", media="text/plain"
        ),
        "/": plain("status_page", "The status page (HTML)", None, "Pages", open_route=True, media="text/html"),
        "/docs": plain("docs", "This API page (HTML)", None, "Pages", open_route=True, media="text/html"),
        "/docs/assets/{name}": {
            "get": {
                "tags": ["Pages"],
                "operationId": "docs_asset",
                "summary": "A file of the API page (Swagger UI, from the installed swagger-ui-py package)",
                "security": [],
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {
                            "type": "string",
                            "enum": ["swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"],
                        },
                    }
                ],
                "responses": {
                    "200": {"description": "The file"},
                    "404": {"description": "NOT_FOUND: no such asset", "content": envelope},
                },
            }
        },
        "/openapi.json": {
            "get": {
                "tags": ["Pages"],
                "operationId": "openapi",
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {"description": "OpenAPI 3.1", "content": {_JSON: {"schema": {"type": "object"}}}}
                },
            }
        },
    }
    if mcp:
        paths["/mcp"] = {
            "post": {
                "tags": ["MCP"],
                "operationId": "mcp",
                "summary": "MCP over streamable HTTP (JSON-RPC 2.0)",
                "description": "The MCP tools encode, rerank, extract and list_models on the same engine. Use an MCP "
                "client; requests need 'Accept: application/json, text/event-stream'.",
                "requestBody": {"required": True, "content": {_JSON: {"schema": {"type": "object"}}}},
                "responses": {
                    "200": {"description": "JSON-RPC answer (JSON or an event stream)"},
                    **errors(),
                },
            },
            "get": {
                "tags": ["MCP"],
                "operationId": "mcp_stream",
                "summary": "MCP: the server-to-client event stream of a session",
                "responses": {"200": {"description": "An event stream"}, **errors()},
            },
            "delete": {
                "tags": ["MCP"],
                "operationId": "mcp_end",
                "summary": "MCP: end a session",
                "responses": {"200": {"description": "Session ended"}, **errors()},
            },
        }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "sie-agents server",
            "version": __version__,
            "description": "One engine serving many models: the Superlinked Inference Engine (SIE) wire API, "
            "OpenAI-compatible embeddings, /v1/rerank, and MCP at /mcp. Every error answer is "
            '{"error": {"code", "message"}} with the code also in the X-SIE-Error-Code header. Inference answers '
            "carry X-Request-ID, X-Total-Time (ms) and X-SIE-Server-Version.",
        },
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {})},
    }
    if auth:
        doc["components"]["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearerAuth": []}]
    return doc
