"""The MCP extract tool beyond entities: classes, relations, schema fields, fixed-label spaCy, list_models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sie_core import Engine, ModelSpec
from sie_mcp import McpSettings, create_server

from ..tiny_models import build_extra
from .helpers import connect, server_config, text_of, tiny_specs

ALICE = "Alice Smith works for Globex Corporation in Paris."
GIVEN = [{"start": 0, "end": 11, "label": "person"}, {"start": 22, "end": 40, "label": "organization"}]


@pytest.fixture(scope="module")
def kinds_server(tiny_models: dict[str, Path]) -> Iterator[Any]:
    root = tiny_models["bert"].parent
    extra = (
        ModelSpec(id="tiny-nli", task="extract", family="nli", path=str(build_extra(root, "nli"))),
        ModelSpec(id="tiny-glirel", task="extract", family="glirel", path=str(build_extra(root, "glirel"))),
        ModelSpec(id="tiny-gliner2", task="extract", family="gliner2", path=str(build_extra(root, "gliner2"))),
    )
    engine = Engine(server_config(tiny_models, models=(*tiny_specs(tiny_models), *extra)))
    yield create_server(engine, McpSettings(max_items_per_call=8))
    engine.close()


async def test_extract_classes_relations_and_fields(kinds_server: Any) -> None:
    schema = {"type": "object", "properties": {"employee": {"type": "string", "description": "who works"}}}
    async with connect(kinds_server) as client:
        classified = await client.call("extract", {"text": ALICE, "classes": ["job", "trip"], "model": "tiny-nli"})
        related = await client.call(
            "extract",
            {
                "text": ALICE,
                "labels": ["person", "organization", "city"],
                "relation_labels": ["works for"],
                "threshold": 0.0,
                "model": "tiny-glirel",
            },
        )
        filled = await client.call(
            "extract", {"text": ALICE, "output_schema": schema, "threshold": 0.0, "model": "tiny-gliner2"}
        )
    assert classified["isError"] is False, text_of(classified)
    (result,) = classified["structuredContent"]["results"]
    assert [c["label"] for c in result["classifications"]] in (["job", "trip"], ["trip", "job"])
    assert "classes: " in text_of(classified) and "job" in text_of(classified)
    assert related["isError"] is False, text_of(related)
    relations = related["structuredContent"]["results"][0]["relations"]
    assert relations and all(ALICE[r["head_start"] : r["head_end"]] == r["head"] for r in relations)
    assert "—works for→" in text_of(related)  # head —label→ tail in the text part
    assert filled["isError"] is False, text_of(filled)
    assert set(filled["structuredContent"]["results"][0]["data"]) == {"employee"}
    assert "fields: employee:" in text_of(filled)


async def test_fixed_label_spacy_and_refusals_name_what_is_supported(kinds_server: Any) -> None:
    async with connect(kinds_server) as client:
        found = await client.call("extract", {"text": ALICE, "labels": ["person", "city"], "model": "en_core_web_sm"})
        unknown = await client.call("extract", {"text": ALICE, "labels": ["invoice_number"], "model": "en_core_web_sm"})
        wrong = await client.call("extract", {"text": ALICE, "classes": ["a"], "model": "en_core_web_sm"})
        nothing = await client.call("extract", {"text": ALICE, "model": "tiny-nli"})
    entities = {(e["text"], e["label"]) for e in found["structuredContent"]["results"][0]["entities"]}
    assert ("Alice Smith", "person") in entities and ("Paris", "city") in entities
    assert unknown["isError"] is True and "it finds CARDINAL, DATE" in text_of(unknown)
    assert wrong["isError"] is True and "does not support the option classes; it supports: labels" in text_of(wrong)
    assert nothing["isError"] is True and "needs classes" in text_of(nothing)


async def test_list_models_says_what_each_extractor_finds(kinds_server: Any) -> None:
    async with connect(kinds_server) as client:
        listed = await client.call("list_models", {"task": "extract"})
    entries = {m["id"]: m for m in listed["structuredContent"]["models"]}
    assert entries["en_core_web_sm"]["finds"] == ["entities"] and "PERSON" in entries["en_core_web_sm"]["labels"]
    assert entries["tiny-nli"]["finds"] == ["classifications"] and entries["tiny-nli"]["labels"] is None
    assert entries["tiny-glirel"]["finds"] == ["relations", "entities"]
    assert set(entries["tiny-gliner2"]["finds"]) == {"entities", "classifications", "relations", "data"}
    assert entries["tiny-gliner"]["finds"] == ["entities"]
    assert "en_core_web_sm" in text_of(listed) and "labels: CARDINAL" in text_of(listed)


async def test_given_entities_are_not_an_mcp_argument(kinds_server: Any) -> None:
    async with connect(kinds_server) as client:
        refused = await client.call(
            "extract", {"text": ALICE, "entities": GIVEN, "relation_labels": ["x"], "model": "tiny-glirel"}
        )
    assert refused["isError"] is True and "unknown field 'entities'" in text_of(refused)
