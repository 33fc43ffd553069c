"""Results equal the reference libraries: SentenceTransformer.encode, CrossEncoder.predict, GLiNER."""

from __future__ import annotations

import re

import numpy as np
import pytest

from sie_core import Engine, EngineConfig, Item, ModelSpec
from sie_core.windows import plan_windows

from ..conftest import MINILM

SENTENCES = [
    "Berlin office revenue",
    "Invoice 4471 from Acme GmbH, due 30 June.",
    "The quick brown fox jumps over the lazy dog near the river bank on a sunny afternoon.",
    "a",
    "Machine learning models turn text into vectors that capture meaning.",
    "Zahlungsziel: 30 Tage netto nach Rechnungsdatum.",
]


@pytest.fixture(scope="module")
def st_minilm(minilm_path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path), device="cpu")


@pytest.fixture(scope="module")
def tiny_engine(tiny_models):
    config = EngineConfig(
        device="cpu",
        offline=True,
        models=(
            ModelSpec(id="tiny-encoder", task="encode", path=str(tiny_models["encoder"])),
            ModelSpec(
                id="tiny-e5-style",
                task="encode",
                path=str(tiny_models["encoder"]),
                query_prompt="query: ",
                document_prompt="passage: ",
                instruction_template="Instruct: {instruction}\nQuery: ",
            ),
            ModelSpec(id="tiny-reranker", task="score", path=str(tiny_models["cross_encoder"])),
            ModelSpec(id="tiny-gliner", task="extract", path=str(tiny_models["gliner"])),
        ),
    )
    with Engine(config) as engine:
        yield engine


def test_encode_equals_sentence_transformers_on_real_weights(shared_engine, st_minilm):
    ours = np.stack([r.dense for r in shared_engine.encode(MINILM, SENTENCES)])
    ref = st_minilm.encode(SENTENCES, batch_size=32)
    assert ours.dtype == np.float32 and ours.shape == ref.shape == (len(SENTENCES), 384)
    assert np.abs(ours - ref).max() <= 1e-5
    normalized = np.stack([r.dense for r in shared_engine.encode(MINILM, SENTENCES, normalize=True)])
    ref_normalized = st_minilm.encode(SENTENCES, normalize_embeddings=True)
    assert np.abs(normalized - ref_normalized).max() <= 1e-5


def test_single_item_in_single_result_out(shared_engine, st_minilm):
    result = shared_engine.encode(MINILM, Item(text="Berlin office revenue", id="q1"))
    assert result.model == MINILM and result.dims == 384 and result.id == "q1"
    assert result["dense"] is result.dense and result.truncated is False and result.tokens == 5
    assert np.abs(result.dense - st_minilm.encode("Berlin office revenue")).max() <= 1e-5


def test_truncation_is_reported(shared_engine):
    long_text = "revenue " * 400
    short, long = shared_engine.encode(MINILM, ["revenue", long_text])
    assert short.truncated is False
    assert long.truncated is True and long.tokens > 256


def test_prompts_match_sentence_transformers_prompt_names(tiny_engine, tiny_models):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(tiny_models["encoder"]), device="cpu")
    texts = ["invoice due date", "Berlin revenue grew"]
    query = np.stack([r.dense for r in tiny_engine.encode("tiny-encoder", texts, is_query=True)])
    doc = np.stack([r.dense for r in tiny_engine.encode("tiny-encoder", texts)])
    assert np.abs(query - st.encode(texts, prompt_name="query")).max() <= 1e-5
    assert np.abs(doc - st.encode(texts, prompt_name="document")).max() <= 1e-5
    assert np.abs(query - doc).max() > 1e-4  # the prompt really changed the input
    custom = np.stack([r.dense for r in tiny_engine.encode("tiny-encoder", texts, instruction="Find invoices:")])
    assert np.abs(custom - st.encode(texts, prompt="Find invoices: ")).max() <= 1e-5


