"""The model deployment: each replica holds one :class:`~sie_core.Engine`, and Ray's multiplexer loads into it.

The ingress sends every call with ``multiplexed_model_id=<model id>``, so Ray routes it to a replica that holds
(or is loading) that model. In the replica:

1. the model id is checked against the engine's catalog and policy first, so an unknown id or a wrong task is
   refused before Ray's multiplexer frees a slot for it;
2. the multiplexed loader (:meth:`ModelReplica.held`, Ray's ``@serve.multiplexed`` with
   ``max_num_models_per_replica`` = the engine's ``max_loaded_models``) loads the model into the engine;
   the request waits for it up to the server's load wait, then answers ``MODEL_LOADING`` with ``Retry-After``
   while the load goes on;
3. the call runs on the engine, so batching across callers, prompts, limits and errors are the engine's own.

Evictions are the engine's too: Ray's multiplexer drops the least recently used model from what the replica
advertises when it makes room, and the engine, holding the same number of models, unloads its least recently used
idle one when the next load starts (after the calls still using it finish). A load that fails early (missing
files) therefore unloads nothing, as in a single server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections import Counter
from typing import Any

from sie_core import Engine, SieError
from sie_core.backend import Backend
from sie_core.catalog import Catalog
from sie_core.config import EngineConfig
from sie_core.local import LocalBackend
from sie_core.timing import RequestTiming, current_timing, favour_responsiveness
from sie_server.common import still_loading
from sie_server.metrics import unload_kind

from .protocol import Failure, Reply
from .registry import ReplicaReport
from .settings import RaySettings

__all__ = ["HeldModel", "ModelReplica", "logs_to_stderr"]

logger = logging.getLogger("sie_ray.replica")

_CALLS = {"encode": "aencode_request", "score": "ascore_request", "extract": "aextract_request"}


class HeldModel:
    """What Ray's multiplexer caches per model id: a name for a model the engine holds.

    It has no ``__del__`` on purpose: Ray calls that when it drops a model from its cache, and unloading there
    would stop a model other calls still use; the engine evicts under its own (equal) limit instead.
    """

    def __init__(self, model: str) -> None:
        self.model = model

    def __repr__(self) -> str:
        return f"HeldModel({self.model!r})"


class _LocalFactory:
    """Builds the replica engine's local backend and keeps it, for the model checks of :meth:`ModelReplica.call`."""

    def __init__(self) -> None:
        self.backend: LocalBackend | None = None

    def __call__(self, config: EngineConfig, catalog: Catalog, listeners: list[Any]) -> Backend:
        self.backend = LocalBackend(config, catalog, listeners)
        return self.backend


class _Counts:
    """Engine listener of a replica: loads, failed loads, evictions and requests per model; wakes the reporter."""

    def __init__(self, wake: Any) -> None:
        self.loads: Counter[str] = Counter()
        self.load_failures: Counter[str] = Counter()
        self.evictions: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self._wake = wake

    def on_request(self, model: str, task: str, seconds: float, items: int, error: SieError | None) -> None:
        if error is None or error.code != "MODEL_NOT_FOUND":
            self.requests[model] += 1

    def on_batch(self, model: str, task: str, size: int, seconds: float) -> None:
        pass

    def on_load(self, model: str, seconds: float, error: SieError | None) -> None:
        (self.loads if error is None else self.load_failures)[model] += 1
        self._wake()

    def on_unload(self, model: str, reason: str) -> None:
        if unload_kind(reason) in ("evicted", "idle"):
            self.evictions[model] += 1
        self._wake()


