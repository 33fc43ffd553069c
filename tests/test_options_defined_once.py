"""Every option is defined once: each front end describes it as the typed request does, or says why not."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import BaseModel, TypeAdapter

from sie_core.requests import OPTION_NAMES, EncodeRequest, ExtractRequest, ScoreRequest

REQUESTS = {"encode": EncodeRequest, "rerank": ScoreRequest, "extract": ExtractRequest}


def option_schema(cls: type[BaseModel], name: str) -> dict[str, Any]:
    """The JSON schema of one field: type, bounds and description (no title)."""
    field = cls.model_fields[name]
    annotated = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    schema = TypeAdapter(annotated).json_schema()
    schema.pop("title", None)
    if field.description:
        schema["description"] = field.description
    return schema


def strip(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in ("title", "default")}


@pytest.fixture(scope="module")
def mcp_tools() -> dict[str, dict[str, Any]]:
    import anyio

    from sie_core import Engine
    from sie_mcp import create_server

    async def listing() -> dict[str, dict[str, Any]]:
        server = create_server(Engine())
        tools = await server.list_tools()
        return {t.name: t.model_dump(by_alias=True)["inputSchema"] for t in tools}

    return anyio.run(listing)


@pytest.mark.parametrize("tool", sorted(REQUESTS))
def test_mcp_tools_describe_every_option_as_the_request_does(mcp_tools, tool):
    from sie_mcp.server import TOOL_OMITS

    request = REQUESTS[tool]
    properties = mcp_tools[tool]["properties"]
    for name in OPTION_NAMES[request]:
        if name in TOOL_OMITS[tool]:
            assert name not in properties
            continue
        assert name in properties, f"tool {tool} lacks {name} and does not list it in TOOL_OMITS"
        assert strip(properties[name]) == strip(option_schema(request, name)), (tool, name)
        field = request.model_fields[name]
        if not field.is_required():
            assert properties[name].get("default", None) == field.default, (tool, name)
    assert mcp_tools[tool].get("additionalProperties") is not True


def test_langchain_classes_describe_every_option_as_the_request_does():
    import sie_langchain
    from sie_langchain.options import NARROWED, OFFERED, OMITTED

    request_of = {
        "SIEEmbeddings": EncodeRequest,
        "SIESparseEncoder": EncodeRequest,
        "SIEReranker": ScoreRequest,
        "SIERerankTool": ScoreRequest,
        "SIEExtractor": ExtractRequest,
    }
    for class_name, request in request_of.items():
        cls = getattr(sie_langchain, class_name)
        offered, omitted = OFFERED[class_name], OMITTED[class_name]
        assert set(offered) | set(omitted) == set(OPTION_NAMES[request]), class_name
        assert not set(offered) & set(omitted), class_name
        for name in offered:
            assert name in cls.model_fields, (class_name, name)
            ours = option_schema(cls, name)
            theirs = option_schema(request, name)
            assert ours.get("description") == theirs["description"], (class_name, name)
            if (class_name, name) not in NARROWED:
                assert ours == theirs, (class_name, name)
        for name in omitted:
            assert name not in cls.model_fields, (class_name, name)


def test_wire_bodies_describe_every_option_as_the_request_does():
    from sie_core.requests import (
        BODY_RENAMES,
        EmbeddingsBody,
        EncodeBody,
        EncodeOptions,
        EncodeParams,
        ExtractBody,
        ExtractOptions,
        ExtractParams,
        RerankBody,
        ScoreBody,
    )

    homes = {
        EncodeRequest: [EncodeParams, EncodeOptions, EncodeBody],
        ScoreRequest: [ScoreBody],
        ExtractRequest: [ExtractParams, ExtractOptions, ExtractBody],
    }
    for request, models in homes.items():
        for name in OPTION_NAMES[request]:
            found = [m for m in models if name in m.model_fields]
            assert found, f"the SIE wire body lacks {request.__name__}.{name}"
            for model in found:
                ours, theirs = option_schema(model, name), option_schema(request, name)
                if ours != theirs:  # extract's threshold is optional in two places: SIE reads either
                    assert ours.get("description") == theirs["description"], (model.__name__, name)
    for (body, field), option in BODY_RENAMES.items():
        assert field in body.model_fields
        if option != "items":
            request = EncodeRequest if body is EmbeddingsBody else ScoreRequest
            assert option_schema(body, field) == option_schema(request, option), (body.__name__, field)
    assert RerankBody.model_fields["top_n"].description == ScoreRequest.model_fields["top_k"].description


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """Inline ``$ref``s into components (the OpenAPI document keeps each model once)."""
    if "$ref" in schema:
        return _resolve(components[schema["$ref"].rsplit("/", 1)[-1]], components)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if isinstance(value, dict):
            out[key] = _resolve(value, components)
        elif isinstance(value, list):
            out[key] = [_resolve(v, components) if isinstance(v, dict) else v for v in value]
        else:
            out[key] = value
    return out


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A field's own JSON schema with its local ``$defs`` inlined, titles and defaults dropped."""
    defs = schema.pop("$defs", {})

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if "$ref" in value:
                return walk(defs[value["$ref"].rsplit("/", 1)[-1]])
            return {k: walk(v) for k, v in value.items() if k not in ("title", "default")}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(schema)


def test_openapi_document_describes_every_option_as_the_wire_bodies_do():
    """/openapi.json is built from the wire bodies: each option there has the body field's type, bounds and text."""
    from sie_core.requests import (
        EncodeBody,
        EncodeOptions,
        EncodeParams,
        ExtractBody,
        ExtractOptions,
        ExtractParams,
        ScoreBody,
    )
    from sie_server.openapi import build_openapi

    components = build_openapi()["components"]["schemas"]
    homes = {
        EncodeRequest: [EncodeParams, EncodeOptions, EncodeBody],
        ScoreRequest: [ScoreBody],
        ExtractRequest: [ExtractParams, ExtractOptions, ExtractBody],
    }
    checked = 0
    for request, models in homes.items():
        for name in OPTION_NAMES[request]:
            documented = [m for m in models if name in components.get(m.__name__, {}).get("properties", {})]
            assert documented, f"/openapi.json does not describe {request.__name__}.{name}"
            for model in documented:
                ours = _inline(_resolve(components[model.__name__]["properties"][name], components))
                theirs = _inline(option_schema(model, name))
                assert ours == theirs, (model.__name__, name)
                assert ours.get("description") == request.model_fields[name].description, (model.__name__, name)
                checked += 1
    assert checked >= sum(len(OPTION_NAMES[r]) for r in homes)