def test_catalog_prompts_and_instruction_template(tiny_engine, tiny_models):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(tiny_models["encoder"]), device="cpu")
    texts = ["invoice due date"]
    q = tiny_engine.encode("tiny-e5-style", texts, is_query=True)[0].dense
    d = tiny_engine.encode("tiny-e5-style", texts)[0].dense
    i = tiny_engine.encode("tiny-e5-style", texts, instruction="Find invoices")[0].dense
    assert np.abs(q - st.encode(texts, prompt="query: ")[0]).max() <= 1e-5
    assert np.abs(d - st.encode(texts, prompt="passage: ")[0]).max() <= 1e-5
    assert np.abs(i - st.encode(texts, prompt="Instruct: Find invoices\nQuery: ")[0]).max() <= 1e-5


def test_dims_and_output_dtypes(shared_engine, st_minilm):
    ref = st_minilm.encode(["Berlin office revenue"])[0]
    cut = shared_engine.encode(MINILM, "Berlin office revenue", dims=128)
    assert cut.dims == 128 and cut.dense.shape == (128,)
    assert np.abs(cut.dense - ref[:128] / np.linalg.norm(ref[:128])).max() <= 1e-5
    half = shared_engine.encode(MINILM, "Berlin office revenue", output_dtype="float16")
    assert half.dense.dtype == np.float16 and np.abs(half.dense.astype(np.float32) - ref).max() < 1e-3
    q = shared_engine.encode(MINILM, "Berlin office revenue", output_dtype="int8")
    assert q.dense.dtype == np.int8 and np.abs(q.dense / 127.0 - ref).max() <= 0.5 / 127 + 1e-6
    bits = shared_engine.encode(MINILM, "Berlin office revenue", output_dtype="binary")
    assert bits.dense.dtype == np.uint8 and bits.dense.shape == (48,) and bits.dims == 384
    assert np.array_equal(np.unpackbits(bits.dense).astype(bool), ref > 0)


def test_score_equals_cross_encoder_predict(tiny_engine, tiny_models):
    import torch
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(tiny_models["cross_encoder"]), device="cpu")
    query = "When is invoice 4471 due?"
    docs = SENTENCES
    result = tiny_engine.score("tiny-reranker", query, docs)
    logits = ce.predict([(query, d) for d in docs], activation_fn=torch.nn.Identity())
    relevance = ce.predict([(query, d) for d in docs])
    assert sorted(e.index for e in result.scores) == list(range(len(docs)))
    for entry in result.scores:
        assert entry.score == pytest.approx(float(logits[entry.index]), abs=1e-5)
        assert entry.relevance == pytest.approx(float(relevance[entry.index]), abs=1e-5)
        assert entry.item_id == str(entry.index)
    assert [e.rank for e in result.scores] == list(range(len(docs)))
    assert [e.index for e in result.scores] == sorted(range(len(docs)), key=lambda i: (-logits[i], i))
    top = tiny_engine.score(
        "tiny-reranker", Item(text=query, id="q"), [Item(text=d, id=f"d{i}") for i, d in enumerate(docs)], top_k=2
    )
    assert top.query_id == "q" and [e.index for e in top.scores] == [e.index for e in result.scores[:2]]
    assert [e.item_id for e in top.scores] == [f"d{e.index}" for e in top.scores]


def _entities(result):
    return [(e.start, e.end, e.label, e.text) for e in result.entities]


