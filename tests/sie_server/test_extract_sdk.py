"""The real sie-sdk client decodes relations, classifications and data from a running `sie-agents serve`.

The server runs the packaged en_core_web_sm (real weights) and tiny NLI, GLiREL and GLiNER2 models built locally;
the remote backend (Engine(base_url=...)) reads the same answers back into ExtractResults.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sie_core import Engine
from sie_core.results import Classification, Entity, ExtractResult, Relation
from sie_core.wire import extract_response, extract_results_from_wire

from ..tiny_models import build_extra
from .http_server import ServeProcess

TEXT = "Alice Smith works for Globex Corporation in Paris."
SCHEMA = {"type": "object", "properties": {"employee": {"type": "string", "description": "the person who works"}}}


def test_wire_round_trip_keeps_every_kind() -> None:
    result = ExtractResult(
        model="m",
        entities=[Entity(text="Alice", label="person", score=0.9, start=0, end=5)],
        relations=[Relation("Alice", "Globex", "works for", 0.7, "person", 0, 5, "org", 16, 22)],
        classifications=[Classification("job", 0.8), Classification("trip", 0.2)],
        data={"employee": "Alice", "places": ["Paris"]},
        windows=2,
        id="a",
    )
    body = extract_response([result], "m")
    assert body["items"][0]["relations"][0] == {
        "head": "Alice",
        "tail": "Globex",
        "relation": "works for",
        "score": 0.7,
        "head_label": "person",
        "head_start": 0,
        "head_end": 5,
        "tail_label": "org",
        "tail_start": 16,
        "tail_end": 22,
    }
    assert extract_results_from_wire(body, "m", ["a"]) == [result]
    # an SIE server's relation (texts only) still decodes
    body["items"][0]["relations"] = [{"head": "A", "tail": "B", "relation": "r", "score": 0.5}]
    assert extract_results_from_wire(body, "m", ["a"])[0].relations == [Relation("A", "B", "r", 0.5)]


@pytest.fixture(scope="module")
def served(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tiny_models["bert"].parent
    entries = [
        ("tiny/nli", "nli", build_extra(root, "nli")),
        ("tiny/gliner2", "gliner2", build_extra(root, "gliner2")),
    ]
    folder = tmp_path_factory.mktemp("extract-serve")
    config = folder / "models.toml"
    config.write_text(
        "".join(f'[[models]]\nid = "{i}"\ntask = "extract"\nfamily = "{f}"\npath = "{p}"\n\n' for i, f, p in entries)
        + '[[models]]\nid = "tiny/glirel"\ntask = "extract"\nfamily = "glirel"\n'
        + f'path = "{build_extra(root, "glirel")}"\noptions = {{ entity_model = "en_core_web_sm" }}\n',
        encoding="utf-8",
    )
    proc = ServeProcess(["--config", str(config), "--device", "cpu", "--offline", "--no-mcp"], folder / "serve.log")
    yield proc
    assert proc.stop() == 0, proc.output()


@pytest.mark.slow
def test_sie_client_decodes_relations_classifications_and_data(served: ServeProcess) -> None:
    from sie_sdk import SIEClient

    client = SIEClient(served.url, timeout_s=120)
    spacy = client.extract("en_core_web_sm", {"text": TEXT}, labels=["person", "organization", "city"])
    found = [(e["text"], e["label"], TEXT[e["start"] : e["end"]]) for e in spacy["entities"]]
    assert ("Alice Smith", "person", "Alice Smith") in found and ("Paris", "city", "Paris") in found
    assert {label for _, label, _ in found} <= {"person", "organization", "city"}
    # SIE's client has no classes argument: labels (as SIE reads them for classifiers), or options
    for kwargs in ({"labels": ["job", "trip"]}, {"options": {"classes": ["job", "trip"]}}):
        classified = client.extract("tiny/nli", {"text": TEXT}, **kwargs)
        assert [c["label"] for c in classified["classifications"]] in (["job", "trip"], ["trip", "job"])
        assert sum(c["score"] for c in classified["classifications"]) == pytest.approx(1.0, abs=1e-5)
    related = client.extract(
        "tiny/glirel",
        {"text": TEXT},
        labels=["person", "organization"],
        options={"relation_labels": ["works for"], "threshold": 0.0},
    )
    assert {(r["head"], r["tail"], r["relation"]) for r in related["relations"]} == {
        ("Alice Smith", "Globex Corporation", "works for"),
        ("Globex Corporation", "Alice Smith", "works for"),
    }
    filled = client.extract("tiny/gliner2", {"text": TEXT}, output_schema=SCHEMA, options={"threshold": 0.0})
    assert set(filled["data"]) == {"employee"} and isinstance(filled["data"]["employee"], str)

    # the remote backend reads the same answers into ExtractResults
    with Engine(base_url=served.url) as remote:
        result = remote.extract(
            "tiny/glirel", TEXT, labels=["person", "organization"], relation_labels=["works for"], threshold=0.0
        )
        assert result.relations and {r.head_label for r in result.relations} <= {"person", "organization"}
        assert all(TEXT[r.head_start : r.head_end] == r.head for r in result.relations)
        data = remote.extract("tiny/gliner2", TEXT, output_schema=SCHEMA, threshold=0.0).data
        assert set(data) == {"employee"}
