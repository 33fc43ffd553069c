"""RaySettings, the Serve config file's args, and merging the replicas' model lists (no Ray instance)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from sie_core import EngineConfig, InvalidInputError
from sie_core.results import ModelInfo

with warnings.catch_warnings():  # Ray's own pydantic models warn when they are defined
    warnings.simplefilter("ignore", DeprecationWarning)
    pytest.importorskip("ray.serve")
    from sie_ray.backend import merge_models
    from sie_ray.cli import serve_parser
    from sie_ray.registry import ReplicaRegistry, ReplicaReport
    from sie_ray.settings import RaySettings, namespace_from_mapping, settings_from_args


def _settings(**values: object) -> RaySettings:
    return settings_from_args(namespace_from_mapping(serve_parser(), values))


def test_replicas_or_autoscaling_and_resources_become_serve_options() -> None:
    fixed = _settings(replicas=3, num_cpus=0.5, num_gpus=0.25, max_models_per_replica=2)
    options = fixed.model_options()
    assert options["num_replicas"] == 3 and "autoscaling_config" not in options
    assert options["ray_actor_options"] == {"num_cpus": 0.5, "num_gpus": 0.25}
    engine = fixed.replica_engine()
    assert engine.max_loaded_models == 2 and engine.num_threads == 1 and engine.load_wait_s == 20.0

    scaled = _settings(min_replicas=1, max_replicas=4, target_ongoing_requests=8)
    options = scaled.model_options()
    assert "num_replicas" not in options
    assert options["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 8}
    assert _settings(max_loaded_models=3).max_models_per_replica == 3  # the engine's limit is the replica's


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": 2, "min_replicas": 1, "max_replicas": 3}, "either --replicas or"),
        ({"min_replicas": 2}, "both --min-replicas and --max-replicas"),
        ({"min_replicas": 3, "max_replicas": 2}, "min <= max"),
        ({"replicas": 0}, "--replicas must be 1 or more"),
        ({"num_gpus": -1.0}, "--num-gpus must be 0 or more"),
        ({"max_models_per_replica": 2, "max_loaded_models": 3}, "must agree"),
        ({"bogus": 1}, "unknown option 'bogus'"),
        ({"host": "0.0.0.0"}, "--allow-remote"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(values: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        _settings(**values)


def test_serve_config_args_take_flag_names_and_aliases(tmp_path) -> None:
    config = tmp_path / "models.toml"
    config.write_text('[[models]]\nid = "mine/encoder"\ntask = "encode"\npath = "/models/enc"\n', encoding="utf-8")
    settings = _settings(config=str(config), model="score=mine/reranker=/models/rr", preload="mine/encoder")
    ids = {m.id for m in settings.engine.models}
    assert {"mine/encoder", "mine/reranker"} <= ids
    assert settings.server.preload == ("mine/encoder",)
    assert settings.engine.allow_any_model is False  # a server's strict model policy, as `sie-agents serve`
    assert RaySettings(engine=EngineConfig()).replicas == 1


def test_models_merge_over_replicas_with_the_best_state_and_summed_counters() -> None:
    a = ModelInfo(id="m", tasks=("encode",), state="not_loaded", loads=1, evictions=1, requests=5)
    b = ModelInfo(id="m", tasks=("encode",), state="loaded", loaded=True, device="cpu", loads=2, requests=7)
    c = ModelInfo(id="n", tasks=("score",), state="failed", last_error="broken")
    reports = [
        ReplicaReport(replica="r1", pid=1, node="n", actor="a", started_at=1.0, models=(a, c)),
        ReplicaReport(replica="r2", pid=2, node="n", actor="b", started_at=2.0, models=(b,)),
    ]
    merged = {i.id: i for i in merge_models(reports)}
    assert merged["m"].loaded and merged["m"].state == "loaded" and merged["m"].device == "cpu"
    assert (merged["m"].loads, merged["m"].evictions, merged["m"].requests) == (3, 1, 12)
    assert merged["n"].state == "failed" and merged["n"].last_error == "broken"


def test_registry_marks_silent_replicas_down_then_forgets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import sie_ray.registry as registry_module

    now = [100.0]
    monkeypatch.setattr(registry_module.time, "monotonic", lambda: now[0])
    registry = ReplicaRegistry(down_after_s=5, forget_after_s=60)
    registry.report(ReplicaReport(replica="r1", pid=1, node="n", actor="a", started_at=1.0))
    registry.report(ReplicaReport(replica="r2", pid=2, node="n", actor="b", started_at=2.0))
    assert [r.up for r in registry.snapshot()] == [True, True]
    now[0] += 10
    registry.report(ReplicaReport(replica="r2", pid=2, node="n", actor="b", started_at=2.0))
    assert [(r.replica, r.up) for r in registry.snapshot()] == [("r1", False), ("r2", True)]
    now[0] += 55
    assert [r.replica for r in registry.snapshot()] == ["r2"]
    registry.forget("r2")
    assert registry.snapshot() == []


def test_the_serve_config_builder_makes_the_three_deployments() -> None:
    from sie_ray.app import INGRESS, MODEL, REGISTRY, build

    app = build({"replicas": 2, "num_cpus": 0.5, "max_models_per_replica": 3, "ingress_num_cpus": 0.25})
    ingress = app._bound_deployment
    assert ingress.name == INGRESS
    model, registry = ingress.init_args[0], ingress.init_args[1]
    model, registry = model._bound_deployment, registry._bound_deployment  # Ray's (pinned) Application internals
    assert model.name == MODEL and registry.name == REGISTRY
    assert model.num_replicas == 2 and model.ray_actor_options["num_cpus"] == 0.5
    with pytest.raises(InvalidInputError, match="unknown option 'replica'"):
        build({"replica": 2})


@pytest.mark.parametrize("manifest", ["deploy/ray/serve.yaml", "deploy/kuberay/rayservice.yaml"])
def test_the_shipped_serve_configs_name_only_real_flags(manifest: str) -> None:
    import yaml

    document = yaml.safe_load((Path(__file__).parents[2] / manifest).read_text(encoding="utf-8"))
    if document.get("kind") == "RayService":
        document = yaml.safe_load(document["spec"]["serveConfigV2"])
    (application,) = document["applications"]
    assert application["import_path"] == "sie_ray.app:build"
    args = namespace_from_mapping(serve_parser(), application["args"])  # an unknown key raises
    assert args.config_file == "/models/models.toml"
