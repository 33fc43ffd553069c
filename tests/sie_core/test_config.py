"""EngineConfig: validation, environment variables (read in one place), config files."""

from __future__ import annotations

import pytest

from sie_core import DEFAULT_MODELS, EngineConfig, InvalidInputError, load_config_file


def test_defaults_are_sane():
    config = EngineConfig()
    assert config.device == "auto" and config.dtype == "auto" and config.backend is None
    assert config.max_loaded_models is None and config.memory_budget_mb is None
    assert config.default_models == DEFAULT_MODELS
    assert config.allow_any_model and config.allow_local_paths and not config.offline


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        EngineConfig().device = "cpu"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"device": "tpu"}, r"device 'tpu' is not known; use one of auto, cpu, cuda, mps"),
        ({"dtype": "int3"}, r"dtype 'int3' is not known"),
        ({"backend": "tensorrt"}, r"backend 'tensorrt' is not known; use one of torch, onnx"),
        ({"max_batch_size": 0}, r"max_batch_size must be positive, got 0"),
        ({"memory_budget_mb": -5}, r"memory_budget_mb must be positive"),
    ],
)
def test_bad_values_are_refused(kwargs, pattern):
    with pytest.raises(InvalidInputError, match=pattern):
        EngineConfig(**kwargs)


def test_from_env_reads_sie_variables():
    env = {
        "SIE_DEVICE": "cpu",
        "SIE_MAX_LOADED_MODELS": "2",
        "SIE_MEMORY_BUDGET_MB": "512.5",
        "SIE_OFFLINE": "yes",
        "SIE_ALLOW_ANY_MODEL": "false",
        "SIE_ENCODE_MODEL": "BAAI/bge-small-en-v1.5",
        "UNRELATED": "x",
    }
    config = EngineConfig.from_env(env)
    assert config.device == "cpu" and config.max_loaded_models == 2 and config.memory_budget_mb == 512.5
    assert config.offline is True and config.allow_any_model is False
    assert config.default_models["encode"] == "BAAI/bge-small-en-v1.5"
    assert config.default_models["score"] == DEFAULT_MODELS["score"]


def test_from_env_overrides_win_and_none_is_ignored():
    config = EngineConfig.from_env({"SIE_DEVICE": "cpu", "SIE_MAX_BATCH_SIZE": "8"}, max_batch_size=16, device=None)
    assert config.device == "cpu" and config.max_batch_size == 16


def test_hf_hub_offline_turns_offline_on():
    assert EngineConfig.from_env({"HF_HUB_OFFLINE": "1"}).offline is True


def test_bad_environment_value_names_the_variable():
    with pytest.raises(InvalidInputError, match=r"SIE_MAX_LOADED_MODELS='two' is not a valid int"):
        EngineConfig.from_env({"SIE_MAX_LOADED_MODELS": "two"})


def test_engine_does_not_read_the_environment(monkeypatch):
    from sie_core import Engine

    monkeypatch.setenv("SIE_DEVICE", "mps")
    assert Engine().config.device == "auto"


def test_config_file(tmp_path):
    model_dir = tmp_path / "models" / "mine"
    model_dir.mkdir(parents=True)
    file = tmp_path / "sie.toml"
    file.write_text(
        """
[engine]
max_loaded_models = 3
device = "cpu"

[default_models]
encode = "acme-embedder"

[[models]]
id = "acme-embedder"
path = "models/mine"
task = "encode"
query_prompt = "query: "
aliases = ["acme"]
"""
    )
    config = EngineConfig.from_env({"SIE_CONFIG": str(file), "SIE_MAX_LOADED_MODELS": "4"})
    assert config.max_loaded_models == 4  # the environment beats the file
    assert config.device == "cpu"
    assert config.default_models["encode"] == "acme-embedder"
    (spec,) = config.models
    assert spec.id == "acme-embedder" and spec.path == str(model_dir.resolve()) and spec.aliases == ("acme",)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("[engine]\nmax_models = 2\n", r"unknown \[engine\] key\(s\) max_models; allowed: .*max_loaded_models"),
        ("[server]\nport = 1\n", r"unknown section\(s\) server; allowed: default_models, engine, models"),
        ("[[models]]\nid = 'x'\ntask = 'summarize'\n", r"task 'summarize' is not known"),
        ("[[models]]\nid = 'x'\ntask = 'encode'\nweights = 'y'\n", r"unknown key\(s\) weights; allowed: "),
        ("[engine\n", r"is not valid"),
    ],
)
def test_config_file_errors_are_clear(tmp_path, text, pattern):
    file = tmp_path / "bad.toml"
    file.write_text(text)
    with pytest.raises(InvalidInputError, match=pattern):
        load_config_file(file)


def test_missing_config_file():
    with pytest.raises(InvalidInputError, match=r"config file '/nonexistent.toml' cannot be read"):
        load_config_file("/nonexistent.toml")
