"""Where model replicas report what they hold, so one endpoint can answer for all of them.

Ray Serve routes each call to one replica and has no public way to ask every replica something, so each
replica pushes a :class:`ReplicaReport` (its models and their state, its load, eviction and request counters,
its queue depth) to one small registry deployment: after every load or unload and at least every
``report_interval_s``. The ingress reads the registry for ``/v1/models``, the status page and ``/metrics``.
A replica that stops reporting (killed, its node lost) is marked down after a few intervals and forgotten later.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from sie_core.results import ModelInfo

__all__ = ["ReplicaRegistry", "ReplicaReport"]


@dataclass(frozen=True)
class ReplicaReport:
    """One model replica's state, as it last reported it.

    Attributes:
        replica: ``deployment#id``, the ``X-SIE-Worker`` value of its answers.
        pid: Its process id.
        node: The IP address of its node.
        actor: Its Ray actor name.
        started_at: When it started (Unix time).
        models: Its engine's models (catalog and every model seen) with state and counters.
        queue_depth: Items waiting per loaded model.
        loading: Models its multiplexer is loading now.
        in_flight: Calls it is serving now.
        loads: Successful loads per model.
        load_failures: Failed loads per model.
        evictions: Models unloaded to make room or for idleness, per model.
        requests: Calls served per model.
        up: False once it has stopped reporting (set by the registry).
        age_s: Seconds since its last report (set by the registry).
    """

    replica: str
    pid: int
    node: str
    actor: str
    started_at: float
    models: tuple[ModelInfo, ...] = ()
    queue_depth: dict[str, int] = field(default_factory=dict)
    loading: tuple[str, ...] = ()
    in_flight: int = 0
    loads: dict[str, int] = field(default_factory=dict)
    load_failures: dict[str, int] = field(default_factory=dict)
    evictions: dict[str, int] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    up: bool = True
    age_s: float = 0.0


class ReplicaRegistry:
    """The registry deployment's state: the last report of every replica.

    Args:
        down_after_s: A replica silent this long is reported as down.
        forget_after_s: A replica silent this long is dropped.
    """

    def __init__(self, down_after_s: float = 5.0, forget_after_s: float = 120.0) -> None:
        self._down_after_s = down_after_s
        self._forget_after_s = forget_after_s
        self._reports: dict[str, tuple[float, ReplicaReport]] = {}

    def report(self, report: ReplicaReport) -> None:
        """Store a replica's report."""
        self._reports[report.replica] = (time.monotonic(), report)

    def forget(self, replica: str) -> None:
        """Drop a replica that shut down cleanly."""
        self._reports.pop(replica, None)

    def snapshot(self) -> list[ReplicaReport]:
        """Every known replica's last report, oldest replica first, with ``up`` and ``age_s`` filled in."""
        now = time.monotonic()
        for name, (at, _) in list(self._reports.items()):
            if now - at > self._forget_after_s:
                del self._reports[name]
        out = [
            replace(report, up=now - at <= self._down_after_s, age_s=round(now - at, 3))
            for at, report in self._reports.values()
        ]
        return sorted(out, key=lambda r: (r.started_at, r.replica))
