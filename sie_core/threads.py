"""How many CPU threads inference uses, and the OpenMP settings that keep it fast on a shared CPU.

The CPUs a process may really use are fewer than ``os.cpu_count()`` when its affinity mask is narrower
(``taskset``, Kubernetes' static CPU manager) or a cgroup quota caps it (``docker run --cpus 1.5``); a thread
team bigger than that only waits on itself. :func:`plan_threads` sizes the team from given numbers (a pure
function, so tests feed it values); :func:`thread_plan` reads this process's and caches the answer.

Torch's CPU build runs its intra-op threads on its own libgomp, whose threads spin at each barrier before
they sleep. On a shared core a spinning thread burns the time slice the thread it waits for needs: on this
project's 2-core VM with a one-core busy loop beside ``sie-agents serve`` (``python -m bench.contention``), two
spinning threads fell to 0.31x (1 client) and 0.35x (32 clients) of their quiet throughput, 1-client p99 6.3x.
Waiting passively (``OMP_WAIT_POLICY=PASSIVE``) held up under the loop but cost a fifth of quiet throughput
(engine at 32 callers 118 vs 150 texts/s, one text per call 48 vs 62/s). So the wait policy stays libgomp's, and
the torch adapters size their team per batch instead (``sie_core.adapters._torch.sized_threads``): the plan's
threads on a quiet machine, :func:`threads_left` of them while :class:`CpuWatch` sees other processes take
cores, so a neighbour costs throughput in proportion rather than stalling every barrier. A user who sets
``OMP_WAIT_POLICY=PASSIVE`` (heavily shared machines) also gets one thread for a single short text, whose
matrices are too small to pay for a sleeping thread's wake-ups.

Importing this module is cheap (no torch, no psutil until a plan is made).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InvalidInputError

if TYPE_CHECKING:
    from .config import EngineConfig

__all__ = [
    "CpuWatch",
    "ThreadPlan",
    "cgroup_cpu_limit",
    "parse_num_threads",
    "plan_threads",
    "prepare_server_threads",
    "thread_plan",
]

logger = logging.getLogger(__name__)

_CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class ThreadPlan:
    """The CPU threads inference uses in this process.

    Attributes:
        usable_cpus: CPUs this process may use: its affinity mask, capped by a cgroup CPU quota.
        torch_threads: Torch intra-op threads (``torch.set_num_threads``).
        interop_threads: Torch inter-op threads (the engine runs one forward pass at a time, so 1).
        onnx_runs: Single-threaded ONNX Runtime ``Run`` calls a CPU batch is split into, at the same time.
        onnx_threads: Intra-op threads of each ONNX Runtime ``Run`` (1: the runs are the parallelism).
        source: What set the count: ``override`` (``num_threads`` / ``SIE_NUM_THREADS``), ``cgroup`` (a CPU
            quota below the affinity mask), ``affinity`` (the CPUs this process may run on), or ``cpu_count``
            (the platform has no affinity call).
        wait_policy: How torch's OpenMP threads wait: ``PASSIVE`` / ``ACTIVE`` (``OMP_WAIT_POLICY``),
            ``GOMP_SPINCOUNT=N`` when only that is set, or ``default`` (libgomp spins a while, then sleeps).
    """

    usable_cpus: int
    torch_threads: int
    interop_threads: int
    onnx_runs: int
    onnx_threads: int
    source: str
    wait_policy: str

    def describe(self) -> str:
        """One line for the start-up log."""
        return (
            f"CPU threads: {self.torch_threads} torch, {self.onnx_runs} ONNX runs x {self.onnx_threads} "
            f"(usable CPUs {self.usable_cpus}, from {self.source}; OpenMP wait policy {self.wait_policy})"
        )


def plan_threads(
    *,
    cpu_count: int,
    affinity: int | None = None,
    quota: float | None = None,
    physical_cores: int | None = None,
    override: int | None = None,
    wait_policy: str = "default",
) -> ThreadPlan:
    """Size the inference threads from given numbers (no I/O).

    A fractional quota rounds down (1.5 CPUs -> 1 thread, never below 1): a team bigger than the quota gets
    throttled part of every period, and each barrier then waits for the throttled thread. With simultaneous
    multithreading, only one thread per physical core is used (the sibling shares the core's arithmetic units).

    Args:
        cpu_count: Logical CPUs of the machine.
        affinity: CPUs in this process's affinity mask, None when the platform cannot tell.
        quota: CPUs allowed by a cgroup quota (quota / period), None for no quota.
        physical_cores: Physical cores of the machine, None when unknown.
        override: Threads asked for explicitly (``EngineConfig.num_threads``); wins over everything.
        wait_policy: How OpenMP threads wait, for the record.

    Returns:
        The plan.

    Raises:
        InvalidInputError: ``override`` is not a positive whole number.
    """
    cpus = max(1, min(cpu_count, affinity or cpu_count))
    source = "affinity" if affinity else "cpu_count"
    if quota is not None and math.floor(quota) < cpus:
        cpus, source = max(1, math.floor(quota)), "cgroup"
    threads = cpus
    if physical_cores and 0 < physical_cores < cpu_count:
        threads = max(1, min(cpus, round(cpus * physical_cores / cpu_count)))
    if override is not None:
        if isinstance(override, bool) or not isinstance(override, int) or override < 1:
            raise InvalidInputError(f"num_threads must be a positive whole number of threads, got {override!r}")
        threads, source = override, "override"
    return ThreadPlan(
        usable_cpus=cpus,
        torch_threads=threads,
        interop_threads=1,
        onnx_runs=threads,
        onnx_threads=1,
        source=source,
        wait_policy=wait_policy,
    )


def parse_num_threads(raw: str) -> int | None:
    """``SIE_NUM_THREADS``'s value: a positive whole number, or ``auto`` / empty for the sized default.

    Raises:
        InvalidInputError: Anything else, naming the allowed values.
    """
    value = raw.strip().lower()
    if value in ("", "auto"):
        return None
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise InvalidInputError(
        f"SIE_NUM_THREADS={raw!r} is not valid; use a positive whole number of threads (e.g. 2) or 'auto' "
        "(size from the CPUs this process may use)"
    )


def cgroup_cpu_limit(root: Path = _CGROUP_ROOT, membership: str | None = None) -> float | None:
    """CPUs allowed by this process's cgroup CPU quota, or None when there is none.

    Reads cgroup v2 ``cpu.max`` (``"max 100000"`` or ``"150000 100000"``) or cgroup v1 ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us`` in the process's own cgroup and each one above it (the tightest wins).

    Args:
        root: The cgroup file system's mount point.
        membership: The text of ``/proc/self/cgroup`` (read when None).
    """
    if membership is None:
        try:
            membership = Path("/proc/self/cgroup").read_text()
        except OSError:
            membership = ""
    v2_path, v1_path = "/", "/"
    for line in membership.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            v2_path = path or "/"
        elif "cpu" in controllers.split(","):
            v1_path = path or "/"
    limits = [_cpu_max(d / "cpu.max") for d in _upwards(root, v2_path)]
    for base in (root / "cpu", root / "cpu,cpuacct"):
        limits += [_cfs(d) for d in _upwards(base, v1_path)]
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def _upwards(base: Path, path: str) -> list[Path]:
    parts = [p for p in path.split("/") if p]
    return [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cpu_max(path: Path) -> float | None:
    text = _read(path)
    if not text:
        return None
    quota, _, period = text.partition(" ")
    try:
        return None if quota == "max" else int(quota) / int(period or 100000)
    except (ValueError, ZeroDivisionError):
        return None


def _cfs(folder: Path) -> float | None:
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    try:
        q, p = int(quota or "-1"), int(period or "100000")
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


@lru_cache(maxsize=8)
def thread_plan(override: int | None = None) -> ThreadPlan:
    """The plan for this process (cached per ``override``, which is ``EngineConfig.num_threads``)."""
    import psutil

    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    plan = plan_threads(
        cpu_count=os.cpu_count() or 1,
        affinity=affinity,
        quota=cgroup_cpu_limit(),
        physical_cores=psutil.cpu_count(logical=False),
        override=override,
        wait_policy=_wait_policy(),
    )
    logger.info(plan.describe())
    return plan


def _wait_policy() -> str:
    if os.environ.get("OMP_WAIT_POLICY"):
        return os.environ["OMP_WAIT_POLICY"].upper()
    if os.environ.get("GOMP_SPINCOUNT"):
        return f"GOMP_SPINCOUNT={os.environ['GOMP_SPINCOUNT']}"
    return "default"


def prepare_server_threads(config: EngineConfig) -> ThreadPlan | None:
    """At a server's start-up: log the thread plan before any model loads (None for a remote engine)."""
    return None if config.base_url is not None else thread_plan(config.num_threads)


class CpuWatch:
    """How many cores other processes are using now: ``/proc/stat``'s busy time minus this process's CPU time.

    Sampled at most every ``interval_s`` (a read of one line); steal time counts as used by others (another
    virtual machine holds the core). Where ``/proc/stat`` cannot be read, others use nothing.
    """

    def __init__(self, interval_s: float = 0.25) -> None:
        self._interval_s = interval_s
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._last = self._sample()
        self._others = 0.0

    def _sample(self) -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                values = [int(v) for v in stat.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        busy = sum(values) - values[3] - values[4]  # all but idle and iowait
        return time.monotonic(), busy / self._tick, time.process_time()

    def others(self) -> float:
        """Cores used by other processes over the last interval."""
        if self._last is None or time.monotonic() - self._last[0] < self._interval_s:
            return self._others
        now = self._sample()
        if now is None:
            return self._others
        wall = now[0] - self._last[0]
        self._others = max(0.0, ((now[1] - self._last[1]) - (now[2] - self._last[2])) / wall)
        self._last = now
        return self._others


def threads_left(threads: int, usable_cpus: int, others: float) -> int:
    """Of ``threads``, how many to use while other processes take ``others`` of ``usable_cpus`` cores.

    A thread team larger than the free cores waits at every barrier for a thread that is not running: under
    a one-core busy loop on 2 cores, two torch threads fell to a third of their quiet throughput. Other
    processes' use is rounded to whole cores (half a core taken counts as one); never below one thread.
    """
    free = usable_cpus - math.floor(others + 0.5)
    return max(1, min(threads, free))
