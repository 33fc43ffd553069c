"""Thread sizing (sie_core.threads) from given affinity, quota and core counts; no timing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sie_core import EngineConfig, SieError
from sie_core.threads import (
    CpuWatch,
    ThreadPlan,
    cgroup_cpu_limit,
    parse_num_threads,
    plan_threads,
    thread_plan,
    threads_left,
)


def test_plan_uses_the_affinity_mask_not_the_cpu_count() -> None:
    plan = plan_threads(cpu_count=8, affinity=2, physical_cores=8)
    assert (plan.usable_cpus, plan.torch_threads, plan.source) == (2, 2, "affinity")
    assert (plan.onnx_runs, plan.onnx_threads, plan.interop_threads) == (2, 1, 1)


def test_plan_without_affinity_falls_back_to_the_cpu_count() -> None:
    plan = plan_threads(cpu_count=4, affinity=None)
    assert (plan.usable_cpus, plan.torch_threads, plan.source) == (4, 4, "cpu_count")


@pytest.mark.parametrize(
    ("quota", "usable", "source"),
    [(None, 4, "affinity"), (2.0, 2, "cgroup"), (1.5, 1, "cgroup"), (0.5, 1, "cgroup"), (6.0, 4, "affinity")],
)
def test_a_cgroup_quota_caps_the_plan_rounding_down(quota: float | None, usable: int, source: str) -> None:
    plan = plan_threads(cpu_count=4, affinity=4, quota=quota)
    assert (plan.usable_cpus, plan.torch_threads, plan.source) == (usable, usable, source)


def test_one_thread_per_physical_core() -> None:
    plan = plan_threads(cpu_count=8, affinity=8, physical_cores=4)
    assert (plan.usable_cpus, plan.torch_threads) == (8, 4)
    assert plan_threads(cpu_count=2, affinity=1, physical_cores=1).torch_threads == 1


def test_override_wins() -> None:
    plan = plan_threads(cpu_count=2, affinity=1, quota=1.0, override=6)
    assert (plan.usable_cpus, plan.torch_threads, plan.onnx_runs, plan.source) == (1, 6, 6, "override")
    with pytest.raises(SieError, match="positive whole number"):
        plan_threads(cpu_count=2, override=0)


def test_plan_records_the_wait_policy_and_describes_itself() -> None:
    plan = plan_threads(cpu_count=2, affinity=2, wait_policy="PASSIVE")
    assert plan.wait_policy == "PASSIVE" and plan_threads(cpu_count=2).wait_policy == "default"
    line = plan.describe()
    assert "2 torch" in line and "affinity" in line and "wait policy PASSIVE" in line


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_cpu_max(tmp_path: Path) -> None:
    membership = "0::/kubepods/pod1\n"
    assert cgroup_cpu_limit(tmp_path, membership) is None
    _write(tmp_path / "kubepods/pod1/cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(tmp_path, membership) is None
    _write(tmp_path / "kubepods/pod1/cpu.max", "150000 100000\n")
    assert cgroup_cpu_limit(tmp_path, membership) == 1.5
    _write(tmp_path / "kubepods/cpu.max", "100000 100000\n")  # a parent's tighter quota wins
    assert cgroup_cpu_limit(tmp_path, membership) == 1.0
    _write(tmp_path / "kubepods/cpu.max", "garbage\n")
    assert cgroup_cpu_limit(tmp_path, membership) == 1.5


def test_cgroup_v2_at_the_namespace_root(tmp_path: Path) -> None:
    _write(tmp_path / "cpu.max", "200000 100000")
    assert cgroup_cpu_limit(tmp_path, "0::/\n") == 2.0


def test_cgroup_v1_cfs_quota(tmp_path: Path) -> None:
    membership = "4:memory:/x\n1:cpu,cpuacct:/docker/abc\n0::/\n"
    folder = tmp_path / "cpu,cpuacct/docker/abc"
    _write(folder / "cpu.cfs_quota_us", "-1\n")
    _write(folder / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(tmp_path, membership) is None
    _write(folder / "cpu.cfs_quota_us", "50000\n")
    assert cgroup_cpu_limit(tmp_path, membership) == 0.5


def test_cgroup_limit_feeds_the_plan(tmp_path: Path) -> None:
    _write(tmp_path / "cpu.max", "150000 100000")
    plan = plan_threads(cpu_count=2, affinity=2, quota=cgroup_cpu_limit(tmp_path, "0::/"))
    assert (plan.torch_threads, plan.source) == (1, "cgroup")


@pytest.mark.parametrize(("raw", "expected"), [("3", 3), (" 1 ", 1), ("auto", None), ("AUTO", None), ("", None)])
def test_parse_num_threads(raw: str, expected: int | None) -> None:
    assert parse_num_threads(raw) == expected


@pytest.mark.parametrize("raw", ["0", "-2", "two", "1.5"])
def test_bad_sie_num_threads_names_the_allowed_values(raw: str) -> None:
    with pytest.raises(SieError) as caught:
        EngineConfig.from_env({"SIE_NUM_THREADS": raw})
    message = str(caught.value)
    assert "SIE_NUM_THREADS" in message and "positive whole number" in message and "'auto'" in message


def test_override_from_env_and_config() -> None:
    assert EngineConfig.from_env({"SIE_NUM_THREADS": "3"}).num_threads == 3
    assert EngineConfig.from_env({"SIE_NUM_THREADS": "auto"}).num_threads is None
    assert EngineConfig.from_env({"SIE_NUM_THREADS": "3"}, num_threads=5).num_threads == 5
    plan = thread_plan(EngineConfig(num_threads=3).num_threads)
    assert isinstance(plan, ThreadPlan) and (plan.torch_threads, plan.source) == (3, "override")
    auto = thread_plan(None)
    assert auto.source in ("affinity", "cgroup", "cpu_count") and 1 <= auto.torch_threads <= (os.cpu_count() or 1)


def test_the_wait_policy_is_the_users(monkeypatch: pytest.MonkeyPatch) -> None:
    from sie_core.threads import _wait_policy

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    assert _wait_policy() == "default"
    monkeypatch.setenv("GOMP_SPINCOUNT", "10000")
    assert _wait_policy() == "GOMP_SPINCOUNT=10000"
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert _wait_policy() == "PASSIVE"


def test_a_loaded_cpu_model_lists_its_threads(tiny_models: dict[str, Path]) -> None:
    from sie_core import Engine, ModelSpec
    from sie_core.wire import model_info_from_wire, model_info_to_wire

    spec = ModelSpec(id="tiny-encoder", task="encode", path=str(tiny_models["encoder"]))
    expected = thread_plan(None).torch_threads
    with Engine(device="cpu", offline=True, models=(spec,)) as engine:
        assert next(i for i in engine.list_models() if i.id == "tiny-encoder").threads is None  # not loaded
        assert engine.load("tiny-encoder").threads == expected
        info = next(i for i in engine.list_models() if i.id == "tiny-encoder")
        assert info.threads == expected
        wire = model_info_to_wire(info)
        assert wire["threads"] == expected and model_info_from_wire(wire).threads == expected


@pytest.mark.parametrize(
    ("threads", "usable", "others", "expected"),
    [
        (2, 2, 0.0, 2),
        (2, 2, 0.4, 2),  # under half a core taken: keep both
        (2, 2, 0.5, 1),  # a busy neighbour on one of two cores: one thread
        (2, 2, 1.9, 1),  # never below one
        (8, 8, 2.6, 5),
        (4, 8, 1.0, 4),  # fewer threads than free cores: unchanged
    ],
)
def test_threads_shrink_to_the_cores_others_leave(threads: int, usable: int, others: float, expected: int) -> None:
    assert threads_left(threads, usable, others) == expected


def test_cpu_watch_subtracts_this_processs_own_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sie_core.threads as threads_module

    clock = {"now": 100.0, "own": 10.0}
    stat = tmp_path / "stat"
    tick = os.sysconf("SC_CLK_TCK")

    def write(busy_s: float, idle_s: float) -> None:  # user, nice, system, idle, iowait, irq, softirq, steal
        stat.write_text(f"cpu  {int(busy_s * tick)} 0 0 {int(idle_s * tick)} 0 0 0 0 0 0\ncpu0 ...\n")

    real_open = open
    monkeypatch.setattr(threads_module.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(threads_module.time, "process_time", lambda: clock["own"])
    monkeypatch.setattr(
        "builtins.open", lambda path, *a, **k: real_open(stat if path == "/proc/stat" else path, *a, **k)
    )
    write(busy_s=50, idle_s=50)
    watch = CpuWatch(interval_s=0.5)
    clock["now"] += 0.2
    assert watch.others() == 0.0  # not sampled again within the interval
    clock["now"] += 0.8  # one second after the first sample: 2 busy core-seconds, 1 of them ours
    clock["own"] += 1.0
    write(busy_s=52, idle_s=50)
    assert watch.others() == pytest.approx(1.0)
    clock["now"] += 1.0  # now only our own work
    clock["own"] += 1.5
    write(busy_s=53.5, idle_s=50.5)
    assert watch.others() == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # passive: short single texts on one thread, a long one and batches on the free cores
        ("PASSIVE", [1, 1, 2, 2, 1, 1]),
        # libgomp's spinning (the default): every batch on the free cores
        ("default", [2, 2, 2, 2, 1, 1]),
    ],
)
def test_torch_threads_are_sized_per_batch(monkeypatch: pytest.MonkeyPatch, policy: str, expected: list[int]):
    torch = pytest.importorskip("torch")
    from sie_core.adapters import _torch

    plan = ThreadPlan(2, 2, 1, 2, 1, "affinity", policy)
    monkeypatch.setattr("sie_core.threads.thread_plan", lambda override=None: plan)
    others = {"cores": 0.0}
    monkeypatch.setattr("sie_core.threads.CpuWatch.others", lambda self: others["cores"])
    seen: list[int] = []
    before = torch.get_num_threads()
    try:
        run = _torch.sized_threads(lambda group, items: seen.append(torch.get_num_threads()) or items, 2)
        run(None, ["one short sentence"])
        run(None, [("a query", "a short document")])
        run(None, ["x" * 2000])  # one long text
        run(None, ["a", "b"])
        others["cores"] = 0.9  # a neighbour takes a core
        run(None, ["a", "b"])
        run(None, ["x" * 2000])
    finally:
        torch.set_num_threads(before)
    assert seen == expected
