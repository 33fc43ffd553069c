"""``/metrics`` of the Ray ingress: the single server's metrics plus one series per model replica.

The ingress's own metrics (:class:`sie_server.EngineMetrics`) count HTTP answers and engine calls as they pass
through it, and their model gauges (``sie_model_loaded``, ``sie_queue_depth``) sum the replicas' reports. Each
replica's own counters come from the registry, labelled ``replica`` (its ``X-SIE-Worker`` value):

=====================================  ======================================================================
``sie_replica_up``                     1 while the replica reports, 0 once it stopped (lost or shut down)
``sie_replica_info``                   1, with the replica's ``pid``, ``node`` and Ray ``actor`` name
``sie_replica_model_loads_total``      loads per ``model`` and ``result`` (``ok`` / ``error``)
``sie_replica_model_evictions_total``  models unloaded to make room or for idleness, per ``model``
``sie_replica_requests_total``         calls served per ``model``
``sie_replica_model_loaded``           1 per model the replica holds
``sie_replica_model_loading``          1 per model the replica is loading
``sie_replica_models_loaded``          models the replica holds
``sie_replica_queue_depth``            items waiting per ``model``
``sie_replica_in_flight``              calls the replica is serving
=====================================  ======================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from sie_server.metrics import EngineMetrics

from .registry import ReplicaReport

__all__ = ["RayMetrics", "ReplicaCollector"]


class ReplicaCollector:
    """A Prometheus collector of the replicas' last reports.

    Args:
        reports: Returns the replicas' last reports (read at every scrape).
    """

    def __init__(self, reports: Callable[[], list[ReplicaReport]]) -> None:
        self._reports = reports

    def describe(self) -> list[Metric]:
        """Nothing up front: the series depend on the replicas of the moment."""
        return []

    def collect(self) -> Iterator[Metric]:
        """One family per metric, one series per replica (and model)."""
        up = GaugeMetricFamily("sie_replica_up", "1 while the model replica reports", labels=["replica"])
        info = GaugeMetricFamily(
            "sie_replica_info", "A model replica's process", labels=["replica", "pid", "node", "actor"]
        )
        loads = CounterMetricFamily(
            "sie_replica_model_loads", "Model loads per replica", labels=["replica", "model", "result"]
        )
        per_model = ["replica", "model"]
        evictions = CounterMetricFamily(
            "sie_replica_model_evictions", "Models evicted per replica (limits or idleness)", labels=per_model
        )
        requests = CounterMetricFamily("sie_replica_requests", "Calls served per replica", labels=per_model)
        loaded = GaugeMetricFamily("sie_replica_model_loaded", "1 per model a replica holds", labels=per_model)
        loading = GaugeMetricFamily("sie_replica_model_loading", "1 per model a replica loads", labels=per_model)
        count = GaugeMetricFamily("sie_replica_models_loaded", "Models a replica holds", labels=["replica"])
        queue = GaugeMetricFamily("sie_replica_queue_depth", "Items waiting per replica", labels=per_model)
        in_flight = GaugeMetricFamily("sie_replica_in_flight", "Calls a replica is serving", labels=["replica"])
        for r in self._reports():
            name = r.replica
            up.add_metric([name], 1.0 if r.up else 0.0)
            info.add_metric([name, str(r.pid), r.node, r.actor], 1.0)
            for model, n in r.loads.items():
                loads.add_metric([name, model, "ok"], n)
            for model, n in r.load_failures.items():
                loads.add_metric([name, model, "error"], n)
            for model, n in r.evictions.items():
                evictions.add_metric([name, model], n)
            for model, n in r.requests.items():
                requests.add_metric([name, model], n)
            held = [m.id for m in r.models if m.loaded] if r.up else []
            for model in held:
                loaded.add_metric([name, model], 1.0)
            count.add_metric([name], len(held))
            for model in r.loading if r.up else ():
                loading.add_metric([name, model], 1.0)
            for model, depth in (r.queue_depth if r.up else {}).items():
                queue.add_metric([name, model], depth)
            in_flight.add_metric([name], r.in_flight if r.up else 0)
        yield from (up, info, loads, evictions, requests, loaded, loading, count, queue, in_flight)


class RayMetrics(EngineMetrics):
    """The ingress's metrics: :class:`~sie_server.EngineMetrics` and a :class:`ReplicaCollector` in one registry.

    Args:
        reports: Returns the replicas' last reports.
    """

    def __init__(self, reports: Callable[[], list[ReplicaReport]]) -> None:
        super().__init__()
        self.registry.register(ReplicaCollector(reports))
