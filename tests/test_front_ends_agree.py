"""The MCP tools and the HTTP API reject the same bad arguments with the same messages.

Each case is one mistake, sent once as MCP tool arguments and once in the SIE wire body of the route the tool
mirrors. Both front ends validate through the typed requests of :mod:`sie_core.requests`, so the message
about the option is the same text; only the surroundings differ (where it was: "the arguments" of a tool,
"the encode body" of a route; the HTTP body nests options in ``params``, so an unknown name lists that
level's allowed names).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from sie_core import Engine
from sie_mcp import create_server
from sie_server.app import create_app

from .sie_mcp.helpers import connect, server_config, text_of

Q = {"text": "q"}
ONE = [{"text": "x"}]


def _encode(mcp: dict[str, Any], params: dict[str, Any], options: dict[str, Any] | None = None) -> tuple:
    body: dict[str, Any] = {"items": ONE, "params": dict(params)}
    if options:
        body["params"]["options"] = options
    return ("encode", {"texts": ["x"], **mcp}, "/v1/encode/tiny-encoder", body)


def _rerank(mcp: dict[str, Any], body: dict[str, Any]) -> tuple:
    return (
        "rerank",
        {"query": "q", "documents": ["x"], **mcp},
        "/v1/score/tiny-reranker",
        {"query": Q, "items": ONE, **body},
    )


def _extract(mcp: dict[str, Any], params: dict[str, Any]) -> tuple:
    return ("extract", {"text": "x", **mcp}, "/v1/extract/tiny-gliner", {"items": ONE, "params": params})


#: (case id, tool, tool arguments, route, body, the message both must contain)
CASES = [
    ("dims-bool", *_encode({"dims": True}, {"dims": True}), "dims must be a positive integer up to 65,536, got True"),
    ("dims-string", *_encode({"dims": "10"}, {"dims": "10"}), "dims must be a positive integer up to 65,536, got '10'"),
    ("dims-zero", *_encode({"dims": 0}, {"dims": 0}), "dims must be a positive integer up to 65,536, got 0"),
    (
        "dtype",
        *_encode({"output_dtype": "int4"}, {"output_dtype": "int4"}),
        "output_dtype 'int4' is not supported; use one of float32, float16, int8, binary",
    ),
    (
        "normalize",
        *_encode({"normalize": "yes"}, {}, {"normalize": "yes"}),
        "normalize must be true or false, got 'yes'",
    ),
    ("is-query", *_encode({"is_query": 1}, {}, {"is_query": 1}), "is_query must be true or false, got 1"),
    ("instruction", *_encode({"instruction": 5}, {"instruction": 5}), "instruction must be a string, got int"),
    (
        "output-types",
        *_encode({"output_types": ["colour"]}, {"output_types": ["colour"]}),
        "output_types[0] 'colour' is not supported; use one of dense, sparse, multivector",
    ),
    (
        "top-k-bool",
        *_rerank({"top_k": True}, {"top_k": True}),
        "top_k must be a positive integer up to 100,000, got True",
    ),
    ("top-k-zero", *_rerank({"top_k": 0}, {"top_k": 0}), "top_k must be a positive integer up to 100,000, got 0"),
    (
        "top-k-float",
        *_rerank({"top_k": 2.5}, {"top_k": 2.5}),
        "top_k must be a positive integer up to 100,000, got 2.5",
    ),
    (
        "threshold-string",
        *_extract({"threshold": "0.5"}, {"threshold": "0.5"}),
        "threshold must be a number from 0 to 1, got '0.5'",
    ),
    (
        "threshold-range",
        *_extract({"threshold": 2.0}, {"threshold": 2.0}),
        "threshold must be between 0 and 1, got 2.0",
    ),
    ("labels-type", *_extract({"labels": {"a": 1}}, {"labels": {"a": 1}}), "labels must be a list, got dict"),
    ("labels-entry", *_extract({"labels": ["person", 3]}, {"labels": ["person", 3]}), "labels[1] must be a string"),
    (
        "surrogate-text",
        "encode",
        {"texts": ["a\ud800"]},
        "/v1/encode/tiny-encoder",
        {"items": [{"text": "a\ud800"}]},
        "contains a lone surrogate (U+D800) at character 1",
    ),
    (
        "surrogate-instruction",
        *_encode({"instruction": "x\udfff"}, {"instruction": "x\udfff"}),
        "lone surrogate (U+DFFF)",
    ),
    (
        "flat-ner",
        *_extract({"flat_ner": "no"}, {"options": {"flat_ner": "no"}}),
        "flat_ner must be true or false, got 'no'",
    ),
]


@pytest.fixture(scope="module")
def both(tiny_models: dict[str, Path]) -> Iterator[tuple[Engine, Any]]:
    engine = Engine(server_config(tiny_models))
    yield engine, create_server(engine)
    engine.close()


def _mcp_error(server: Any, tool: str, arguments: dict[str, Any]) -> str:
    async def call() -> dict[str, Any]:
        async with connect(server) as caller:
            return await caller.call(tool, arguments)

    result = anyio.run(call)
    assert result["isError"], (tool, arguments, result)
    return text_of(result)


def _http_error(engine: Engine, path: str, body: dict[str, Any]) -> str:
    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            # ensure_ascii: a lone surrogate travels as its JSON escape, as a client written in any language sends it
            content = json.dumps(body, ensure_ascii=True)
            return await client.post(path, content=content, headers={"Content-Type": "application/json"})

    response = anyio.run(post)
    assert response.status_code == 400, (path, body, response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"] == "INVALID_INPUT"
    return str(error["message"])


def _option_message(message: str) -> str:
    """The message with where it came from taken off ("the arguments: ", "the encode body: ", "params.").

    The MCP SDK puts "Error executing tool <name>: " before the text of an error raised inside a tool body
    (the engine's own checks, such as the one for lone surrogates); that framing is the SDK's, not ours.
    """
    message = re.sub(r"^Error executing tool \w+: ", "", message)
    for prefix in ("the arguments", "the encode body", "the score body", "the extract body"):
        if message.startswith(prefix):
            message = message[len(prefix) :].lstrip(": ")
    return message.replace("params.options.", "").replace("params.", "").replace("options.", "")


@pytest.mark.parametrize(
    ("tool", "arguments", "path", "body", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_same_bad_argument_same_message(both, tool, arguments, path, body, expected):
    engine, server = both
    mcp = _mcp_error(server, tool, arguments)
    http = _http_error(engine, path, body)
    assert expected in mcp, mcp
    assert expected in http, http
    # the tool names its inputs for what they are (texts, documents, text), the body calls them items
    from sie_mcp.server import TOOL_RENAMES

    inputs = next(k for k, v in TOOL_RENAMES[tool].items() if v == "items" and k in arguments)
    http = re.sub(r"^items(\[\d+\])?(\.text)?", lambda m: inputs + (m.group(1) or ""), _option_message(http))
    assert _option_message(mcp) == http, (mcp, http)


@pytest.mark.parametrize(
    ("tool", "arguments", "path", "body"),
    [
        ("encode", {"texts": ["x"], "bogus": 1}, "/v1/encode/tiny-encoder", {"items": ONE, "bogus": 1}),
        (
            "rerank",
            {"query": "q", "documents": ["x"], "bogus": 1},
            "/v1/score/tiny-reranker",
            {"query": Q, "items": ONE, "bogus": 1},
        ),
        ("extract", {"text": "x", "bogus": 1}, "/v1/extract/tiny-gliner", {"items": ONE, "bogus": 1}),
    ],
    ids=["encode", "rerank", "extract"],
)
def test_unknown_argument_named_with_the_allowed_ones(both, tool, arguments, path, body):
    engine, server = both
    for message, allowed in (
        (_mcp_error(server, tool, arguments), set(arguments) - {"bogus"}),
        (_http_error(engine, path, body), set(body) - {"bogus"}),
    ):
        assert "unknown field 'bogus'; allowed: " in message, message
        named = set(message.split("allowed: ", 1)[1].replace(" ", "").split(","))
        assert allowed <= named, (message, allowed)
