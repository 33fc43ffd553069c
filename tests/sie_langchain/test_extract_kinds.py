"""SIEExtractor returns relations, classifications and schema fields in its artifact, and a compact text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import ToolMessage

from sie_core import Engine, EngineConfig, ModelSpec
from sie_langchain import SIEExtractor

from ..tiny_models import build_extra

TEXT = "Alice Smith works for Globex Corporation in Paris."
SCHEMA = {"type": "object", "properties": {"employee": {"type": "string", "description": "who works"}}}


@pytest.fixture(scope="module")
def kinds_engine(tiny_models: dict[str, Path]) -> Iterator[Engine]:
    root = tiny_models["bert"].parent
    models = (
        ModelSpec(id="tiny-nli", task="extract", family="nli", path=str(build_extra(root, "nli"))),
        ModelSpec(id="tiny-glirel", task="extract", family="glirel", path=str(build_extra(root, "glirel"))),
        ModelSpec(id="tiny-gliner2", task="extract", family="gliner2", path=str(build_extra(root, "gliner2"))),
    )
    engine = Engine(EngineConfig(device="cpu", offline=True, models=models))
    yield engine
    engine.close()


def _call(tool: SIEExtractor, args: dict) -> ToolMessage:
    message = tool.invoke({"type": "tool_call", "id": "call-1", "name": tool.name, "args": args})
    assert isinstance(message, ToolMessage)
    return message


def test_classes_in_the_artifact_and_the_default_labels_stay_home(kinds_engine: Engine) -> None:
    tool = SIEExtractor(model="tiny-nli", engine=kinds_engine, classes=["invoice", "travel"])
    message = _call(tool, {"text": TEXT})
    expected = kinds_engine.extract("tiny-nli", TEXT, classes=["invoice", "travel"])
    assert message.artifact["classifications"] == [c.to_dict() for c in expected.classifications]
    assert message.artifact["entities"] == [] and message.artifact["relations"] == []
    top = expected.classifications[0]
    assert str(message.content) == "classes: " + ", ".join(f"{c.label} {c.score:.2f}" for c in expected.classifications)
    assert top.label in str(message.content)
    per_call = _call(tool, {"text": TEXT, "classes": ["spam", "weather", "job"]})
    assert {c["label"] for c in per_call.artifact["classifications"]} == {"spam", "weather", "job"}


def test_relations_in_the_artifact_and_as_head_relation_tail(kinds_engine: Engine) -> None:
    tool = SIEExtractor(
        model="tiny-glirel",
        engine=kinds_engine,
        labels=["person", "organization"],
        threshold=0.0,
        relation_labels=["works for"],
    )
    message = _call(tool, {"text": TEXT})
    relations = message.artifact["relations"]
    assert relations and set(relations[0]) >= {"head", "tail", "relation", "score", "head_start", "tail_label"}
    first = relations[0]
    assert f"{first['head']} —works for→ {first['tail']} ({first['score']:.2f})" in str(message.content)
    assert all(TEXT[r["head_start"] : r["head_end"]] == r["head"] for r in relations)


def test_schema_fields_through_options(kinds_engine: Engine) -> None:
    tool = SIEExtractor(model="tiny-gliner2", engine=kinds_engine, threshold=0.0, options={"output_schema": SCHEMA})
    message = _call(tool, {"text": TEXT})
    assert set(message.artifact["data"]) == {"employee"}
    assert f"employee: {message.artifact['data']['employee']}" in str(message.content)
    with pytest.raises(Exception, match=r"output_schema"):
        SIEExtractor(model="tiny-gliner2", engine=kinds_engine, options={"output_schema": {"type": "array"}})
