"""The Engine: encode, score and extract with any model, named per call.

The engine runs its own event loop in a background thread. Sync methods hand work to that loop and wait,
so they work from plain scripts, from threads, and even from inside someone else's event loop; async
methods await it from any loop. All callers, sync and async, from any thread or loop, feed the same
per-model queues, so their requests share batches.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

import numpy as np

from .adapters import Adapter, EncoderAdapter, ExtractorAdapter, ScorerAdapter
from .catalog import Catalog
from .config import EngineConfig
from .errors import EngineClosedError, InvalidInputError, SieError
from .models import LoadedModel, ModelManager
from .results import EncodeResult, Entity, ExtractResult, ModelInfo, ScoreEntry, ScoreResult
from .types import TASKS, ItemLike
from .validation import (
    check_dims,
    check_labels,
    check_output_dtype,
    check_threshold,
    check_top_k,
    normalize_items,
    normalize_query,
)
from .vectors import finish_vectors
from .windows import merge_entities, plan_windows

if TYPE_CHECKING:
    from .remote import RemoteBackend

__all__ = ["Engine", "EngineListener"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


class EngineListener(Protocol):
    """Receives engine events (for metrics). Methods are called on the engine's loop thread; keep them quick."""

    def on_request(self, model: str, task: str, seconds: float, items: int, error: SieError | None) -> None:
        """A call finished (``error`` is None on success)."""

    def on_batch(self, model: str, task: str, size: int, seconds: float) -> None:
        """A forward pass of ``size`` items finished."""

    def on_load(self, model: str, seconds: float, error: SieError | None) -> None:
        """A model load finished."""

    def on_unload(self, model: str, reason: str) -> None:
        """A model was unloaded."""


