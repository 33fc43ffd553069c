"""The Engine: encode, score and extract with any model, named per call.

The engine is a facade over one backend (:mod:`sie_core.local`: models in this process; :mod:`sie_core.remote`:
an SIE-compatible server). Each call's arguments become a typed request (:mod:`sie_core.requests`), checked
once against the configured limits, and are handed to the backend on the engine's own event loop, which runs
in a background thread. Sync methods hand work to that loop and wait, so they work from plain scripts, from
threads, and even from inside someone else's event loop; async methods await it from any loop. All callers
feed the same per-model queues, so their requests share batches.
"""

from __future__ import annotations

import asyncio
import logging
import reprlib
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar, overload

from typing_extensions import Unpack

from .backend import Backend, BackendFactory, EngineListener
from .catalog import Catalog
from .config import EngineConfig
from .errors import EngineClosedError, InvalidInputError
from .limits import check_limits
from .requests import EncodeKwargs, EncodeRequest, ExtractKwargs, ExtractRequest, ScoreRequest, parse
from .results import EncodeResult, ExtractResult, ModelInfo, ScoreResult
from .types import TASKS, ItemLike

__all__ = ["Engine", "EngineListener"]

logger = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R", EncodeRequest, ScoreRequest, ExtractRequest)
_TASK_OF = {EncodeRequest: "encode", ScoreRequest: "score", ExtractRequest: "extract"}


