"""Loaded models: resolution and policy, single-flight loading, LRU eviction under limits, idle unloading.

All state here is touched only from the engine's event loop thread, so it needs no locks; blocking work
(finding weights, downloads, loading) runs in a loader thread pool and batches run in the compute thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .adapters import ADAPTERS, Adapter, load_adapter
from .batching import ModelWorker
from .catalog import Catalog, ModelSpec
from .config import EngineConfig
from .errors import EngineClosedError, ModelLoadError, SieError, UnknownModelError, WrongTaskError
from .results import ModelInfo
from .sources import (
    ModelSource,
    available_backends,
    detect_task,
    is_hub_id,
    is_local_path,
    resolve_source,
    weights_bytes,
)

__all__ = ["LoadedModel", "ModelManager"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

BatchRunner = Callable[[Adapter], Callable[[Hashable, list[Any]], Sequence[Any]]]


@dataclass
class _Stats:
    state: str = "not_loaded"
    loads: int = 0
    evictions: int = 0
    requests: int = 0
    items: int = 0
    errors: int = 0
    last_error: str | None = None


class LoadedModel:
    """A model in memory with its batch worker; ``in_flight`` counts requests using it right now."""

    def __init__(self, spec: ModelSpec, adapter: Adapter, worker: ModelWorker) -> None:
        self.spec = spec
        self.adapter = adapter
        self.worker = worker
        self.in_flight = 0
        self.last_used = time.monotonic()


class ModelManager:
    """Owns every loaded model of one engine.

    Args:
        config: Engine configuration.
        catalog: Known models (built-in plus configured).
        compute_executor: Where batches run (one thread per device).
        load_executor: Where loads run.
        batch_runner: Builds the batch function for an adapter (the engine's task logic).
    """

    def __init__(
        self,
        config: EngineConfig,
        catalog: Catalog,
        compute_executor: Executor,
        load_executor: Executor,
        batch_runner: BatchRunner,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self._compute = compute_executor
        self._load_executor = load_executor
        self._batch_runner = batch_runner
        self._loaded: dict[str, LoadedModel] = {}
        self._loading: dict[str, asyncio.Future[LoadedModel]] = {}
        self._adhoc: dict[str, ModelSpec] = {}
        self._stats: dict[str, _Stats] = {}
        self._released = asyncio.Condition()
        self._closed = False
        self._reaper: asyncio.Task[None] | None = None
        self.listeners: list[Any] = []

    def _emit(self, event: str, *args: Any) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, event)(*args)
            except Exception:  # a metrics bug must never break loading or serving
                logger.exception("engine listener failed on %s", event)

    # ---------------------------------------------------------------- resolution and policy
    def spec_for(self, name: str) -> ModelSpec | None:
        """The catalog (or previously detected) spec for a name, or None when unknown so far.

        Raises:
            UnknownModelError: The name is not allowed by this engine's model policy.
        """
        spec = self.catalog.get(name)
        if spec is not None:
            return spec
        if name in self._adhoc:
            return self._adhoc[name]
        if is_local_path(name):
            if not self.config.allow_local_paths:
                raise UnknownModelError(
                    f"model {name!r} is a local path, and this server does not load arbitrary paths; "
                    f"use a configured model: {self.available_summary()}"
                )
            return None
        if not is_hub_id(name):
            raise UnknownModelError(
                f"model {name!r} is not a valid model id (expected 'org/name'); available: {self.available_summary()}"
            )
        if not self.config.allow_any_model:
            raise UnknownModelError(
                f"model {name!r} is not served here; available: {self.available_summary()}. "
                "An operator can add it to the config or allow any hub model (--allow-any-model)"
            )
        return None

    def available_summary(self, task: str | None = None) -> str:
        """A short list of model ids, for error messages."""
        specs = [s for s in self.catalog if task is None or s.task == task]
        return ", ".join(f"{s.id} ({s.task})" for s in specs) or "none"

    def check_task(self, name: str, task: str) -> ModelSpec | None:
        """Fail fast when a known model cannot do ``task``; returns the spec when known."""
        spec = self.spec_for(name)
        if spec is not None and spec.task != task:
            raise WrongTaskError(
                f"model {spec.id!r} is {_a(spec.task)} model and cannot {task}; "
                f"models for {task}: {self.available_summary(task)}"
            )
        return spec

    # ---------------------------------------------------------------- acquiring
    async def acquire(self, name: str, task: str) -> LoadedModel:
        """Get a loaded model for ``task`` (loading it if needed) and count the caller as in flight.

        Raises:
            UnknownModelError, WrongTaskError, ModelLoadError, EngineClosedError.
        """
        if self._closed:
            raise EngineClosedError("the engine is closed")
        spec = self.check_task(name, task)
        key = spec.id if spec is not None else name
        model = self._loaded.get(key)
        if model is None:
            model = await self.load(key, spec)
        if model.spec.task != task:
            raise WrongTaskError(
                f"model {model.spec.id!r} is {_a(model.spec.task)} model and cannot {task}; "
                f"models for {task}: {self.available_summary(task)}"
            )
        model.in_flight += 1
        model.last_used = time.monotonic()
        stats = self._stats_for(model.spec.id)
        stats.requests += 1
        return model

    async def release(self, model: LoadedModel, *, items: int = 0, failed: bool = False) -> None:
        """The caller is done with the model."""
        model.in_flight -= 1
        model.last_used = time.monotonic()
        stats = self._stats_for(model.spec.id)
        stats.items += items
        if failed:
            stats.errors += 1
        async with self._released:
            self._released.notify_all()

    # ---------------------------------------------------------------- loading
    async def load(self, key: str, spec: ModelSpec | None = None) -> LoadedModel:
        """Load a model once, however many callers ask at the same time (single flight)."""
        if key in self._loaded:
            return self._loaded[key]
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._loading[key] = pending
            asyncio.get_running_loop().create_task(self._load_into(key, spec, pending), name=f"sie-load:{key}")
        return await asyncio.shield(pending)

    async def _load_into(self, key: str, spec: ModelSpec | None, done: asyncio.Future[LoadedModel]) -> None:
        stats = self._stats_for(key)
        stats.state = "loading"
        started = time.perf_counter()
        try:
            model = await self._load(key, spec)
        except BaseException as exc:
            stats.state = "failed"
            stats.last_error = str(exc)
            error = exc if isinstance(exc, SieError) else ModelLoadError(f"model {key!r} failed to load: {exc}")
            self._emit("on_load", key, time.perf_counter() - started, error)
            if not done.done():
                done.set_exception(error)
                done.exception()  # mark retrieved: a load nobody awaits any more must not warn
            if not isinstance(exc, Exception):
                raise
        else:
            stats.state = "loaded"
            stats.loads += 1
            stats.last_error = None
            if model.spec.id != key:
                self._stats[model.spec.id] = stats
            self._emit("on_load", model.spec.id, time.perf_counter() - started, None)
            if not done.done():
                done.set_result(model)
        finally:
            self._loading.pop(key, None)

    async def _load(self, key: str, spec: ModelSpec | None) -> LoadedModel:
        started = time.perf_counter()
        # Find (and maybe download) the weights first: a download fills the disk, not memory.
        loaded_spec, source = await self._in_loader(started, key, self._resolve_blocking, key, spec)
        exclude = (key, loaded_spec.id)
        estimate = weights_bytes(source) or int((loaded_spec.size_mb or 0) * 2**20)
        await self._make_room(estimate, exclude=exclude, name=loaded_spec.id)
        adapter = await self._in_loader(started, key, load_adapter, loaded_spec, source, self.config)
        if self._closed:
            adapter.close()
            raise EngineClosedError("the engine was closed while the model loaded")
        logger.info(
            "loaded %s (%s, %s on %s, %.1f MB) from %s in %.2f s",
            loaded_spec.id,
            adapter.name,
            adapter.dtype,
            adapter.device,
            adapter.memory_bytes / 2**20,
            adapter.source.origin,
            time.perf_counter() - started,
        )
        worker = ModelWorker(
            loaded_spec.id,
            self._batch_runner(adapter),
            self._compute,
            max_batch_size=self.config.max_batch_size,
            max_batch_tokens=min(self.config.max_batch_tokens, adapter.batch_tokens or self.config.max_batch_tokens),
            max_queue_items=self.config.max_queue_items,
            max_batch_wait_s=self.config.max_batch_wait_ms / 1000.0,
            fixed_cost=adapter.group_fixed_cost,
            on_batch=lambda size, seconds: self._emit("on_batch", loaded_spec.id, loaded_spec.task, size, seconds),
        )
        worker.start()
        model = LoadedModel(loaded_spec, adapter, worker)
        self._loaded[loaded_spec.id] = model
        if key != loaded_spec.id:
            self._loaded.setdefault(key, model)
        await self._make_room(0, exclude=exclude, name=loaded_spec.id, wait=False)
        return model

    async def _in_loader(self, started: float, key: str, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking load work in the loader pool, within what is left of ``load_timeout_s``."""
        job = asyncio.get_running_loop().run_in_executor(self._load_executor, fn, *args)
        remaining = max(0.001, self.config.load_timeout_s - (time.perf_counter() - started))
        try:
            return await asyncio.wait_for(asyncio.shield(job), timeout=remaining)
        except asyncio.TimeoutError:
            job.add_done_callback(_close_late_adapter)
            raise ModelLoadError(
                f"model {key!r} took longer than {self.config.load_timeout_s:.0f} s to load (download included); "
                f"pre-fetch it with `sie-agents pull {key}` or raise load_timeout_s"
            ) from None

    def _resolve_blocking(self, key: str, spec: ModelSpec | None) -> tuple[ModelSpec, ModelSource]:
        if spec is None:
            return self._detect(key)
        runnable = tuple(b for b in available_backends() if (spec.task, b) in ADAPTERS)
        return spec, resolve_source(spec, self.config, backends=runnable)

    def _detect(self, name: str) -> tuple[ModelSpec, ModelSource]:
        """Find an uncatalogued model's files and tell its task from them."""
        if is_local_path(name):
            folder = Path(name).expanduser()
            if not folder.is_dir():
                raise UnknownModelError(f"model {name!r} is not a folder on this machine")
            probe = ModelSpec(id=name, task="encode", path=str(folder))
        else:
            probe = ModelSpec(id=name, task="encode")
        runnable = tuple(b for b in available_backends() if any(key[1] == b for key in ADAPTERS))
        source = resolve_source(probe, self.config, backends=runnable)
        try:
            task = detect_task(source.path)
        except UnknownModelError:
            if source.backend != "onnx" or source.onnx_file is None:
                raise
            # An ONNX folder without config.json (e.g. a bare reranker export): ask the graph itself.
            from .adapters._onnx import graph_task

            found = graph_task(source.path / source.onnx_file)
            if found is None:
                raise
            task = found
        spec = probe.with_changes(task=task, description=f"{task} model detected from {source.origin}")
        self._adhoc[name] = spec
        return spec, source

    # ---------------------------------------------------------------- eviction
    def _over_limits(self, extra_bytes: int, exclude: Collection[str]) -> bool:
        others = {m.spec.id: m for m in self._loaded.values() if m.spec.id not in exclude}
        loading = [k for k in self._loading if k not in exclude and k not in others]
        limit = self.config.max_loaded_models
        if limit is not None and len(others) + len(loading) + 1 > limit:
            return True
        budget = self.config.memory_budget_mb
        if budget is not None:
            used = sum(m.adapter.memory_bytes for m in others.values())
            if used + extra_bytes > budget * 1024 * 1024:
                return True
        return False

    async def _make_room(self, extra_bytes: int, *, exclude: Collection[str], name: str, wait: bool = True) -> None:
        budget = self.config.memory_budget_mb
        if budget is not None and extra_bytes > budget * 1024 * 1024:
            raise ModelLoadError(
                f"model {name!r} needs about {extra_bytes / 2**20:.0f} MB, more than the whole memory budget "
                f"of {budget:.0f} MB; raise memory_budget_mb or choose a smaller model"
            )
        deadline = time.monotonic() + self.config.load_timeout_s
        while self._over_limits(extra_bytes, exclude):
            victims = sorted(
                {m.spec.id: m for m in self._loaded.values() if m.spec.id not in exclude and m.in_flight == 0}.values(),
                key=lambda m: m.last_used,
            )
            if victims:
                await self.unload(victims[0].spec.id, reason="to make room")
                continue
            busy = [m for m in self._loaded.values() if m.spec.id not in exclude]
            loading = [k for k in self._loading if k not in exclude]
            if not wait or (not busy and not loading):
                return  # nothing can be evicted: the new model alone is within limits
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ModelLoadError(
                    f"model {name!r} cannot load: the model limits are full and every loaded model is busy"
                )
            async with self._released:
                try:
                    await asyncio.wait_for(self._released.wait(), timeout=min(remaining, 1.0))
                except asyncio.TimeoutError:
                    pass

    async def unload(self, name: str, *, reason: str = "on request") -> bool:
        """Unload a model if it is loaded; returns whether it was."""
        spec = self.catalog.get(name)
        key = spec.id if spec is not None else name
        model = self._loaded.get(key)
        if model is None:
            return False
        for k in [k for k, m in self._loaded.items() if m is model]:
            del self._loaded[k]
        await model.worker.stop()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._compute, model.adapter.close)
        stats = self._stats_for(model.spec.id)
        stats.state = "not_loaded"
        stats.evictions += 1
        logger.info("unloaded %s (%s)", model.spec.id, reason)
        self._emit("on_unload", model.spec.id, reason)
        async with self._released:
            self._released.notify_all()
        return True

    def start_idle_reaper(self) -> None:
        """Unload models idle for longer than ``idle_timeout_s`` (checked periodically)."""
        if self.config.idle_timeout_s is None or self._reaper is not None:
            return
        self._reaper = asyncio.get_running_loop().create_task(self._reap_idle(), name="sie-idle-reaper")

    async def _reap_idle(self) -> None:
        timeout = float(self.config.idle_timeout_s or 0)
        interval = max(0.05, min(timeout / 4, 30.0))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for model in list({m.spec.id: m for m in self._loaded.values()}.values()):
                if model.in_flight == 0 and now - model.last_used >= timeout:
                    await self.unload(model.spec.id, reason=f"idle for {timeout:g} s")

    async def close(self) -> None:
        """Unload everything; later calls fail with EngineClosedError."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for key in list({m.spec.id for m in self._loaded.values()}):
            await self.unload(key, reason="engine closed")

    # ---------------------------------------------------------------- introspection
    def _stats_for(self, key: str) -> _Stats:
        stats = self._stats.get(key)
        if stats is None:
            stats = self._stats[key] = _Stats()
        return stats

    def state(self, key: str) -> str:
        """``not_loaded``, ``loading``, ``loaded`` or ``failed`` for a canonical model id."""
        if key in self._loaded:
            return "loaded"
        stats = self._stats.get(key)
        return stats.state if stats is not None else "not_loaded"

    def loaded(self) -> list[LoadedModel]:
        """Loaded models, each once."""
        return list({m.spec.id: m for m in self._loaded.values()}.values())

    def infos(self, task: str | None = None) -> list[ModelInfo]:
        """ModelInfo for every catalog model plus any other model this engine has seen."""
        specs = list(self.catalog) + [s for k, s in self._adhoc.items() if k not in self.catalog]
        seen = {s.id for s in specs}
        specs += [m.spec for m in self.loaded() if m.spec.id not in seen]
        return [self.info(s) for s in specs if task is None or s.task == task]

    def info(self, spec: ModelSpec) -> ModelInfo:
        """ModelInfo for one spec."""
        model = self._loaded.get(spec.id)
        stats = self._stats.get(spec.id, _Stats())
        adapter = model.adapter if model is not None else None
        estimate = int(spec.size_mb * 1024 * 1024) if spec.size_mb else None
        return ModelInfo(
            id=spec.id,
            tasks=(spec.task,),
            description=spec.description,
            adapter=adapter.name if adapter is not None else "",
            backend=adapter.backend if adapter is not None else (spec.backend or self.config.backend or "torch"),
            loaded=model is not None,
            state="loaded" if model is not None else stats.state,
            device=adapter.device if adapter is not None else None,
            dtype=adapter.dtype if adapter is not None else None,
            memory_bytes=adapter.memory_bytes if adapter is not None else estimate,
            dims=getattr(adapter, "dims", None) or spec.dims,
            max_length=adapter.max_length if adapter is not None else spec.max_length,
            loads=stats.loads,
            evictions=stats.evictions,
            requests=stats.requests,
            items=stats.items,
            errors=stats.errors,
            last_error=stats.last_error,
            source=adapter.source.origin if adapter is not None else (spec.path or spec.repo_id),
            aliases=spec.aliases,
        )

    def queue_depth(self) -> dict[str, int]:
        """Items queued per loaded model."""
        return {m.spec.id: m.worker.queued_items for m in self.loaded()}


def _a(task: str) -> str:
    return f"an {task}" if task[0] in "aeiou" else f"a {task}"


def _close_late_adapter(job: asyncio.Future[Any]) -> None:
    if not job.cancelled() and job.exception() is None and isinstance(job.result(), Adapter):
        job.result().close()
