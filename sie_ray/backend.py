"""The ingress's backend: an :class:`~sie_core.Engine` whose calls go to the model replicas through Ray handles.

The ingress runs the very same app as ``sie-agents serve`` (:func:`sie_server.create_app`) over an engine built
with ``Engine(config, backend_factory=RayBackendFactory(...))``: the routes parse and validate requests as always, and
this backend sends each typed request to the model deployment with ``multiplexed_model_id`` set to the model's
canonical id, which is Ray Serve's routing key. What the replicas hold comes from the registry
(:mod:`sie_ray.registry`).

Failures map onto the engine's errors, so clients see the single server's envelopes: a replica's own error comes
back as the same class with the same message; a replica that died under a call (killed, its node lost, out of
memory) is retried on another up to ``lost_replica_retries`` times, then answers ``503 UNAVAILABLE`` with
``Retry-After``; Serve's back-pressure answers ``503 QUEUE_FULL``; no call waits past ``call_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ray import exceptions as ray_errors
from ray.serve import exceptions as serve_errors

from sie_core import OverloadedError, RemoteUnavailableError, SieError
from sie_core.catalog import Catalog
from sie_core.config import EngineConfig
from sie_core.requests import EncodeRequest, ExtractRequest, ScoreRequest
from sie_core.results import EncodeResult, ExtractResult, ModelInfo, ScoreResult
from sie_core.timing import current_timing

from .protocol import Reply
from .registry import ReplicaReport
from .settings import RaySettings

__all__ = ["RayBackend", "RayBackendFactory", "merge_models"]

logger = logging.getLogger("sie_ray.backend")

#: A replica that is gone: the call may be sent again (encode, score and extract change nothing).
_LOST: tuple[type[BaseException], ...] = (
    ray_errors.RayActorError,
    ray_errors.WorkerCrashedError,
    ray_errors.NodeDiedError,
    ray_errors.OutOfMemoryError,
    serve_errors.ReplicaUnavailableError,
    serve_errors.DeploymentUnavailableError,
)
_UNREACHABLE: tuple[type[BaseException], ...] = (asyncio.TimeoutError, *_LOST)
_STATE_RANK = {"loaded": 3, "loading": 2, "failed": 1, "not_loaded": 0}
_MAX_HANDLES = 1024


class RayBackendFactory:
    """Builds the ingress engine's :class:`RayBackend` (``Engine(config, backend_factory=factory)``) and keeps it.

    Args:
        model: Handle of the model deployment.
        registry: Handle of the registry deployment.
        settings: The application's settings.
    """

    #: The models run in the replicas, which bound their own waits for cold models.
    remote = True

    def __init__(self, model: Any, registry: Any, settings: RaySettings) -> None:
        self.model = model
        self.registry = registry
        self.settings = settings
        self.backend: RayBackend | None = None

    def __call__(self, config: EngineConfig, catalog: Catalog, listeners: list[Any]) -> RayBackend:
        """The backend for the ingress engine."""
        self.backend = RayBackend(config, catalog, listeners, self.model, self.registry, self.settings)
        return self.backend

    def replicas(self) -> list[ReplicaReport]:
        """The replicas' last reports (empty before the engine started)."""
        return self.backend.replicas() if self.backend is not None else []