class Engine:
    """One engine for many models; the model id is an argument of every call.

    Nothing heavy is imported or loaded at construction: each model loads on first use, on the best device
    (CUDA, then Apple MPS, then CPU unless configured), and stays loaded until evicted by the configured
    limits, unloaded, or the engine is closed.

    With ``base_url`` (``Engine(base_url="http://host:8080", api_key=...)``) nothing runs in this process:
    every call goes to that SIE-compatible server (``sie-agents serve`` or an SIE cluster), with the same
    methods, errors and result types, so many agents share one set of loaded models.

    Args:
        config: Engine configuration; defaults to :class:`EngineConfig` defaults.
        **overrides: Any :class:`EngineConfig` field, to override ``config`` (e.g. ``device="cpu"``,
            ``base_url="http://localhost:8080"``, ``api_key="..."``).

    Example:
        >>> with Engine() as engine:  # doctest: +SKIP
        ...     engine.encode("sentence-transformers/all-MiniLM-L6-v2", "Berlin office revenue").dense.shape
        (384,)
    """

    def __init__(self, config: EngineConfig | None = None, **overrides: Any) -> None:
        base = config or EngineConfig()
        self.config: EngineConfig = base.replace(**overrides) if overrides else base
        self.catalog: Catalog = Catalog.builtin().with_additions(self.config.models)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._manager: ModelManager | None = None
        self._compute: ThreadPoolExecutor | None = None
        self._loader: ThreadPoolExecutor | None = None
        self._closed = False
        self._listeners: list[EngineListener] = []
        self._remote: RemoteBackend | None = None

    # ------------------------------------------------------------------ lifecycle
    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise EngineClosedError("the engine is closed; create a new Engine")
            if self._loop is not None:
                return self._loop
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            if self.config.base_url is not None:
                from .remote import RemoteBackend

                self._remote = RemoteBackend(self.config, self._listeners)
            else:
                self._compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sie-compute")
                self._loader = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sie-load")
                self._manager = ModelManager(self.config, self.catalog, self._compute, self._loader, self._batch_runner)
                self._manager.listeners = self._listeners
            self._thread = threading.Thread(target=run, name="sie-engine", daemon=True)
            self._thread.start()
            ready.wait()
            if self._manager is not None:
                loop.call_soon_threadsafe(self._manager.start_idle_reaper)
            self._loop = loop
            return loop

    def _sync(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        loop = self._start()
        if threading.current_thread() is self._thread:
            raise RuntimeError("sync Engine methods cannot be called from the engine's own loop; await the a* twins")
        future = asyncio.run_coroutine_threadsafe(fn(*args), loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    async def _async(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        loop = self._start()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - always called from a coroutine
            running = None
        if running is loop:
            return await fn(*args)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(fn(*args), loop))

    def close(self) -> None:
        """Unload every model and stop the engine's thread. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread, manager = self._loop, self._thread, self._manager
        if loop is None or thread is None:
            return
        if threading.current_thread() is thread:
            raise RuntimeError("Engine.close() cannot run on the engine's own loop; use await aclose()")
        closing = manager.close() if manager is not None else self._remote.aclose() if self._remote else None
        try:
            if closing is not None:
                asyncio.run_coroutine_threadsafe(closing, loop).result(timeout=60)
        except Exception as exc:  # closing must not raise for a model that failed to unload cleanly
            logger.warning("error while closing the engine: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if self._compute is not None:
            self._compute.shutdown(wait=False, cancel_futures=True)
        if self._loader is not None:
            self._loader.shutdown(wait=False, cancel_futures=True)
        if not thread.is_alive():
            loop.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close` (runs the blocking part in a thread)."""
        await asyncio.to_thread(self.close)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def add_listener(self, listener: EngineListener) -> None:
        """Register a listener for request, batch, load and unload events (e.g. Prometheus metrics)."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------ models
    def default_model(self, task: str) -> str:
        """The model used for ``task`` when a call names none."""
        if task not in TASKS:
            raise InvalidInputError(f"task {task!r} is not known; use one of {', '.join(TASKS)}")
        return self.config.default_models[task]

    def _model_name(self, model: str | None, task: str) -> str:
        if model is None:
            return self.default_model(task)
        if not isinstance(model, str) or not model.strip():
            raise InvalidInputError(f"model must be a non-empty model id string, got {model!r}")
        return model.strip()

    def list_models(self, task: str | None = None) -> list[ModelInfo]:
        """The catalog and every other model this engine has seen, with load state and counters.

        Args:
            task: Only models for this task (encode, score or extract).
        """
        if task is not None and task not in TASKS:
            raise InvalidInputError(f"task {task!r} is not known; use one of {', '.join(TASKS)}")
        return self._sync(self._list_models, task)

    async def alist_models(self, task: str | None = None) -> list[ModelInfo]:
        """Async twin of :meth:`list_models`."""
        if task is not None and task not in TASKS:
            raise InvalidInputError(f"task {task!r} is not known; use one of {', '.join(TASKS)}")
        return await self._async(self._list_models, task)

    async def _list_models(self, task: str | None) -> list[ModelInfo]:
        if self._remote is not None:
            return await self._remote.list_models(task)
        assert self._manager is not None
        return self._manager.infos(task)

    def load(self, model: str, task: str | None = None) -> ModelInfo:
        """Load a model now (for example at start-up), instead of on its first call.

        Args:
            model: Model id.
            task: If given, fail unless the model does this task.

        Raises:
            UnknownModelError, WrongTaskError, ModelLoadError.
        """
        return self._sync(self._load, self._model_name(model, task or "encode"), task)

    async def aload(self, model: str, task: str | None = None) -> ModelInfo:
        """Async twin of :meth:`load`."""
        return await self._async(self._load, self._model_name(model, task or "encode"), task)

    async def _load(self, model: str, task: str | None) -> ModelInfo:
        if self._remote is not None:
            return await self._remote.load(model, task)
        manager = self._manager
        assert manager is not None
        spec = manager.check_task(model, task) if task else manager.spec_for(model)
        loaded = await manager.load(spec.id if spec else model, spec)
        if task is not None:
            await manager.release(await manager.acquire(loaded.spec.id, task))
        return manager.info(loaded.spec)

    def unload(self, model: str) -> bool:
        """Unload a model now; returns whether it was loaded (always False for a remote engine)."""
        return self._sync(self._unload, model)

    async def aunload(self, model: str) -> bool:
        """Async twin of :meth:`unload`."""
        return await self._async(self._unload, model)

    async def _unload(self, model: str) -> bool:
        if self._remote is not None:
            return False  # a remote server manages its own memory
        assert self._manager is not None
        return await self._manager.unload(model)

    def model_state(self, model: str) -> str:
        """``not_loaded``, ``loading``, ``loaded`` or ``failed`` (cheap; for progress reporting).

        For a remote engine: the state the server last reported to this engine (no request is sent).
        """
        if self.config.base_url is not None:
            return self._remote.model_state(model) if self._remote is not None else "not_loaded"
        manager = self._manager
        if manager is None:
            return "not_loaded"
        spec = self.catalog.get(model)
        return manager.state(spec.id if spec is not None else model)

    def queue_depth(self) -> dict[str, int]:
        """Items waiting per loaded model."""
        return self._manager.queue_depth() if self._manager is not None else {}

    # ------------------------------------------------------------------ batch functions (compute thread)
    def _batch_runner(self, adapter: Adapter) -> Callable[[Hashable, list[Any]], Sequence[Any]]:
        if isinstance(adapter, EncoderAdapter):

            def run_encode(group: Hashable, texts: list[Any]) -> Sequence[Any]:
                vectors, tokens = adapter.encode(texts, group[1])  # type: ignore[index]
                return list(zip(vectors, tokens))

            return run_encode
        if isinstance(adapter, ScorerAdapter):

            def run_score(group: Hashable, pairs: list[Any]) -> Sequence[Any]:
                return adapter.score(pairs).tolist()

            return run_score
        if isinstance(adapter, ExtractorAdapter):

            def run_extract(group: Hashable, texts: list[Any]) -> Sequence[Any]:
                options: tuple[Any, ...] = group  # type: ignore[assignment]
                _, labels, threshold, flat_ner, multi_label = options
                return adapter.extract(texts, list(labels), threshold, flat_ner, multi_label)

            return run_extract
        raise TypeError(f"no batch function for adapter {type(adapter).__name__}")

    async def _serve(self, name: str, task: str, items: int, work: Callable[[LoadedModel], Awaitable[T]]) -> T:
        manager = self._manager
        assert manager is not None
        started = time.perf_counter()
        error: SieError | None = None
        model: LoadedModel | None = None
        try:
            model = await manager.acquire(name, task)
            return await work(model)
        except SieError as exc:
            error = exc
            raise
        finally:
            if model is not None:
                await manager.release(model, items=items, failed=error is not None)
            seconds = time.perf_counter() - started
            for listener in self._listeners:
                try:
                    listener.on_request(model.spec.id if model else name, task, seconds, items, error)
                except Exception:  # a metrics bug must never fail a request
                    logger.exception("engine listener failed")

    # ------------------------------------------------------------------ encode
    @overload
    def encode(  # type: ignore[overload-overlap]
        self,
        model: str | None,
        items: ItemLike,
        *,
        instruction: str | None = ...,
        is_query: bool = ...,
        normalize: bool | None = ...,
        output_dtype: str = ...,
        dims: int | None = ...,
    ) -> EncodeResult: ...
    @overload
    def encode(
        self,
        model: str | None,
        items: Sequence[ItemLike],
        *,
        instruction: str | None = ...,
        is_query: bool = ...,
        normalize: bool | None = ...,
        output_dtype: str = ...,
        dims: int | None = ...,
    ) -> list[EncodeResult]: ...
    def encode(
        self,
        model: str | None,
        items: ItemLike | Sequence[ItemLike],
        *,
        instruction: str | None = None,
        is_query: bool = False,
        normalize: bool | None = None,
        output_dtype: str = "float32",
        dims: int | None = None,
    ) -> EncodeResult | list[EncodeResult]:
        """Turn texts into dense vectors.

        Args:
            model: Model id (None = the configured default encoder).
            items: One text or Item, or a list of them.
            instruction: Task instruction for instruction-tuned models; replaces the query/document prompt.
            is_query: Use the model's query prompt (e5 ``query: ``, bge's instruction, nomic
                ``search_query: ``) instead of its document prompt.
            normalize: L2-normalize; None = the model's default.
            output_dtype: ``float32``, ``float16``, ``int8`` or ``binary`` (packed bits).
            dims: Keep the first ``dims`` dimensions (Matryoshka), re-normalized; must not exceed the model's.

        Returns:
            One :class:`EncodeResult` for one item, else a list in input order.

        Raises:
            InvalidInputError, UnknownModelError, WrongTaskError, ModelLoadError, OverloadedError.
        """
        args = self._encode_args(model, items, instruction, is_query, normalize, output_dtype, dims)
        return self._sync(self._encode, *args)

    @overload
    async def aencode(  # type: ignore[overload-overlap]
        self,
        model: str | None,
        items: ItemLike,
        *,
        instruction: str | None = ...,
        is_query: bool = ...,
        normalize: bool | None = ...,
        output_dtype: str = ...,
        dims: int | None = ...,
    ) -> EncodeResult: ...
    @overload
    async def aencode(
        self,
        model: str | None,
        items: Sequence[ItemLike],
        *,
        instruction: str | None = ...,
        is_query: bool = ...,
        normalize: bool | None = ...,
        output_dtype: str = ...,
        dims: int | None = ...,
    ) -> list[EncodeResult]: ...
    async def aencode(
        self,
        model: str | None,
        items: ItemLike | Sequence[ItemLike],
        *,
        instruction: str | None = None,
        is_query: bool = False,
        normalize: bool | None = None,
        output_dtype: str = "float32",
        dims: int | None = None,
    ) -> EncodeResult | list[EncodeResult]:
        """Async twin of :meth:`encode`; safe to call from many tasks at once."""
        args = self._encode_args(model, items, instruction, is_query, normalize, output_dtype, dims)
        return await self._async(self._encode, *args)

    def _encode_args(
        self,
        model: str | None,
        items: Any,
        instruction: Any,
        is_query: Any,
        normalize: Any,
        output_dtype: Any,
        dims: Any,
    ) -> tuple[Any, ...]:
        name = self._model_name(model, "encode")
        texts, ids, single = normalize_items(items, self.config)
        if instruction is not None and (not isinstance(instruction, str) or not instruction.strip()):
            raise InvalidInputError(f"instruction must be a non-empty string or None, got {instruction!r}")
        if normalize is not None and not isinstance(normalize, bool):
            raise InvalidInputError(f"normalize must be true, false or None, got {normalize!r}")
        spec = self.catalog.get(name)
        dims = check_dims(dims, spec.dims if spec else None, name)
        return (
            name,
            texts,
            ids,
            single,
            instruction,
            bool(is_query),
            normalize,
            check_output_dtype(output_dtype),
            dims,
        )

    async def _encode(
        self,
        name: str,
        texts: list[str],
        ids: list[str | None],
        single: bool,
        instruction: str | None,
        is_query: bool,
        normalize: bool | None,
        output_dtype: str,
        dims: int | None,
    ) -> EncodeResult | list[EncodeResult]:
        if self._remote is not None:
            return await self._remote.encode(
                name, texts, ids, single, instruction, is_query, normalize, output_dtype, dims
            )

        async def work(model: LoadedModel) -> tuple[str, EncoderAdapter, list[tuple[np.ndarray, int]]]:
            adapter = model.adapter
            assert isinstance(adapter, EncoderAdapter)
            check_dims(dims, adapter.dims, model.spec.id)
            prompt = adapter.prompt_for(is_query=is_query, instruction=instruction)
            costs = [adapter.cost(t) for t in texts]
            return model.spec.id, adapter, await model.worker.submit(("encode", prompt), texts, costs)

        model_id, adapter, outputs = await self._serve(name, "encode", len(texts), work)
        raw = np.stack([o[0] for o in outputs])
        do_normalize = normalize if normalize is not None else adapter.normalized
        vectors = finish_vectors(raw, normalize=do_normalize, dims=dims, output_dtype=output_dtype)
        limit = adapter.max_length
        results = [
            EncodeResult(
                model=model_id,
                dense=vectors[i],
                dims=dims or adapter.dims,
                dtype=output_dtype,
                truncated=bool(limit is not None and outputs[i][1] > limit),
                tokens=int(outputs[i][1]),
                id=ids[i],
            )
            for i in range(len(texts))
        ]
        return results[0] if single else results

    # ------------------------------------------------------------------ score
    def score(
        self,
        model: str | None,
        query: ItemLike,
        items: Sequence[ItemLike],
        *,
        top_k: int | None = None,
    ) -> ScoreResult:
        """Rerank items against a query with a cross-encoder.

        Args:
            model: Model id (None = the configured default reranker).
            query: The query text or Item.
            items: The candidates (texts or Items).
            top_k: Return only the best ``top_k``.

        Returns:
            A :class:`ScoreResult` whose ``scores`` are sorted best first.

        Raises:
            InvalidInputError, UnknownModelError, WrongTaskError, ModelLoadError, OverloadedError.
        """
        return self._sync(self._score, *self._score_args(model, query, items, top_k))

    async def ascore(
        self,
        model: str | None,
        query: ItemLike,
        items: Sequence[ItemLike],
        *,
        top_k: int | None = None,
    ) -> ScoreResult:
        """Async twin of :meth:`score`."""
        return await self._async(self._score, *self._score_args(model, query, items, top_k))

    def _score_args(self, model: str | None, query: Any, items: Any, top_k: Any) -> tuple[Any, ...]:
        name = self._model_name(model, "score")
        query_text, query_id = normalize_query(query, self.config)
        if isinstance(items, (str, dict)):
            items = [items]
        texts, ids, _ = normalize_items(items, self.config)
        return name, query_text, query_id, texts, ids, check_top_k(top_k)

    async def _score(
        self,
        name: str,
        query: str,
        query_id: str | None,
        texts: list[str],
        ids: list[str | None],
        top_k: int | None,
    ) -> ScoreResult:
        if self._remote is not None:
            return await self._remote.score(name, query, query_id, texts, ids, top_k)

        async def work(model: LoadedModel) -> tuple[str, list[float]]:
            adapter = model.adapter
            costs = [adapter.cost(query) + adapter.cost(t) for t in texts]
            logits = await model.worker.submit(("score",), [(query, t) for t in texts], costs)
            return model.spec.id, logits

        model_id, logits = await self._serve(name, "score", len(texts), work)
        raw = np.asarray(logits, dtype=np.float64)
        relevance = 1.0 / (1.0 + np.exp(-raw))
        order = sorted(range(len(texts)), key=lambda i: (-raw[i], i))
        if top_k is not None:
            order = order[:top_k]
        entries = [
            ScoreEntry(
                index=i,
                score=float(raw[i]),
                relevance=float(relevance[i]),
                rank=rank,
                item_id=ids[i] or str(i),
            )
            for rank, i in enumerate(order)
        ]
        return ScoreResult(model=model_id, scores=entries, query_id=query_id)

    # ------------------------------------------------------------------ extract
    @overload
    def extract(  # type: ignore[overload-overlap]
        self,
        model: str | None,
        items: ItemLike,
        *,
        labels: Sequence[str],
        threshold: float = ...,
        flat_ner: bool = ...,
        multi_label: bool = ...,
    ) -> ExtractResult: ...
    @overload
    def extract(
        self,
        model: str | None,
        items: Sequence[ItemLike],
        *,
        labels: Sequence[str],
        threshold: float = ...,
        flat_ner: bool = ...,
        multi_label: bool = ...,
    ) -> list[ExtractResult]: ...
    def extract(
        self,
        model: str | None,
        items: ItemLike | Sequence[ItemLike],
        *,
        labels: Sequence[str],
        threshold: float = 0.5,
        flat_ner: bool = True,
        multi_label: bool = False,
    ) -> ExtractResult | list[ExtractResult]:
        """Find spans of the given labels (zero-shot, GLiNER-style).

        Texts longer than the model's window are split into overlapping windows and the entities merged,
        so nothing is silently cut; offsets always point into the original text.

        Args:
            model: Model id (None = the configured default extractor).
            items: One text or Item, or a list of them.
            labels: Entity types to find, e.g. ``["person", "organization", "date"]``.
            threshold: Minimum confidence, 0..1.
            flat_ner: No overlapping entities (True) or allow nested ones.
            multi_label: Allow one span to carry several labels.

        Returns:
            One :class:`ExtractResult` for one item, else a list in input order.

        Raises:
            InvalidInputError, UnknownModelError, WrongTaskError, ModelLoadError, OverloadedError.
        """
        return self._sync(self._extract, *self._extract_args(model, items, labels, threshold, flat_ner, multi_label))

    @overload
    async def aextract(  # type: ignore[overload-overlap]
        self,
        model: str | None,
        items: ItemLike,
        *,
        labels: Sequence[str],
        threshold: float = ...,
        flat_ner: bool = ...,
        multi_label: bool = ...,
    ) -> ExtractResult: ...
    @overload
    async def aextract(
        self,
        model: str | None,
        items: Sequence[ItemLike],
        *,
        labels: Sequence[str],
        threshold: float = ...,
        flat_ner: bool = ...,
        multi_label: bool = ...,
    ) -> list[ExtractResult]: ...
    async def aextract(
        self,
        model: str | None,
        items: ItemLike | Sequence[ItemLike],
        *,
        labels: Sequence[str],
        threshold: float = 0.5,
        flat_ner: bool = True,
        multi_label: bool = False,
    ) -> ExtractResult | list[ExtractResult]:
        """Async twin of :meth:`extract`."""
        args = self._extract_args(model, items, labels, threshold, flat_ner, multi_label)
        return await self._async(self._extract, *args)

    def _extract_args(
        self, model: str | None, items: Any, labels: Any, threshold: Any, flat_ner: Any, multi_label: Any
    ) -> tuple[Any, ...]:
        name = self._model_name(model, "extract")
        texts, ids, single = normalize_items(items, self.config)
        return (
            name,
            texts,
            ids,
            single,
            tuple(check_labels(labels, self.config)),
            check_threshold(threshold),
            bool(flat_ner),
            bool(multi_label),
        )

    async def _extract(
        self,
        name: str,
        texts: list[str],
        ids: list[str | None],
        single: bool,
        labels: tuple[str, ...],
        threshold: float,
        flat_ner: bool,
        multi_label: bool,
    ) -> ExtractResult | list[ExtractResult]:
        if self._remote is not None:
            return await self._remote.extract(name, texts, ids, single, labels, threshold, flat_ner, multi_label)

        async def work(model: LoadedModel) -> tuple[str, list[Any], list[list[dict[str, Any]]]]:
            adapter = model.adapter
            assert isinstance(adapter, ExtractorAdapter)
            window = int(adapter.max_length or 384)
            overlap = model.spec.window_overlap or max(8, window // 8)
            plans = [plan_windows(t, adapter.word_spans(t), window, overlap) for t in texts]
            payloads = [t[w.start : w.end] for t, plan in zip(texts, plans) for w in plan]
            group = ("extract", labels, threshold, flat_ner, multi_label)
            found = await model.worker.submit(group, payloads, [adapter.cost(p) for p in payloads])
            return model.spec.id, plans, found

        model_id, plans, found = await self._serve(name, "extract", len(texts), work)
        results = []
        offset = 0
        for text, item_id, plan in zip(texts, ids, plans):
            merged = merge_entities(text, plan, found[offset : offset + len(plan)], flat_ner=flat_ner)
            offset += len(plan)
            entities = [Entity(**e) for e in merged]
            results.append(ExtractResult(model=model_id, entities=entities, windows=len(plan), id=item_id))
        return results[0] if single else results
