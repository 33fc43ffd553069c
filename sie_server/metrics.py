"""Prometheus metrics for ``/metrics``, fed by an engine listener.

:class:`EngineMetrics` is an :class:`~sie_core.EngineListener`: the engine reports every request, batch, load
and unload to it. Gauges that describe the engine right now (loaded models, their memory, queue depth) are
read from the engine when ``/metrics`` is scraped. Every metric lives in the instance's own registry, so
several apps in one process never collide.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from sie_core import Engine, SieError

__all__ = ["CONTENT_TYPE_LATEST", "EngineMetrics", "unload_kind"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_UNKNOWN = "_unknown"  # label for ids that name no model, so a client cannot grow the label set at will


def unload_kind(reason: str) -> str:
    """The label for an unload's reason: ``evicted`` (to make room), ``idle``, ``closed`` or ``requested``."""
    if reason.startswith("to make room"):
        return "evicted"
    if reason.startswith("idle"):
        return "idle"
    if reason.startswith("engine closed"):
        return "closed"
    return "requested"


class EngineMetrics:
    """Engine and HTTP metrics in one Prometheus registry.

    Args:
        registry: Registry to use; a new private one by default.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("sie_requests", "Engine calls finished", ["model", "task"], registry=r)
        self.errors = Counter("sie_request_errors", "Engine calls that failed", ["model", "task", "code"], registry=r)
        self.items = Counter("sie_request_items", "Items (texts, pairs) in engine calls", ["model", "task"], registry=r)
        self.latency = Histogram(
            "sie_request_duration_seconds",
            "Engine call latency, queueing included",
            ["model", "task"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "sie_batch_size", "Items per forward pass", ["model", "task"], buckets=_BATCH_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "sie_batch_duration_seconds", "Forward pass time", ["model", "task"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.loads = Counter("sie_model_loads", "Model loads by result", ["model", "result"], registry=r)
        self.load_seconds = Histogram(
            "sie_model_load_duration_seconds", "Model load time", ["model"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.unloads = Counter("sie_model_unloads", "Model unloads by reason", ["model", "reason"], registry=r)
        self.evictions = Counter("sie_model_evictions", "Models evicted (memory limits or idle)", ["model"], registry=r)
        self.queue_depth = Gauge("sie_queue_depth", "Items waiting per loaded model", ["model"], registry=r)
        self.model_loaded = Gauge("sie_model_loaded", "1 when the model is loaded", ["model", "task"], registry=r)
        self.model_memory = Gauge("sie_model_memory_bytes", "Memory of a loaded model's weights", ["model"], registry=r)
        self.models_loaded = Gauge("sie_models_loaded", "Models loaded now", registry=r)
        self.http_requests = Counter(
            "sie_http_requests",
            "HTTP requests by route and status (client_closed: the client went away before the answer)",
            ["route", "status"],
            registry=r,
        )

    # ------------------------------------------------------------------ EngineListener
    def on_request(self, model: str, task: str, seconds: float, items: int, error: SieError | None) -> None:
        """Count a finished engine call."""
        if error is not None and error.code == "MODEL_NOT_FOUND":
            model = _UNKNOWN
        self.requests.labels(model, task).inc()
        self.items.labels(model, task).inc(items)
        self.latency.labels(model, task).observe(seconds)
        if error is not None:
            self.errors.labels(model, task, error.code).inc()

    def on_batch(self, model: str, task: str, size: int, seconds: float) -> None:
        """Record one forward pass."""
        self.batch_size.labels(model, task).observe(size)
        self.batch_seconds.labels(model, task).observe(seconds)

    def on_load(self, model: str, seconds: float, error: SieError | None) -> None:
        """Record a finished load."""
        if error is not None and error.code == "MODEL_NOT_FOUND":
            model = _UNKNOWN
        self.loads.labels(model, "error" if error is not None else "ok").inc()
        self.load_seconds.labels(model).observe(seconds)

    def on_unload(self, model: str, reason: str) -> None:
        """Record an unload; evictions (memory limits, idleness) are counted apart too."""
        kind = unload_kind(reason)
        self.unloads.labels(model, kind).inc()
        if kind in ("evicted", "idle"):
            self.evictions.labels(model).inc()

    # ------------------------------------------------------------------ scrape
    async def render(self, engine: Engine) -> bytes:
        """Refresh the state gauges from ``engine`` and return the exposition text."""
        infos = await engine.alist_models()
        depth = engine.queue_depth()
        loaded = [i for i in infos if i.loaded]
        for gauge in (self.model_loaded, self.model_memory, self.queue_depth):
            gauge.clear()
        for info in loaded:
            self.model_loaded.labels(info.id, ",".join(info.tasks)).set(1)
            if info.memory_bytes is not None:
                self.model_memory.labels(info.id).set(info.memory_bytes)
            self.queue_depth.labels(info.id).set(depth.get(info.id, 0))
        self.models_loaded.set(len(loaded))
        return generate_latest(self.registry)

    def count_http(self, route: str, status: int | str) -> None:
        """Count an HTTP answer (``status`` is the code, or ``client_closed`` when the client went away first)."""
        self.http_requests.labels(route, str(status)).inc()


def route_label(path: str) -> str:
    """A bounded label for a request path (model ids never become labels here)."""
    for prefix in ("/v1/encode", "/v1/score", "/v1/extract", "/v1/models", "/v1/embeddings", "/v1/rerank", "/mcp"):
        if path == prefix or path.startswith(prefix + "/"):
            return prefix
    if path in ("/healthz", "/health", "/readyz", "/metrics", "/v1/status", "/", "/docs", "/openapi.json"):
        return path
    if path.startswith("/docs/"):
        return "/docs"
    return "other"