class ModelReplica:
    """One model replica (the body of the ``SieModel`` deployment; :func:`sie_ray.app.build_app` binds it).

    A subclass made by :func:`sie_ray.app.model_deployment` adds :meth:`held`, Ray's multiplexed loader, with
    the configured ``max_num_models_per_replica``.

    Args:
        registry: Handle of the registry deployment (None: no reports, as in unit tests).
        settings: The application's settings.
    """

    async def __init__(self, registry: Any, settings: RaySettings) -> None:  # type: ignore[misc]  # Serve awaits it
        from ray import serve

        logs_to_stderr()
        favour_responsiveness()  # a server process of its own (GIL hand-offs, no GC pauses over loaded models)
        context = serve.get_replica_context()
        self.worker = f"{context.replica_id.deployment_id.name}#{context.replica_id.unique_id}"
        self._registry = registry
        self._settings = settings
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._counts = _Counts(lambda: self._loop.call_soon_threadsafe(self._changed.set))
        self._factory = _LocalFactory()
        self.engine = Engine(settings.replica_engine(), backend_factory=self._factory)
        self.engine.add_listener(self._counts)
        await self.engine.alist_models()  # starts the engine, so the backend exists for the model checks
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._in_flight = 0
        self._started_at = time.time()
        self._closing = False
        self._reporter = asyncio.ensure_future(self._report_loop())
        logger.info("replica %s ready (engine: %s)", self.worker, self.engine.config.device)

    async def held(self, model_id: str) -> HeldModel:
        """Ray's multiplexed loader (defined by the subclass with ``@serve.multiplexed``)."""
        raise NotImplementedError  # pragma: no cover - replaced by model_deployment()

    async def load_into_engine(self, model_id: str) -> HeldModel:
        """Load ``model_id`` into this replica's engine (what :meth:`held` runs on a cache miss)."""
        await self.engine.aload(model_id)
        return HeldModel(model_id)

    # ------------------------------------------------------------------ calls from the ingress
    async def call(self, task: str, request: Any) -> Reply:
        """Serve one typed request (``task``: encode, score or extract) on this replica's engine."""
        self._in_flight += 1
        timing = RequestTiming()
        token = current_timing.set(timing)
        try:
            key = self._checked(str(request.model), task)
            await self._ready(key)
            value = await getattr(self.engine, _CALLS[task])(request)
            return Reply(self.worker, value=value, queue_s=timing.queue_s, inference_s=timing.inference_s)
        except SieError as exc:
            return Reply(self.worker, failure=Failure.of(exc), queue_s=timing.queue_s, inference_s=timing.inference_s)
        finally:
            current_timing.reset(token)
            self._in_flight -= 1

    async def load(self, model: str, task: str | None) -> Reply:
        """Load a model (preloads, ``Engine.load``) through the multiplexer, as a call would."""
        try:
            key = self._checked(model, task)
            await self._ready(key)
            return Reply(self.worker, value=await self.engine.aload(key, task))
        except SieError as exc:
            return Reply(self.worker, failure=Failure.of(exc))

    async def list_models(self, task: str | None) -> list[Any]:
        """The models as this replica's engine sees them (asked before any replica has reported)."""
        return await self.engine.alist_models(task)

    def _checked(self, model: str, task: str | None) -> str:
        """The model's canonical id; UnknownModelError / WrongTaskError before the multiplexer is involved."""
        backend = self._factory.backend
        assert backend is not None
        spec = backend.manager.check_task(model, task) if task else backend.manager.spec_for(model)
        return spec.id if spec is not None else model

    async def _ready(self, key: str) -> None:
        """Wait (bounded) for the multiplexed loader; the load itself goes on when the wait runs out."""
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self.held(key))
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._settled(key, done))
            if self.engine.model_state(key) != "loaded":
                self._changed.set()  # a load starts: say so now, so the registry (and /metrics) show it
        wait = float(self.engine.config.load_wait_s or self._settings.server.load_wait_s)
        try:
            await asyncio.wait_for(asyncio.shield(pending), timeout=wait)
        except asyncio.TimeoutError:
            raise still_loading(key, wait, self._settings.server.loading_retry_after_s) from None

    def _settled(self, key: str, done: asyncio.Future[Any]) -> None:
        if self._pending.get(key) is done:
            del self._pending[key]
        if not done.cancelled():
            done.exception()  # retrieved here: a load whose waiters all gave up must not warn

    # ------------------------------------------------------------------ reports
    async def report(self) -> ReplicaReport:
        """The replica's current state (what it pushes to the registry)."""
        import ray

        context = ray.get_runtime_context()
        # Read before awaiting the engine: a short load may end while the engine answers, and the registry
        # must see it start.
        loading = tuple(k for k in self._pending if self.engine.model_state(k) != "loaded")
        return ReplicaReport(
            replica=self.worker,
            pid=os.getpid(),
            node=ray.util.get_node_ip_address(),
            actor=context.get_actor_name() or "",
            started_at=self._started_at,
            models=tuple(await self.engine.alist_models()),
            queue_depth=self.engine.queue_depth(),
            loading=loading,
            in_flight=self._in_flight,
            loads=dict(self._counts.loads),
            load_failures=dict(self._counts.load_failures),
            evictions=dict(self._counts.evictions),
            requests=dict(self._counts.requests),
        )

    async def _report_loop(self) -> None:
        interval = self._settings.report_interval_s
        while not self._closing:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=interval)
            self._changed.clear()
            if self._registry is None:
                continue
            try:
                await asyncio.wait_for(self._registry.report.remote(await self.report()), timeout=max(5.0, interval))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the registry restarting must not take a replica down
                logger.debug("could not report to the registry: %r", exc)

    async def __del__(self) -> None:
        """Serve's graceful shutdown: stop reporting, say goodbye to the registry, close the engine."""
        self._closing = True
        self._reporter.cancel()
        with contextlib.suppress(Exception):
            if self._registry is not None:
                await asyncio.wait_for(self._registry.forget.remote(self.worker), timeout=2)
        await self.engine.aclose()


def logs_to_stderr(level: int = logging.INFO) -> None:
    """Send this Ray worker's ``sie_*`` logs to stderr, which Ray keeps in the worker's log file (never stdout)."""
    for name in ("sie_core", "sie_server", "sie_mcp", "sie_ray"):
        named = logging.getLogger(name)
        if not named.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            named.addHandler(handler)
            named.propagate = False
            named.setLevel(level)