def test_extract_equals_gliner_on_texts_that_fit_the_window(tiny_engine, tiny_models):
    from gliner import GLiNER

    gliner = GLiNER.from_pretrained(str(tiny_models["gliner"]), local_files_only=True)
    labels = ["organization", "date", "person"]
    texts = ["Invoice 4471 from Acme GmbH, due 30 June.", "Alice Smith works for Globex in Paris."]
    ours = tiny_engine.extract("tiny-gliner", texts, labels=labels, threshold=0.3)
    ref_batch = gliner.inference(texts, labels, threshold=0.3)
    for result, ref, text in zip(ours, ref_batch, texts):
        ref_single = gliner.predict_entities(text, labels, threshold=0.3)
        assert _entities(result) == sorted((e["start"], e["end"], e["label"], e["text"]) for e in ref)
        assert sorted((e["start"], e["end"], e["label"]) for e in ref_single) == [x[:3] for x in _entities(result)]
        by_span = {(e["start"], e["end"], e["label"]): e["score"] for e in ref}
        for ent in result.entities:
            assert ent.score == pytest.approx(by_span[(ent.start, ent.end, ent.label)], abs=1e-5)
        assert result.windows == 1
    nested = tiny_engine.extract(
        "tiny-gliner", texts[0], labels=labels, threshold=0.3, flat_ner=False, multi_label=True
    )
    ref_nested = gliner.predict_entities(texts[0], labels, threshold=0.3, flat_ner=False, multi_label=True)
    assert _entities(nested) == sorted((e["start"], e["end"], e["label"], e["text"]) for e in ref_nested)


def test_long_text_is_windowed_not_truncated(tiny_engine, tiny_models):
    from gliner import GLiNER

    gliner = GLiNER.from_pretrained(str(tiny_models["gliner"]), local_files_only=True)
    sentence = "Alice Smith works for Globex Corporation in Paris since 2019."
    text = " ".join(f"{sentence} Ref {i}." for i in range(12))  # far more words than the 32-word window
    labels = ["person", "organization"]
    result = tiny_engine.extract("tiny-gliner", text, labels=labels, threshold=0.3)
    assert result.windows > 1
    assert all(text[e.start : e.end] == e.text for e in result.entities)
    assert max(e.end for e in result.entities) > len(text) * 0.9  # the end of the text was read
    # every entity a window found in the part it owns survives the merge with the same offsets, unless it
    # crosses the seam into an entity the neighbouring window owns (then the better-scored one stays)
    splitter = gliner.data_processor.words_splitter
    words = [(s, e) for _, s, e in splitter(text)]
    merged = {(e.start, e.end, e.label) for e in result.entities}
    owned = []
    for n, window in enumerate(plan_windows(text, words, 32, 8)):
        chunk = text[window.start : window.end]
        for ent in gliner.predict_entities(chunk, labels, threshold=0.3):
            start, end = ent["start"] + window.start, ent["end"] + window.start
            if window.own_start <= start < window.own_end:
                owned.append((n, start, end, ent["label"], ent["score"]))
    assert len(owned) > 20
    survivors = 0
    for n, start, end, label, score in owned:
        beaten = any(m != n and s < end and start < e and sc > score for m, s, e, _, sc in owned)
        if not beaten:
            assert (start, end, label) in merged
            survivors += 1
    assert survivors >= len(owned) * 0.8


def test_sync_calls_work_from_many_threads(shared_engine, st_minilm):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda s: shared_engine.encode(MINILM, s), SENTENCES * 4))
    ref = st_minilm.encode(SENTENCES * 4)
    assert np.abs(np.stack([r.dense for r in results]) - ref).max() <= 1e-5


async def test_async_twins(tiny_engine):
    enc = await tiny_engine.aencode("tiny-encoder", ["a b c", "d e"])
    assert len(enc) == 2 and enc[0].dims == 32
    ranked = await tiny_engine.ascore("tiny-reranker", "query", ["a", "b", "c"], top_k=1)
    assert len(ranked.scores) == 1
    found = await tiny_engine.aextract("tiny-gliner", "Alice works at Acme.", labels=["person"], threshold=0.3)
    assert all(re.fullmatch(r"[\w .]+", e.text) for e in found.entities)
    models = await tiny_engine.alist_models("extract")
    assert any(m.id == "tiny-gliner" and m.loaded for m in models)


async def test_sync_methods_work_inside_a_running_event_loop(tiny_engine):
    # e.g. a notebook cell: the call blocks this loop but cannot deadlock, the engine has its own loop
    result = tiny_engine.encode("tiny-encoder", "from inside a coroutine")
    assert result.dims == 32
