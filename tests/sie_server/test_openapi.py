"""``/openapi.json``: it describes every route with the typed bodies, and schemathesis fuzzes a live server with it.

The fuzz run uses a fixed seed (hypothesis ``derandomize``) and a bounded number of examples per route; it
requires: no 5xx, every 4xx/5xx in the ``{"error": {"code", "message"}}`` envelope, and every answer (200s
included) matching its documented status, content type and schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from sie_core import Engine, EngineConfig, ModelSpec
from sie_core.wire import packb

from .http_server import SEED_EXTRACTOR, SEED_RERANKER, TINY_ENCODER, serve_in_thread

pytestmark = pytest.mark.slow

EXAMPLES_PER_ROUTE = 40


@pytest.fixture(scope="module")
def openapi_server(tiny_models: dict[str, Path]) -> Iterator[str]:
    from sie_server.app import create_app
    from sie_server.common import ServerSettings

    models = (
        ModelSpec(id=TINY_ENCODER, task="encode", path=str(tiny_models["encoder"])),
        ModelSpec(id=SEED_RERANKER, task="score", path=str(tiny_models["cross_encoder"])),
        ModelSpec(id=SEED_EXTRACTOR, task="extract", path=str(tiny_models["gliner"])),
    )
    defaults = {"encode": TINY_ENCODER, "score": SEED_RERANKER, "extract": SEED_EXTRACTOR}
    config = EngineConfig(
        device="cpu",
        offline=True,
        allow_any_model=False,
        allow_local_paths=False,
        models=models,
        default_models=defaults,
        max_text_chars=2000,
    )
    engine = Engine(config)
    for model in defaults.values():
        engine.load(model)
    settings_ = ServerSettings(load_wait_s=60)
    try:
        with serve_in_thread(create_app(engine, settings_), settings_) as url:
            yield url
    finally:
        engine.close()


# ---------------------------------------------------------------------- the document
def _route_templates() -> dict[str, set[str]]:
    from starlette.routing import Route

    from sie_server.app import create_app

    class McpApp:  # stands in for the MCP streamable-HTTP app (an ASGI app: the route passes every method)
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...

    with Engine(EngineConfig(device="cpu", offline=True)) as engine:
        app = create_app(engine, mcp=(McpApp(), None))
    out: dict[str, set[str]] = {}
    for route in app.routes:
        assert isinstance(route, Route)
        path = re.sub(r"\{(\w+):path\}", r"{\1}", route.path)
        methods = route.methods if route.methods is not None else {"POST", "GET", "DELETE"}  # MCP's three
        out[path] = {m.lower() for m in methods if m != "HEAD"}
    return out


def test_every_route_is_described(openapi_server: str) -> None:
    from sie_server.openapi import build_openapi

    doc = build_openapi(mcp=True)
    assert doc["openapi"].startswith("3.1")
    for path, methods in _route_templates().items():
        assert path in doc["paths"], f"{path} is not in /openapi.json"
        assert methods <= set(doc["paths"][path]), (path, methods)
    live = httpx.get(openapi_server + "/openapi.json").json()
    assert "/mcp" not in live["paths"]  # this server mounts no MCP app
    assert live["paths"]["/v1/encode/{model}"]["post"]["parameters"][0]["example"] == TINY_ENCODER


def test_bodies_come_from_the_typed_requests_and_errors_share_the_envelope() -> None:
    from sie_core.requests import EmbeddingsBody, EncodeBody, ErrorEnvelope, ExtractBody, RerankBody, ScoreBody
    from sie_server.openapi import build_openapi

    doc = build_openapi(mcp=False)
    schemas = doc["components"]["schemas"]
    bodies = {
        "/v1/encode/{model}": EncodeBody,
        "/v1/score/{model}": ScoreBody,
        "/v1/extract/{model}": ExtractBody,
        "/v1/embeddings": EmbeddingsBody,
        "/v1/rerank": RerankBody,
    }
    for path, model in bodies.items():
        content = doc["paths"][path]["post"]["requestBody"]["content"]
        ref = content["application/json"]["schema"]["$ref"]
        name = ref.rsplit("/", 1)[1]
        assert schemas[name]["additionalProperties"] is False  # unknown fields are rejected, as documented
        assert set(schemas[name]["properties"]) == set(model.model_fields)
    envelope = schemas["ErrorEnvelope"]
    assert envelope["required"] == ["error"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if op.get("security") == []:  # the open health routes and pages
                continue
            default = op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"]
            assert default.endswith("/ErrorEnvelope"), (method, path)
    option = schemas["EncodeOptions"]["properties"]["dims"]
    assert ErrorEnvelope.model_fields["error"] and "Matryoshka" in str(option)


# ---------------------------------------------------------------------- fuzzing
@schemathesis.serializer("application/msgpack")
def _to_msgpack(ctx: Any, value: Any) -> bytes:
    try:
        return packb(value)
    except (TypeError, OverflowError):  # an integer beyond 64 bits has no MessagePack form: send garbage instead
        return json.dumps(value).encode()


def _schema(openapi_server: str) -> Any:
    return schemathesis.openapi.from_url(openapi_server + "/openapi.json").exclude(path="/mcp")


def _check(case: Any) -> None:
    response = case.call_and_validate(
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
        timeout=60,
    )
    if response.status_code >= 400:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        assert isinstance(error, dict), response.text[:300]
        assert isinstance(error.get("code"), str) and error["code"], response.text[:300]
        assert isinstance(error.get("message"), str) and error["message"], response.text[:300]


def _runner(label: str, strategy: Any, counts: dict[str, int]) -> Any:
    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_ROUTE,
        derandomize=True,  # the fixed seed: the same cases on every run
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],  # no shrinking: keep the run bounded
    )
    def run(case: Any) -> None:
        counts[label] = counts.get(label, 0) + 1
        _check(case)

    return run


def test_fuzz_openapi(openapi_server: str) -> None:
    """Positive and negative cases for every operation; one failure per operation and mode is reported."""
    operations = [result.ok() for result in _schema(openapi_server).get_all_operations()]
    assert len(operations) >= 15
    failures: list[str] = []
    counts: dict[str, int] = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run = _runner(operation.label, operation.as_strategy(generation_mode=mode), counts)
            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, operation.label  # nothing to get wrong: no parameters
            except Exception as exc:
                failures.append(f"{operation.label} ({mode.value}): {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
    assert sum(counts.values()) >= len(operations) * 5, counts
    print(f"schemathesis: {sum(counts.values())} cases over {len(operations)} operations")
