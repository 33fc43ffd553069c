"""BGE-M3-style models: dense, sparse and multi-vector from one pass, equal to FlagEmbedding's BGEM3FlagModel."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from sie_core import Engine, InvalidInputError, ModelSpec
from sie_core.families import detect_family

from .hybrid_models import FLAG_REF, build_hybrid, flag_reference

TEXTS = [
    "Invoice 4471 from Acme GmbH is due on 30 June.",
    "ok",
    "The central bank raised interest rates to fight inflation, the the the.",
    "Payment terms: net 30 days after the invoice date. " * 20,
]
ALL = ["dense", "sparse", "multivector"]


@pytest.fixture(scope="module")
def folder(tiny_models: dict[str, Path]) -> Path:
    return build_hybrid(tiny_models["bert"].parent, "bge_m3")


@pytest.fixture(scope="module")
def m3(folder: Path):
    spec = ModelSpec(id="tiny/bge-m3", task="encode", family="bge-m3", path=str(folder))
    with Engine(device="cpu", offline=True, models=(spec,)) as engine:
        yield engine


@pytest.mark.skipif(not (FLAG_REF / "FlagEmbedding").is_dir(), reason="FlagEmbedding reference not installed")
def test_all_three_outputs_equal_flagembedding(m3: Engine, folder: Path, tmp_path: Path) -> None:
    reference = flag_reference(folder, TEXTS, tmp_path)
    ours = m3.encode("tiny/bge-m3", TEXTS, output_types=ALL)
    for i, r in enumerate(ours):
        assert r.dense is not None and r.sparse is not None and r.multivector is not None
        assert float(np.abs(r.dense - reference["dense"][i]).max()) <= 1e-5
        ids, weights = reference["sparse"][i]
        assert r.sparse.indices.tolist() == ids.tolist(), i
        assert float(np.abs(r.sparse.values - weights).max(initial=0.0)) <= 1e-5
        assert r.multivector.shape == reference["multivector"][i].shape
        assert float(np.abs(r.multivector - reference["multivector"][i]).max()) <= 1e-5
    # queries are encoded the same way (BGE-M3 has no prompts)
    query = m3.encode("tiny/bge-m3", TEXTS[0], output_types=ALL, is_query=True)
    assert query.dense is not None and np.allclose(query.dense, reference["dense"][0], atol=1e-5)


def test_each_output_alone_equals_the_same_output_of_all_three(m3: Engine) -> None:
    together = m3.encode("tiny/bge-m3", TEXTS, output_types=ALL)
    for kind in ALL:
        alone = m3.encode("tiny/bge-m3", TEXTS, output_types=[kind])
        for a, t in zip(alone, together):
            assert [getattr(a, k) is None for k in ALL] == [k != kind for k in ALL]
            if kind == "sparse":
                assert a.sparse is not None and t.sparse is not None
                assert a.sparse.indices.tolist() == t.sparse.indices.tolist()
                assert np.allclose(a.sparse.values, t.sparse.values, atol=1e-6)
            else:
                assert np.allclose(getattr(a, kind), getattr(t, kind), atol=1e-6)
    dense = m3.encode("tiny/bge-m3", TEXTS[0])  # the default output, dense
    assert dense.dims == 32 and abs(float(np.linalg.norm(dense.dense)) - 1.0) < 1e-5
    assert m3.encode("tiny/bge-m3", TEXTS[0], dims=8).dense.shape == (8,)  # type: ignore[union-attr]


def test_sparse_leaves_out_special_tokens_and_keeps_the_largest_weight(m3: Engine) -> None:
    result = m3.encode("tiny/bge-m3", TEXTS[2], output_types=["sparse"])
    sparse = result.sparse
    assert sparse is not None and np.all(np.diff(sparse.indices) > 0) and np.all(sparse.values > 0)
    tokens = set(sparse.tokens())
    assert not tokens & {"[CLS]", "[SEP]", "[PAD]", "[UNK]"}
    assert sparse.dims == len(sparse.vocabulary or [])  # type: ignore[arg-type]


def test_64_concurrent_calls_equal_one_call_and_score_is_maxsim(m3: Engine) -> None:
    texts = [f"{TEXTS[i % 4]} {i}" for i in range(64)]
    whole = m3.encode("tiny/bge-m3", texts, output_types=ALL)

    async def each() -> list:
        return await asyncio.gather(*(m3.aencode("tiny/bge-m3", t, output_types=ALL) for t in texts))

    for a, b in zip(asyncio.run(each()), whole):
        assert np.allclose(a.dense, b.dense, atol=1e-5)
        assert a.sparse.indices.tolist() == b.sparse.indices.tolist()
        assert np.allclose(a.sparse.values, b.sparse.values, atol=1e-5)
        assert np.allclose(a.multivector, b.multivector, atol=1e-5)
    scored = m3.score("tiny/bge-m3", TEXTS[0], TEXTS[1:])
    query = m3.encode("tiny/bge-m3", TEXTS[0], output_types=["multivector"], is_query=True).multivector
    docs = m3.encode("tiny/bge-m3", TEXTS[1:], output_types=["multivector"])
    expected = [float((query @ d.multivector.T).max(axis=1).sum()) for d in docs]  # type: ignore[union-attr]
    assert [e.score for e in sorted(scored.scores, key=lambda e: e.index)] == pytest.approx(expected, abs=1e-4)


def test_folder_detection_catalog_and_errors(m3: Engine, folder: Path, tmp_path: Path) -> None:
    assert detect_family(folder).name == "bge-m3"
    info = next(m for m in m3.list_models() if m.id == "tiny/bge-m3")
    assert info.outputs == ("dense", "sparse", "multivector")
    assert info.output_dims["dense"] == info.output_dims["multivector"] == 32 and info.output_dims["sparse"] > 100
    catalog = next(m for m in Engine(device="cpu", offline=True).list_models("encode") if m.id == "BAAI/bge-m3")
    assert catalog.outputs == ("dense", "sparse", "multivector") and "score" in catalog.tasks
    with pytest.raises(InvalidInputError, match="unknown field 'flat_ner'"):
        m3.encode("tiny/bge-m3", "x", output_types=["sparse"], flat_ner=True)  # type: ignore[call-arg]
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "model.safetensors"):
        if (folder / name).is_file():
            (broken / name).write_bytes((folder / name).read_bytes())
    (broken / "sparse_linear.pt").write_bytes((folder / "sparse_linear.pt").read_bytes())
    spec = ModelSpec(id="tiny/broken-m3", task="encode", family="bge-m3", path=str(broken))
    engine = Engine(device="cpu", offline=True, models=(spec,))
    with engine, pytest.raises(Exception, match=r"colbert_linear\.pt missing"):
        engine.encode("tiny/broken-m3", "x", output_types=ALL)