class Engine:
    """One engine for many models; the model id is an argument of every call.

    Nothing heavy is imported or loaded at construction: each model loads on first use, on the best device (CUDA,
    then Apple MPS, then CPU unless configured), and stays loaded until evicted, unloaded, or the engine is closed.

    With ``base_url`` (``Engine(base_url="http://host:8080", api_key=...)``) every call goes to that SIE-compatible
    server instead, with the same methods, errors and result types, so many agents share one set of loaded models.

    Args:
        config: Engine configuration; defaults to :class:`EngineConfig` defaults.
        backend_factory: Builds the backend instead of the local or remote one (``BackendFactory``).
        **overrides: Any :class:`EngineConfig` field, to override ``config`` (``device="cpu"``, ``backend="onnx"``).

    Example:
        >>> with Engine() as engine:  # doctest: +SKIP
        ...     engine.encode("sentence-transformers/all-MiniLM-L6-v2", "Berlin office revenue").dense.shape
        (384,)
    """

    def __init__(
        self, config: EngineConfig | None = None, *, backend_factory: BackendFactory | None = None, **overrides: Any
    ) -> None:
        base = config or EngineConfig()
        self.config: EngineConfig = base.replace(**overrides) if overrides else base
        self.catalog: Catalog = Catalog.builtin().with_additions(self.config.models)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._backend: Backend | None = None
        self._closed = False
        self._listeners: list[EngineListener] = []
        self._backend_factory = backend_factory

    # ------------------------------------------------------------------ lifecycle
    @property
    def remote(self) -> bool:
        """Whether the models run outside this process (``base_url``, or a backend factory marked ``remote``)."""
        return self.config.base_url is not None or bool(getattr(self._backend_factory, "remote", False))

    def _new_backend(self) -> Backend:
        if self._backend_factory is not None:
            return self._backend_factory(self.config, self.catalog, self._listeners)
        if self.config.base_url is not None:
            from .remote import RemoteBackend

            return RemoteBackend(self.config, self._listeners)
        from .local import LocalBackend

        return LocalBackend(self.config, self.catalog, self._listeners)

    def _start(self) -> tuple[asyncio.AbstractEventLoop, Backend]:
        with self._lock:
            if self._closed:
                raise EngineClosedError("the engine is closed; create a new Engine")
            if self._loop is not None and self._backend is not None:
                return self._loop, self._backend
            backend = self._new_backend()
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(backend.start)
                loop.call_soon(ready.set)
                loop.run_forever()

            self._thread = threading.Thread(target=run, name="sie-engine", daemon=True)
            self._thread.start()
            ready.wait()
            self._loop, self._backend = loop, backend
            return loop, backend

    def _sync(self, fn: Callable[[Backend], Coroutine[Any, Any, T]]) -> T:
        loop, backend = self._start()
        if threading.current_thread() is self._thread:
            raise RuntimeError("sync Engine methods cannot be called from the engine's own loop; await the a* twins")
        future = asyncio.run_coroutine_threadsafe(fn(backend), loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    async def _async(self, fn: Callable[[Backend], Coroutine[Any, Any, T]]) -> T:
        loop, backend = self._start()
        if asyncio.get_running_loop() is loop:
            return await fn(backend)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(fn(backend), loop))

    def close(self) -> None:
        """Unload every model and stop the engine's thread. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread, backend = self._loop, self._thread, self._backend
        if loop is None or thread is None or backend is None:
            return
        if threading.current_thread() is thread:
            raise RuntimeError("Engine.close() cannot run on the engine's own loop; use await aclose()")
        try:
            asyncio.run_coroutine_threadsafe(backend.close(), loop).result(timeout=60)
        except Exception as exc:  # closing must not raise for a model that failed to unload cleanly
            logger.warning("error while closing the engine: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
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
        return self.config.default_models[_check_task(task)]

    def _model_name(self, model: Any, task: str) -> str:
        if model is None:
            return self.default_model(task)
        if not isinstance(model, str) or not model.strip():
            raise InvalidInputError(f"model must be a non-empty model id string, got {reprlib.repr(model)}")
        return model.strip()

    def list_models(self, task: str | None = None) -> list[ModelInfo]:
        """The catalog and every other model this engine has seen, with load state and counters.

        Args:
            task: Only models for this task (encode, score or extract).
        """
        task = _check_task(task, optional=True)
        return self._sync(lambda b: b.list_models(task))

    async def alist_models(self, task: str | None = None) -> list[ModelInfo]:
        """Async twin of :meth:`list_models`."""
        task = _check_task(task, optional=True)
        return await self._async(lambda b: b.list_models(task))

    def load(self, model: str, task: str | None = None) -> ModelInfo:
        """Load a model now (for example at start-up), instead of on its first call.

        Args:
            model: Model id.
            task: If given, fail unless the model does this task.

        Raises:
            UnknownModelError, WrongTaskError, ModelLoadError.
        """
        name = self._model_name(model, task or "encode")
        return self._sync(lambda b: b.load(name, task))

    async def aload(self, model: str, task: str | None = None) -> ModelInfo:
        """Async twin of :meth:`load`."""
        name = self._model_name(model, task or "encode")
        return await self._async(lambda b: b.load(name, task))

    def unload(self, model: str) -> bool:
        """Unload a model now; returns whether it was loaded (always False for a remote engine)."""
        return self._sync(lambda b: b.unload(model))

    async def aunload(self, model: str) -> bool:
        """Async twin of :meth:`unload`."""
        return await self._async(lambda b: b.unload(model))

    def model_state(self, model: str) -> str:
        """``not_loaded``, ``loading``, ``loaded`` or ``failed``: cheap, no request (remote: as last reported)."""
        return self._backend.model_state(model) if self._backend is not None else "not_loaded"

    def queue_depth(self) -> dict[str, int]:
        """Items waiting per loaded model."""
        return self._backend.queue_depth() if self._backend is not None else {}

    # ------------------------------------------------------------------ typed requests
    def request(self, cls: type[R], model: str | None, items: Any, **options: Any) -> R:
        """Validate a call's arguments into a typed request with its model resolved and limits checked.

        Raises:
            InvalidInputError: A wrong type, a value out of bounds, an unknown option, or a limit exceeded.
        """
        data = {"model": self._model_name(model, _TASK_OF[cls]), "items": items, **options}
        request = parse(cls, data, where="the call")
        check_limits(request, self.config)
        return request

    def _resolved(self, request: R) -> R:
        if request.model is None:
            request = request.model_copy(update={"model": self.default_model(_TASK_OF[type(request)])})
        check_limits(request, self.config)
        return request

    async def aencode_request(self, request: EncodeRequest) -> list[EncodeResult]:
        """Serve a typed encode request (what front ends that parsed a body call)."""
        request = self._resolved(request)
        return await self._async(lambda b: b.encode(request))

    async def ascore_request(self, request: ScoreRequest) -> ScoreResult:
        """Serve a typed score request."""
        request = self._resolved(request)
        return await self._async(lambda b: b.score(request))

    async def aextract_request(self, request: ExtractRequest) -> list[ExtractResult]:
        """Serve a typed extract request."""
        request = self._resolved(request)
        return await self._async(lambda b: b.extract(request))

    # ------------------------------------------------------------------ encode
    @overload
    def encode(self, model: str | None, items: ItemLike, **options: Unpack[EncodeKwargs]) -> EncodeResult: ...  # type: ignore[overload-overlap]
    @overload
    def encode(
        self, model: str | None, items: Sequence[ItemLike], **options: Unpack[EncodeKwargs]
    ) -> list[EncodeResult]: ...
    def encode(
        self, model: str | None, items: ItemLike | Sequence[ItemLike], **options: Unpack[EncodeKwargs]
    ) -> EncodeResult | list[EncodeResult]:
        """Turn texts into vectors.

        Args:
            model: Model id (None = the configured default encoder).
            items: One text or Item, or a list of them.
            **options: ``output_types`` (``dense``, ``sparse``, ``multivector``: those the model produces),
                ``instruction``, ``is_query`` (the model's query side), ``normalize``, ``output_dtype``, ``dims``:
                each described once in :class:`sie_core.requests.EncodeRequest`.

        Returns:
            One :class:`EncodeResult` for one item, else a list in input order, carrying the outputs asked for.

        Raises:
            InvalidInputError, UnknownModelError, WrongTaskError, ModelLoadError, OverloadedError.
        """
        request = self.request(EncodeRequest, model, items, **options)
        results = self._sync(lambda b: b.encode(request))
        return results[0] if _single(items) else results

    @overload
    async def aencode(self, model: str | None, items: ItemLike, **options: Unpack[EncodeKwargs]) -> EncodeResult: ...  # type: ignore[overload-overlap]
    @overload
    async def aencode(
        self, model: str | None, items: Sequence[ItemLike], **options: Unpack[EncodeKwargs]
    ) -> list[EncodeResult]: ...
    async def aencode(
        self, model: str | None, items: ItemLike | Sequence[ItemLike], **options: Unpack[EncodeKwargs]
    ) -> EncodeResult | list[EncodeResult]:
        """Async twin of :meth:`encode`; safe to call from many tasks at once."""
        request = self.request(EncodeRequest, model, items, **options)
        results = await self._async(lambda b: b.encode(request))
        return results[0] if _single(items) else results

    # ------------------------------------------------------------------ score
    def score(
        self, model: str | None, query: ItemLike, items: Sequence[ItemLike], *, top_k: int | None = None
    ) -> ScoreResult:
        """Rerank items against a query (cross-encoder logits, or MaxSim for late-interaction models; best first).

        On a ColBERT model ``score`` is MaxSim and ``relevance`` its mean per query vector, clipped to 0..1
        (a cross-encoder's is the sigmoid of its logit); see :mod:`sie_core.hybrid`.

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
        request = self.request(ScoreRequest, model, items, query=query, top_k=top_k)
        return self._sync(lambda b: b.score(request))

    async def ascore(
        self, model: str | None, query: ItemLike, items: Sequence[ItemLike], *, top_k: int | None = None
    ) -> ScoreResult:
        """Async twin of :meth:`score`."""
        request = self.request(ScoreRequest, model, items, query=query, top_k=top_k)
        return await self._async(lambda b: b.score(request))

    # ------------------------------------------------------------------ extract
    @overload
    def extract(self, model: str | None, items: ItemLike, **options: Unpack[ExtractKwargs]) -> ExtractResult: ...  # type: ignore[overload-overlap]
    @overload
    def extract(
        self, model: str | None, items: Sequence[ItemLike], **options: Unpack[ExtractKwargs]
    ) -> list[ExtractResult]: ...
    def extract(
        self, model: str | None, items: ItemLike | Sequence[ItemLike], **options: Unpack[ExtractKwargs]
    ) -> ExtractResult | list[ExtractResult]:
        """Find entities, relations, classes and schema fields, as the model's family can.

        Texts longer than the model's window are split into overlapping windows and the findings merged
        (see :mod:`sie_core.extraction`), so nothing is silently cut; offsets always point into the original text.

        Args:
            model: Model id (None = the configured default extractor).
            items: One text or Item, or a list of them.
            **options: ``labels`` (entity types, e.g. ``["person", "organization"]``), ``relation_labels``,
                ``classes``, ``output_schema`` (which ones a model takes and needs is its family's; the others
                are refused by name), ``threshold`` (minimum confidence 0..1, default 0.5), ``flat_ner`` (no
                overlapping entities, default True), ``multi_label`` (one span may carry several labels, a
                text several classes), as described in :class:`sie_core.requests.ExtractRequest`.

        Returns:
            One :class:`ExtractResult` for one item, else a list in input order.

        Raises:
            InvalidInputError, UnknownModelError, WrongTaskError, ModelLoadError, OverloadedError.
        """
        request = self.request(ExtractRequest, model, items, **options)
        results = self._sync(lambda b: b.extract(request))
        return results[0] if _single(items) else results

    @overload
    async def aextract(self, model: str | None, items: ItemLike, **options: Unpack[ExtractKwargs]) -> ExtractResult: ...  # type: ignore[overload-overlap]
    @overload
    async def aextract(
        self, model: str | None, items: Sequence[ItemLike], **options: Unpack[ExtractKwargs]
    ) -> list[ExtractResult]: ...
    async def aextract(
        self, model: str | None, items: ItemLike | Sequence[ItemLike], **options: Unpack[ExtractKwargs]
    ) -> ExtractResult | list[ExtractResult]:
        """Async twin of :meth:`extract`."""
        request = self.request(ExtractRequest, model, items, **options)
        results = await self._async(lambda b: b.extract(request))
        return results[0] if _single(items) else results


def _single(items: Any) -> bool:
    return isinstance(items, (str, dict))


def _check_task(task: str | None, *, optional: bool = False) -> Any:
    if task is None and optional:
        return None
    if task not in TASKS:
        raise InvalidInputError(f"task {task!r} is not known; use one of {', '.join(TASKS)}")
    return task
