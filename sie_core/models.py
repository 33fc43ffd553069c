"""Loaded models: resolution and policy, single-flight loading, LRU eviction under limits, idle unloading.

All state here is touched only from the engine's event loop thread, so it needs no locks; blocking work
(finding weights, downloads, loading) runs in a loader thread pool and batches run in the compute thread.

A load runs in three steps. First its files are found and checked (config files parse, weights are all there,
an adapter and its libraries exist), so that a model that cannot load fails before anything is evicted.
Then, when a model limit or memory budget is set, it waits its turn in one first-come-first-served queue: the
load at the head evicts idle models, and when every model in its way is busy it *drains* the least recently
used ones (they finish what they hold, take no new requests, and are evicted once idle; requests arriving for
them queue a reload behind it). Then the weights are read. Requests waiting for a load are handed the model
the moment it is in memory (counted in flight), so it cannot be evicted before they have used it.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .adapters import _INSTALL_HINTS, ADAPTERS, Adapter, load_adapter
from .batching import ModelWorker
from .catalog import Catalog, ModelSpec
from .config import EngineConfig
from .errors import (
    EngineClosedError,
    ModelLoadError,
    ModelLoadingError,
    SieError,
    UnknownModelError,
    WrongTaskError,
)
from .families import Family, encoder_family, family_of
from .file_dims import output_dims_from_files
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
from .timing import model_loaded, model_unloaded

__all__ = ["LoadedModel", "ModelManager"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

BatchRunner = Callable[[Adapter], Callable[[Hashable, list[Any]], Sequence[Any]]]

# Libraries each adapter module imports when it loads a model (checked, never imported, before evicting).
_REQUIRES: dict[str, tuple[str, ...]] = {
    "sie_core.adapters.sentence_transformers": ("torch", "transformers", "sentence_transformers"),
    "sie_core.adapters.cross_encoder": ("torch", "transformers", "sentence_transformers"),
    "sie_core.adapters.gliner": ("torch", "transformers", "gliner"),
    "sie_core.adapters.onnx_encoder": ("onnxruntime", "tokenizers"),
    "sie_core.adapters.onnx_scorer": ("onnxruntime", "tokenizers"),
    "sie_core.adapters.splade": ("torch", "transformers"),
    "sie_core.adapters.colbert": ("torch", "transformers"),
    "sie_core.adapters.bge_m3": ("torch", "transformers"),
    "sie_core.adapters.onnx_splade": ("onnxruntime", "tokenizers"),
    "sie_core.adapters.onnx_colbert": ("onnxruntime", "tokenizers"),
}
_BACKEND_REQUIRES: dict[str, tuple[str, ...]] = {"torch": ("torch",), "onnx": ("onnxruntime", "tokenizers")}
# Metadata files the torch loaders (transformers, sentence-transformers, GLiNER) parse and fail on when broken.
_TORCH_JSON = (
    "config.json",
    "config_sentence_transformers.json",
    "modules.json",
    "sentence_bert_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "gliner_config.json",
)
_SAFETENSORS_MAX_HEADER = 100 * 2**20
_FILE_DIMS_RETRY_S = 30.0


@dataclass
class _Stats:
    state: str = "not_loaded"
    loads: int = 0
    evictions: int = 0
    requests: int = 0
    items: int = 0
    errors: int = 0
    last_error: str | None = None
    last_load_s: float | None = None


class LoadedModel:
    """A model in memory with its batch worker; ``in_flight`` counts requests using it right now.

    ``draining`` is set while a queued load needs its place: it takes no new requests and is evicted once idle.
    """

    def __init__(self, spec: ModelSpec, adapter: Adapter, worker: ModelWorker) -> None:
        self.spec = spec
        self.adapter = adapter
        self.worker = worker
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.draining = False


class _Load:
    """One load in progress (single flight per model) and the requests waiting for it."""

    def __init__(self, key: str, spec: ModelSpec, loop: asyncio.AbstractEventLoop) -> None:
        self.key = key
        self.spec = spec
        self.started = time.monotonic()
        self.done: asyncio.Future[LoadedModel] = loop.create_future()
        # One future per waiting request; each is resolved with the model already counted in flight for it.
        self.tickets: list[asyncio.Future[LoadedModel]] = []
        # Set once admitted under the limits: the load then counts as a model of this many bytes until it is in.
        self.reserved_bytes: int | None = None
        self.drained: list[LoadedModel] = []


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
        self._loading: dict[str, _Load] = {}
        self._identifying: dict[str, asyncio.Future[ModelSpec]] = {}
        self._queue: deque[_Load] = deque()  # loads waiting for room under the limits, first come first served
        self._tasks: set[asyncio.Task[None]] = set()
        self._adhoc: dict[str, ModelSpec] = {}
        self._stats: dict[str, _Stats] = {}
        self._changed = asyncio.Event()
        self._closed = False
        self._reaper: asyncio.Task[None] | None = None
        self.listeners: list[Any] = []
        # Output dims read from local files for models not loaded yet: (spec id, family, path) -> (when, dims).
        self._file_dims: dict[tuple[str, str, str | None], tuple[float, dict[str, int]]] = {}

    def _emit(self, event: str, *args: Any) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, event)(*args)
            except Exception:  # a metrics bug must never break loading or serving
                logger.exception("engine listener failed on %s", event)

    def _notify(self) -> None:
        """Wake everything waiting for a model to be released, unloaded or loaded."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self, timeout: float) -> None:
        changed = self._changed
        try:
            await asyncio.wait_for(changed.wait(), timeout=timeout)
        except asyncio.TimeoutError:
            pass

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        if spec is not None:
            self._require_task(spec, task)
        return spec

    def _require_task(self, spec: ModelSpec, task: str) -> None:
        if task not in family_of(spec).tasks:
            raise WrongTaskError(
                f"model {spec.id!r} is {_a(spec.task)} model and cannot {task}; "
                f"models for {task}: {self.available_summary(task)}"
            )

    def _identify(self, key: str) -> asyncio.Future[ModelSpec]:
        """Find an uncatalogued model's files and task (single flight); nothing is evicted or loaded."""
        pending = self._identifying.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._identifying[key] = pending
            self._spawn(self._run_identify(key, pending), name=f"sie-identify:{key}")
        return pending

    async def _run_identify(self, key: str, done: asyncio.Future[ModelSpec]) -> None:
        stats = self._stats_for(key)
        stats.state = "loading"
        started = time.perf_counter()
        try:
            spec, _ = await self._in_loader(started, key, self._detect, key)
        except BaseException as exc:
            error = self._failed(key, exc, started)
            if not done.done():
                done.set_exception(error)
                done.exception()  # mark retrieved: an identification nobody awaits any more must not warn
            if not isinstance(exc, Exception):
                raise
        else:
            if not done.done():
                done.set_result(spec)
        finally:
            self._identifying.pop(key, None)

    def _failed(self, key: str, exc: BaseException, started: float) -> SieError:
        stats = self._stats_for(key)
        stats.state = "loaded" if key in self._loaded else "failed"
        stats.last_error = str(exc)
        error = exc if isinstance(exc, SieError) else ModelLoadError(f"model {key!r} failed to load: {exc}")
        self._emit("on_load", key, time.perf_counter() - started, error)
        return error

    def _wrong_task(self, key: str, spec: ModelSpec, task: str) -> None:
        """Refuse a detected model that cannot do ``task`` (before anything was evicted for it)."""
        try:
            self._require_task(spec, task)
        except WrongTaskError:
            stats = self._stats_for(key)
            if stats.state == "loading" and key not in self._loading and key not in self._loaded:
                stats.state = "not_loaded"
            raise

    # ---------------------------------------------------------------- acquiring
    async def acquire(self, name: str, task: str) -> LoadedModel:
        """Get a loaded model for ``task`` (loading it if needed) and count the caller as in flight.

        With ``load_wait_s`` set, the whole wait (finding the files, queueing for room, loading) is bounded by
        it; the load itself goes on in the background when the wait runs out.

        Raises:
            UnknownModelError, WrongTaskError, ModelLoadError, EngineClosedError.
            ModelLoadingError: The model was not loaded and handed over within ``load_wait_s``.
        """
        if self._closed:
            raise EngineClosedError("the engine is closed")
        spec = self.check_task(name, task)
        key = spec.id if spec is not None else name
        model = self._loaded.get(key)
        if model is not None and not model.draining:
            model.in_flight += 1
        else:
            wait = self.config.load_wait_s
            deadline = None if wait is None else time.monotonic() + wait
            if spec is None:
                spec = await self._until(self._identify(key), key, deadline)
                self._wrong_task(key, spec, task)
            model = await self._handed(key, spec, deadline)
        if task not in family_of(model.spec).tasks:
            self._unpin(model)
            self._require_task(model.spec, task)
        model.last_used = time.monotonic()
        self._stats_for(model.spec.id).requests += 1
        return model

    async def _until(self, pending: asyncio.Future[T], key: str, deadline: float | None) -> T:
        if deadline is None:
            return await asyncio.shield(pending)
        try:
            return await asyncio.wait_for(asyncio.shield(pending), timeout=max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise self._still_loading(key) from None

    async def _handed(self, key: str, spec: ModelSpec, deadline: float | None) -> LoadedModel:
        """Join (or start) the model's load and wait until it is handed over, already counted in flight."""
        if self._closed:
            raise EngineClosedError("the engine is closed")
        model = self._loaded.get(key)
        if model is not None and not model.draining:
            model.in_flight += 1
            return model
        load = self._start_load(key, spec)
        ticket: asyncio.Future[LoadedModel] = asyncio.get_running_loop().create_future()
        load.tickets.append(ticket)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return await asyncio.wait_for(asyncio.shield(ticket), timeout=timeout)
        except asyncio.TimeoutError:
            if ticket.done() and not ticket.cancelled() and ticket.exception() is None:
                return ticket.result()  # handed over just as the wait ran out
            self._withdraw(load, ticket)
            raise self._still_loading(key) from None
        except BaseException:
            self._withdraw(load, ticket)
            raise

    def _withdraw(self, load: _Load, ticket: asyncio.Future[LoadedModel]) -> None:
        """A waiter leaves: give back the model if it was already handed over, else leave the queue."""
        if ticket in load.tickets:
            load.tickets.remove(ticket)
        if not ticket.done():
            ticket.cancel()
        elif not ticket.cancelled() and ticket.exception() is None:
            self._unpin(ticket.result())

    def _still_loading(self, key: str) -> ModelLoadingError:
        wait = float(self.config.load_wait_s or 0)
        load = self._loading.get(key)
        stats = self._stats.get(key)
        retry = max(1.0, wait)
        if load is not None and stats is not None and stats.last_load_s:
            retry = max(1.0, stats.last_load_s - (time.monotonic() - load.started))
        where = "waits for room under the model limits" if load is not None and load in self._queue else "loads"
        return ModelLoadingError(
            f"model {key!r} is not ready after waiting {wait:g} s (load_wait_s): it still {where}, and the load "
            f"goes on in the background; retry in about {retry:.0f} s, or raise load_wait_s",
            retry_after=round(retry, 1),
        )

    def _unpin(self, model: LoadedModel) -> None:
        model.in_flight -= 1
        model.last_used = time.monotonic()
        self._notify()

    async def release(self, model: LoadedModel, *, items: int = 0, failed: bool = False) -> None:
        """The caller is done with the model."""
        stats = self._stats_for(model.spec.id)
        stats.items += items
        if failed:
            stats.errors += 1
        self._unpin(model)

    # ---------------------------------------------------------------- loading
    async def load(self, key: str, spec: ModelSpec | None = None, *, task: str | None = None) -> LoadedModel:
        """Load a model once, however many callers ask at the same time (single flight).

        Args:
            key: The model's canonical id (or local path / hub id when uncatalogued).
            spec: Its spec when known.
            task: If given, an uncatalogued model that cannot do it is refused before anything is evicted.

        Raises:
            UnknownModelError, WrongTaskError, ModelLoadError, EngineClosedError.
        """
        if self._closed:
            raise EngineClosedError("the engine is closed")
        model = self._loaded.get(key)
        if model is not None and not model.draining:
            return model
        if spec is None:
            spec = self.catalog.get(key) or self._adhoc.get(key)
        if spec is None:
            spec = await asyncio.shield(self._identify(key))
        if task is not None:
            self._wrong_task(key, spec, task)
        model = self._loaded.get(key)
        if model is not None and not model.draining:
            return model
        return await asyncio.shield(self._start_load(key, spec).done)

    def _start_load(self, key: str, spec: ModelSpec) -> _Load:
        load = self._loading.get(key)
        if load is None:
            load = self._loading[key] = _Load(key, spec, asyncio.get_running_loop())
            self._spawn(self._run_load(load), name=f"sie-load:{key}")
        return load

    async def _run_load(self, load: _Load) -> None:
        key = load.key
        stats = self._stats_for(key)
        if key not in self._loaded:
            stats.state = "loading"
        started = time.perf_counter()
        try:
            model, fresh = await self._load(load, started)
        except BaseException as exc:
            error = self._failed(key, exc, started)
            for ticket in load.tickets:
                if not ticket.done():
                    ticket.set_exception(error)
            load.tickets.clear()
            if not load.done.done():
                load.done.set_exception(error)
                load.done.exception()  # mark retrieved: a load nobody awaits any more must not warn
            if not isinstance(exc, Exception):
                raise
        else:
            if fresh:
                seconds = time.perf_counter() - started
                stats.state = "loaded"
                stats.loads += 1
                stats.last_error = None
                stats.last_load_s = seconds
                if model.spec.id != key:
                    self._stats[model.spec.id] = stats
                self._emit("on_load", model.spec.id, seconds, None)
                model_loaded()
            if not load.done.done():
                load.done.set_result(model)
        finally:
            load.reserved_bytes = None
            if self._loading.get(key) is load:
                del self._loading[key]
            self._notify()

    def _hand_over(self, load: _Load, model: LoadedModel) -> None:
        """Give the model to every request waiting for it, counted in flight so nothing evicts it first."""
        tickets, load.tickets = load.tickets, []
        for ticket in tickets:
            if not ticket.done():
                model.in_flight += 1
                ticket.set_result(model)
        model.last_used = time.monotonic()

    def _limited(self) -> bool:
        return self.config.max_loaded_models is not None or self.config.memory_budget_mb is not None

    def _present(self, names: Collection[str]) -> LoadedModel | None:
        return next((self._loaded[n] for n in names if n in self._loaded), None)

    async def _load(self, load: _Load, started: float) -> tuple[LoadedModel, bool]:
        """Check, wait for room, and load; returns the model and whether it was loaded now (not found loaded)."""
        key = load.key
        # Find (and maybe download) the weights and check them first: a download fills the disk, not memory,
        # and a model that cannot load must fail before it evicts anything.
        loaded_spec, source, estimate = await self._in_loader(started, key, self._prepare, load.spec)
        exclude = (key, loaded_spec.id)
        if self._limited():
            budget = self.config.memory_budget_mb
            if budget is not None and estimate > budget * 1024 * 1024:
                raise ModelLoadError(
                    f"model {loaded_spec.id!r} needs about {estimate / 2**20:.0f} MB, more than the whole memory "
                    f"budget of {budget:.0f} MB; raise memory_budget_mb or choose a smaller model"
                )
            await self._admit(load, estimate, exclude, started)
        present = self._present(exclude)
        if present is not None:  # still (or again) loaded: a drain was called off
            present.draining = False
            self._hand_over(load, present)
            return present, False
        if self._closed:
            raise EngineClosedError("the engine was closed while the model waited to load")
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
        load.reserved_bytes = None
        self._hand_over(load, model)
        if self._limited():
            await self._evict_idle(model.adapter.memory_bytes, exclude)  # the real size may exceed the estimate
        return model, True

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

    def _prepare(self, spec: ModelSpec) -> tuple[ModelSpec, ModelSource, int]:
        """Find the files and check everything that can fail before weights are read (loader thread)."""
        family = family_of(spec)
        installed = available_backends()
        runnable = tuple(b for b in installed if b in family.adapters)
        if installed and not runnable:
            raise ModelLoadError(
                f"model {spec.id!r}: the {family.name} family runs on {', '.join(family.adapters)}, and none of "
                f"those backends is installed here (installed: {', '.join(installed)})"
            )
        source = resolve_source(spec, self.config, backends=runnable)
        _check_loadable(spec, source)
        estimate = weights_bytes(source) or int((spec.size_mb or 0) * 2**20)
        return spec, source, estimate

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
        family = encoder_family(source.path) if task == "encode" else None
        spec = probe.with_changes(task=task, family=family, description=f"{task} model detected from {source.origin}")
        self._adhoc[name] = spec
        return spec, source

    # ---------------------------------------------------------------- room under the limits
    async def _admit(self, load: _Load, estimate: int, exclude: Collection[str], started: float) -> None:
        """Wait for this load's turn and for room under the limits, then reserve that room for it."""
        deadline = time.monotonic() + max(0.0, self.config.load_timeout_s - (time.perf_counter() - started))
        self._queue.append(load)
        try:
            while True:
                if self._closed:
                    raise EngineClosedError("the engine was closed while the model waited to load")
                if self._queue[0] is load:
                    if self._present(exclude) is not None or await self._make_room(load, estimate, exclude):
                        load.reserved_bytes = estimate if self._present(exclude) is None else None
                        return
                    if self._closed:
                        continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ModelLoadError(self._full_message(load.key, estimate, exclude))
                await self._wait_change(min(remaining, 1.0))
        finally:
            if load in self._queue:
                self._queue.remove(load)
            for model in load.drained:
                model.draining = False  # evicted already, or no longer needed
            load.drained.clear()
            self._notify()

    def _others(self, exclude: Collection[str]) -> list[LoadedModel]:
        return [m for m in self.loaded() if m.spec.id not in exclude]

    def _over_limits(self, extra_bytes: int, exclude: Collection[str], without: Collection[LoadedModel] = ()) -> bool:
        """Whether one more model of ``extra_bytes`` breaks a limit, counting loads already admitted."""
        others = [m for m in self._others(exclude) if m not in without]
        reserved = [load.reserved_bytes for load in self._loading.values() if load.reserved_bytes is not None]
        limit = self.config.max_loaded_models
        if limit is not None and len(others) + len(reserved) + 1 > limit:
            return True
        budget = self.config.memory_budget_mb
        if budget is not None:
            used = sum(m.adapter.memory_bytes for m in others) + sum(reserved)
            if used + extra_bytes > budget * 1024 * 1024:
                return True
        return False

    async def _make_room(self, load: _Load, estimate: int, exclude: Collection[str]) -> bool:
        """Evict idle models until the load fits; when the rest are busy, drain them. Whether it fits now."""
        while self._over_limits(estimate, exclude):
            others = self._others(exclude)
            idle = sorted((m for m in others if m.in_flight == 0), key=lambda m: m.last_used)
            if idle:
                await self.unload(idle[0].spec.id, reason="to make room")
                continue
            # Every model in the way is busy (or the room is held by loads still running): take the least
            # recently used ones out of service, just enough of them, so they go idle and can be evicted.
            victims: list[LoadedModel] = []
            for model in sorted(others, key=lambda m: m.last_used):
                if not self._over_limits(estimate, exclude, without=victims):
                    break
                victims.append(model)
            for model in victims:
                if not model.draining:
                    model.draining = True
                    load.drained.append(model)
                    logger.info(
                        "draining %s (%d in flight) to make room for %s", model.spec.id, model.in_flight, load.key
                    )
            return False
        return True

    async def _evict_idle(self, extra_bytes: int, exclude: Collection[str]) -> None:
        while self._over_limits(extra_bytes, exclude):
            idle = sorted((m for m in self._others(exclude) if m.in_flight == 0), key=lambda m: m.last_used)
            if not idle:
                logger.warning("model limits exceeded after loading %s; busy models stay loaded", exclude)
                return
            await self.unload(idle[0].spec.id, reason="to make room")

    def _full_message(self, key: str, estimate: int, exclude: Collection[str]) -> str:
        busy = ", ".join(f"{m.spec.id} ({m.in_flight} in flight)" for m in self._others(exclude)) or "none"
        running = ", ".join(k for k, load in self._loading.items() if load.reserved_bytes is not None) or "none"
        limits = []
        if self.config.max_loaded_models is not None:
            limits.append(f"max_loaded_models={self.config.max_loaded_models}")
        if self.config.memory_budget_mb is not None:
            limits.append(f"memory_budget_mb={self.config.memory_budget_mb:g} (this model ~{estimate / 2**20:.0f} MB)")
        return (
            f"model {key!r} cannot load: the model limits ({', '.join(limits)}) stayed full for "
            f"{self.config.load_timeout_s:g} s (load_timeout_s); loaded and busy: {busy}; loads running: {running}. "
            "Raise the limits, or retry when the other models are idle"
        )

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
        stats.state = "loading" if model.spec.id in self._loading else "not_loaded"
        stats.evictions += 1
        logger.info("unloaded %s (%s)", model.spec.id, reason)
        self._emit("on_unload", model.spec.id, reason)
        model_unloaded()
        self._notify()
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
            for model in self.loaded():
                if model.in_flight == 0 and now - model.last_used >= timeout:
                    await self.unload(model.spec.id, reason=f"idle for {timeout:g} s")

    async def close(self) -> None:
        """Unload everything; later calls fail with EngineClosedError."""
        self._closed = True
        self._notify()
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
        return [self.info(s) for s in specs if task is None or task in family_of(s).tasks]

    def info(self, spec: ModelSpec) -> ModelInfo:
        """ModelInfo for one spec."""
        model = self._loaded.get(spec.id)
        stats = self._stats.get(spec.id, _Stats())
        adapter = model.adapter if model is not None else None
        estimate = int(spec.size_mb * 1024 * 1024) if spec.size_mb else None
        return ModelInfo(
            id=spec.id,
            tasks=family_of(spec).tasks,
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
            outputs=family_of(spec).outputs,
            output_dims=self._output_dims(spec, adapter),
            threads=adapter.threads if adapter is not None else None,
        )

    def _output_dims(self, spec: ModelSpec, adapter: Adapter | None) -> dict[str, int]:
        """Dimensions per encode output, before a load too.

        The loaded adapter's; else the catalog's ``dims`` for a one-output family; else what the model's local
        files say (read without loading; never a download).
        """
        report = getattr(adapter, "output_dims", None)
        if callable(report):
            return dict(report())
        dims = getattr(adapter, "dims", None) or spec.dims
        family = family_of(spec)
        outputs = family.outputs
        if spec.task != "encode":
            return {}
        if dims and len(outputs) == 1:
            return {outputs[0]: int(dims)}
        if adapter is not None:
            return {}
        return self._dims_from_files(spec, family)

    def _dims_from_files(self, spec: ModelSpec, family: Family) -> dict[str, int]:
        key = (spec.id, family.name, spec.path)
        now = time.monotonic()
        cached = self._file_dims.get(key)
        # Found dims stay; a miss is looked at again after a while (the weights may have been fetched since).
        if cached is not None and (cached[1] or now - cached[0] < _FILE_DIMS_RETRY_S):
            return dict(cached[1])
        dims: dict[str, int] = {}
        runnable = tuple(b for b in available_backends() if b in family.adapters)
        if runnable:
            try:
                source = resolve_source(spec, self.config, allow_download=False, backends=runnable)
            except (SieError, OSError):
                source = None
            if source is not None:
                dims = output_dims_from_files(family.name, source, spec.options)
        self._file_dims[key] = (now, dims)
        return dict(dims)

    def queue_depth(self) -> dict[str, int]:
        """Items queued per loaded model."""
        return {m.spec.id: m.worker.queued_items for m in self.loaded()}


def _a(task: str) -> str:
    return f"an {task}" if task[0] in "aeiou" else f"a {task}"


def _close_late_adapter(job: asyncio.Future[Any]) -> None:
    if not job.cancelled() and job.exception() is None and isinstance(job.result(), Adapter):
        job.result().close()


def _check_loadable(spec: ModelSpec, source: ModelSource) -> None:
    """Everything that can fail before weights are read: adapter, libraries, metadata files, weight files.

    Runs in the loader thread before anything is evicted; reads only small files and weight-file headers.

    Raises:
        ModelLoadError: What is wrong and how to fix it.
    """
    family = family_of(spec)
    target = family.adapters.get(source.backend)
    if target is None:
        raise ModelLoadError(
            f"model {spec.id!r}: the {family.name} family has no adapter for the {source.backend!r} backend; "
            f"it runs on: {', '.join(family.adapters)}"
        )
    module_name, class_name = target.split(":")
    for package in _REQUIRES.get(module_name, _BACKEND_REQUIRES.get(source.backend, ())):
        try:
            found = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            found = None
        if found is None:
            hint = _INSTALL_HINTS.get(package, "pip install 'sie-agents[all]'")
            raise ModelLoadError(
                f"model {spec.id!r} needs the Python package {package}, which is not installed; run: {hint}"
            )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = (exc.name or module_name).split(".")[0]
        hint = _INSTALL_HINTS.get(missing, "pip install 'sie-agents[all]'")
        raise ModelLoadError(
            f"model {spec.id!r}: its adapter {target} cannot be imported ({exc}); run: {hint}"
        ) from exc
    if not hasattr(module, class_name):
        raise ModelLoadError(f"model {spec.id!r}: its adapter {target} does not exist in this version of sie-agents")
    _check_files(spec, source)


def _check_files(spec: ModelSpec, source: ModelSource) -> None:
    """Metadata files parse, the folders and shards they name exist, and weight files are whole."""
    folder = source.path
    folders = [folder]
    strict = source.backend == "torch"  # the ONNX adapters read metadata leniently; only the tokenizer is required
    names = _TORCH_JSON if strict else ()
    modules: Any = _read_json(spec, folder / "modules.json") if strict and (folder / "modules.json").is_file() else []
    transformer_dirs = []
    for module in modules if isinstance(modules, list) else []:
        path = module.get("path") if isinstance(module, dict) else None
        if not isinstance(path, str):
            continue
        sub = folder / path
        is_transformer = str(module.get("type", "")).endswith(".Transformer")
        if is_transformer:
            transformer_dirs.append(sub)
        if not sub.is_dir():
            if is_transformer:  # modules without files (Normalize) may have no folder at all
                raise ModelLoadError(
                    f"model {spec.id!r}: modules.json names the transformer folder {path!r}, which is missing "
                    f"from {str(folder)!r}; the copy is incomplete: fetch the model again"
                )
            continue
        if path:
            folders.append(sub)
    if strict and spec.task in ("encode", "score"):
        need = transformer_dirs if modules else [folder]
        for sub in need:
            if not (sub / "config.json").is_file():
                raise ModelLoadError(
                    f"model {spec.id!r}: {str(sub)!r} has no config.json, which transformers needs to build the "
                    "model; the copy is incomplete: fetch the model again"
                )
    for sub in folders:
        for name in (*names, "tokenizer.json"):
            if (sub / name).is_file():
                data = _read_json(spec, sub / name)
                if name.endswith("config.json") and not isinstance(data, dict):
                    raise ModelLoadError(
                        f"model {spec.id!r}: {str(sub / name)!r} holds a JSON {type(data).__name__}, "
                        "not an object; the file is corrupt: fetch the model again"
                    )
        if strict:
            for index in sub.glob("*.index.json"):
                _check_shards(spec, index)
    if source.backend == "onnx" and source.onnx_file:
        graph = folder / source.onnx_file
        if graph.is_file() and graph.stat().st_size == 0:
            raise ModelLoadError(f"model {spec.id!r}: the ONNX graph {str(graph)!r} is empty; export or fetch it again")
        return
    for weights in _weight_files(folder):
        _check_weights(spec, weights)


def _read_json(spec: ModelSpec, path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelLoadError(f"model {spec.id!r}: {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ModelLoadError(
            f"model {spec.id!r}: {str(path)!r} is not valid JSON ({exc}); the file is truncated or corrupt: "
            "fetch the model again (or fix the file)"
        ) from None


def _check_shards(spec: ModelSpec, index: Path) -> None:
    data = _read_json(spec, index)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict):
        return
    missing = sorted({str(f) for f in weight_map.values() if not (index.parent / str(f)).is_file()})
    if missing:
        raise ModelLoadError(
            f"model {spec.id!r}: {index.name} names weight shards that are missing: {', '.join(missing[:5])}; "
            "the download is incomplete: fetch the model again"
        )


def _weight_files(folder: Path) -> list[Path]:
    """The torch weight files a load reads (safetensors when there are any), as :func:`weights_bytes` counts."""
    files = [
        p
        for p in folder.rglob("*")
        if p.suffix in (".safetensors", ".bin", ".pt") and not {"onnx", "openvino"} & set(p.relative_to(folder).parts)
    ]
    return [p for p in files if p.suffix == ".safetensors"] or files


def _check_weights(spec: ModelSpec, path: Path) -> None:
    """A weight file is not empty; a safetensors file's header parses and its tensors fit in the file."""
    try:
        size = path.stat().st_size
        if size == 0:
            raise ValueError("the file is empty")
        if path.suffix != ".safetensors":
            return
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise ValueError("the file is shorter than its header")
            length = int.from_bytes(head, "little")
            if length > min(size - 8, _SAFETENSORS_MAX_HEADER):
                raise ValueError("the header is cut off")
            header = json.loads(handle.read(length))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
        if 8 + length + max(ends, default=0) > size:
            raise ValueError(f"the tensors need {8 + length + max(ends)} bytes and the file has {size}")
    except OSError as exc:
        raise ModelLoadError(f"model {spec.id!r}: {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ModelLoadError(
            f"model {spec.id!r}: the weight file {str(path)!r} is truncated or corrupt ({exc}); fetch the model again"
        ) from None