class RayBackend:
    """Serves typed requests on the model deployment's replicas. Built by :class:`RayBackendFactory`.

    Args:
        config: The engine's configuration (the same as the replicas').
        catalog: The engine's catalog (model ids are routed by their canonical id).
        listeners: The engine's listeners (each call is reported like a local one).
        model: Handle of the model deployment.
        registry: Handle of the registry deployment.
        settings: The application's settings.
    """

    def __init__(
        self,
        config: EngineConfig,
        catalog: Catalog,
        listeners: list[Any],
        model: Any,
        registry: Any,
        settings: RaySettings,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self._listeners = listeners
        self._model = model
        self._registry = registry
        self._settings = settings
        self._handles: OrderedDict[str | None, Any] = OrderedDict()
        self._reports: list[ReplicaReport] = []
        self._merged: dict[str, ModelInfo] = {}
        self._reports_at = 0.0
        self._refreshing: asyncio.Future[None] | None = None
        self._refresher: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Keep the replicas' reports fresh (on the engine's loop)."""
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop(), name="sie-ray-refresh")

    async def close(self) -> None:
        """Stop refreshing (the replicas belong to Serve)."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher

    # ------------------------------------------------------------------ serving
    async def encode(self, request: EncodeRequest) -> list[EncodeResult]:
        """Vectors from the replica that holds the model."""
        result: list[EncodeResult] = await self._serve("encode", request)
        return result

    async def score(self, request: ScoreRequest) -> ScoreResult:
        """Scores from the replica that holds the model."""
        result: ScoreResult = await self._serve("score", request)
        return result

    async def extract(self, request: ExtractRequest) -> list[ExtractResult]:
        """Extractions from the replica that holds the model."""
        result: list[ExtractResult] = await self._serve("extract", request)
        return result

    async def _serve(self, task: str, request: Any) -> Any:
        model = str(request.model)
        key = self.routing_key(model)
        started = time.perf_counter()
        error: SieError | None = None
        try:
            reply = await self._send(key, model, "call", task, request)
            timing = current_timing.get()
            if timing is not None:
                timing.worker = reply.worker
                if reply.queue_s is not None:
                    timing.add_queue(reply.queue_s)
                if reply.inference_s is not None:
                    timing.add_inference(reply.inference_s)
            if reply.failure is not None:
                raise reply.failure.exception()
            return reply.value
        except SieError as exc:
            error = exc
            raise
        finally:
            seconds = time.perf_counter() - started
            for listener in self._listeners:
                try:
                    listener.on_request(key or model, task, seconds, len(request.items), error)
                except Exception:  # a metrics bug must never fail a request
                    logger.exception("engine listener failed")

    def routing_key(self, model: str) -> str | None:
        """The ``multiplexed_model_id`` for ``model``: its canonical id (aliases share one replica's copy).

        None for an id no replica may load (not in the catalog while any hub id and local paths are refused):
        it is sent without a routing key, so Ray's router keeps no state for made-up ids, and the replica's engine
        answers it with its usual ``MODEL_NOT_FOUND``.
        """
        spec = self.catalog.get(model)
        if spec is not None:
            return spec.id
        if self.config.allow_any_model or self.config.allow_local_paths:
            return model
        return None

    def _handle(self, key: str | None) -> Any:
        handle = self._handles.get(key)
        if handle is None:
            handle = self._model if key is None else self._model.options(multiplexed_model_id=key)
            self._handles[key] = handle
            if len(self._handles) > _MAX_HANDLES:
                self._handles.popitem(last=False)
        else:
            self._handles.move_to_end(key)
        return handle

    async def _send(self, key: str | None, model: str, method: str, *args: Any) -> Reply:
        """Call ``method`` on a replica (routed by ``key``), retrying a call whose replica died under it."""
        handle = self._handle(key)
        timeout = self._settings.call_timeout_s
        deadline = time.monotonic() + timeout
        retries = self._settings.lost_replica_retries
        attempt = 0
        while True:
            response = getattr(handle, method).remote(*args)
            try:
                reply: Reply = await asyncio.wait_for(_awaited(response), timeout=max(0.0, deadline - time.monotonic()))
                return reply
            except asyncio.TimeoutError:
                response.cancel()
                raise RemoteUnavailableError(
                    f"no replica answered the call for model {model!r} within {timeout:g} s (call_timeout_s); "
                    "retry later",
                    retry_after=1.0,
                ) from None
            except asyncio.CancelledError:
                response.cancel()  # the client went away: the replica drops the call's queued items
                raise
            except serve_errors.BackPressureError:
                raise OverloadedError(
                    f"every replica serving model {model!r} has a full queue; retry in a moment", retry_after=1.0
                ) from None
            except _LOST as exc:
                attempt += 1
                if attempt > retries or time.monotonic() >= deadline:
                    raise RemoteUnavailableError(
                        f"the replica serving model {model!r} was lost ({type(exc).__name__}) and the call could not "
                        f"be placed on another after {retries} retries; retry in a moment (Ray Serve replaces lost "
                        "replicas)",
                        retry_after=1.0,
                    ) from None
                logger.warning("replica lost during a call for %s (%s); sending it again", model, type(exc).__name__)
                await asyncio.sleep(min(1.0, 0.2 * attempt))

    # ------------------------------------------------------------------ models
    async def list_models(self, task: str | None) -> list[ModelInfo]:
        """Every model with its state and counters summed over the replicas that are up."""
        await self._refresh(max_age_s=0.25)
        infos = list(self._merged.values())
        if not infos:  # no replica has reported yet: ask one
            try:
                infos = await asyncio.wait_for(_awaited(self._model.list_models.remote(None)), timeout=30.0)
            except _UNREACHABLE as exc:
                raise RemoteUnavailableError(
                    f"no model replica is reachable yet ({type(exc).__name__}); retry in a moment", retry_after=1.0
                ) from None
        return [i for i in infos if task is None or task in i.tasks]

    async def load(self, model: str, task: str | None) -> ModelInfo:
        """Load a model on the replica Ray routes it to (start-up preloads)."""
        reply = await self._send(self.routing_key(model), model, "load", model, task)
        if reply.failure is not None:
            raise reply.failure.exception()
        info: ModelInfo = reply.value
        return info

    async def unload(self, model: str) -> bool:
        """Replicas unload under their own limits; nothing is unloaded from the ingress (always False)."""
        return False

    def model_state(self, model: str) -> str:
        """The best state over the replicas (loaded on one is loaded), from their last reports."""
        spec = self.catalog.get(model)
        info = self._merged.get(spec.id if spec is not None else model)
        return info.state if info is not None else "not_loaded"

    def queue_depth(self) -> dict[str, int]:
        """Items waiting per model, summed over the replicas that are up."""
        total: dict[str, int] = {}
        for report in self._reports:
            if report.up:
                for model, depth in report.queue_depth.items():
                    total[model] = total.get(model, 0) + depth
        return total

    def replicas(self) -> list[ReplicaReport]:
        """The replicas' last reports (those that stopped reporting have ``up`` False)."""
        return list(self._reports)

    # ------------------------------------------------------------------ reports
    async def _refresh(self, max_age_s: float) -> None:
        if time.monotonic() - self._reports_at <= max_age_s:
            return
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._fetch())
        await asyncio.shield(self._refreshing)

    async def _fetch(self) -> None:
        try:
            reports = await asyncio.wait_for(_awaited(self._registry.snapshot.remote()), timeout=5.0)
        except Exception as exc:  # keep the last view; the registry comes back on its own
            logger.debug("could not read the replica registry: %r", exc)
            return
        self._reports = list(reports)
        self._merged = {i.id: i for i in merge_models([r for r in self._reports if r.up])}
        self._reports_at = time.monotonic()

    async def _refresh_loop(self) -> None:
        while True:
            await self._refresh(max_age_s=0.0)
            await asyncio.sleep(self._settings.report_interval_s)


async def _awaited(response: Any) -> Any:
    return await response


def merge_models(reports: Sequence[ReplicaReport]) -> list[ModelInfo]:
    """One :class:`ModelInfo` per model over several replicas: counters summed, the best state, where it is loaded.

    A model loaded on any replica is loaded (device, dtype and memory from one that holds it); otherwise it is
    loading, failed or not loaded, in that order; ``loads``, ``evictions``, ``requests``, ``items`` and
    ``errors`` are summed. Models keep the first replica's order, then each new one in turn.
    """
    merged: dict[str, ModelInfo] = {}
    for report in reports:
        for info in report.models:
            seen = merged.get(info.id)
            if seen is None:
                merged[info.id] = info
                continue
            best = info if _STATE_RANK.get(info.state, 0) > _STATE_RANK.get(seen.state, 0) else seen
            merged[info.id] = replace(
                best,
                loaded=seen.loaded or info.loaded,
                loads=seen.loads + info.loads,
                evictions=seen.evictions + info.evictions,
                requests=seen.requests + info.requests,
                items=seen.items + info.items,
                errors=seen.errors + info.errors,
                last_error=best.last_error or seen.last_error or info.last_error,
            )
    return list(merged.values())
