"""The local backend: models loaded in this process, one batch queue each, on the best device.

Bookkeeping runs on the engine's loop thread; everything that costs CPU per request runs elsewhere: forward
passes in the compute thread (one per device, shared by every model, so each model's batches interleave
with the others'), and the planning and merging of long extractions in a post-processing thread, so a
199,000-character text never holds up another caller's request.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from .adapters import Adapter, EncoderAdapter, ExtractorAdapter, ScorerAdapter
from .adapters.multi import MultiEncoderAdapter
from .catalog import Catalog
from .config import EngineConfig
from .errors import SieError
from .extraction import ExtractTask, GivenEntity, given_entities, merge_extraction, plan_extraction
from .families import Family, family_of
from .hybrid import encode_results, maxsim_entries, wanted_outputs
from .models import LoadedModel, ModelManager
from .requests import EncodeRequest, ExtractRequest, ScoreRequest
from .results import EncodeResult, ExtractResult, ModelInfo, ScoreEntry, ScoreResult
from .validation import check_dims
from .vectors import finish_vectors

__all__ = ["LocalBackend"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


class LocalBackend:
    """Serves typed requests with models loaded in this process.

    Args:
        config: The engine's configuration.
        catalog: Known models.
        listeners: The engine's listeners (request, batch, load and unload events).
    """

    def __init__(self, config: EngineConfig, catalog: Catalog, listeners: list[Any]) -> None:
        self.config = config
        self.catalog = catalog
        self._listeners = listeners
        self._compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sie-compute")
        self._loader = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sie-load")
        self._post = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sie-post")
        self.manager = ModelManager(config, catalog, self._compute, self._loader, _batch_runner)
        self.manager.listeners = listeners

    def start(self) -> None:
        """Start the idle reaper (on the engine's loop)."""
        self.manager.start_idle_reaper()

    async def close(self) -> None:
        """Unload every model and stop the threads."""
        try:
            await self.manager.close()
        finally:
            for pool in (self._compute, self._loader, self._post):
                pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ models
    async def list_models(self, task: str | None) -> list[ModelInfo]:
        """The catalog and every model seen, with state and counters."""
        return self.manager.infos(task)

    async def load(self, model: str, task: str | None) -> ModelInfo:
        """Load ``model`` now (and check it can do ``task`` when given)."""
        manager = self.manager
        spec = manager.check_task(model, task) if task else manager.spec_for(model)
        loaded = await manager.load(spec.id if spec else model, spec, task=task)
        if task is not None:
            await manager.release(await manager.acquire(loaded.spec.id, task))
        return manager.info(loaded.spec)

    async def unload(self, model: str) -> bool:
        """Unload ``model`` now."""
        return await self.manager.unload(model)

    def model_state(self, model: str) -> str:
        """The model's load state (by id or alias)."""
        spec = self.catalog.get(model)
        return self.manager.state(spec.id if spec is not None else model)

    def queue_depth(self) -> dict[str, int]:
        """Items waiting per loaded model."""
        return self.manager.queue_depth()

    # ------------------------------------------------------------------ serving
    async def _serve(self, request: Any, task: str, work: Callable[[LoadedModel], Awaitable[T]]) -> T:
        name: str = request.model
        started = time.perf_counter()
        error: SieError | None = None
        model: LoadedModel | None = None
        items = len(request.items)
        try:
            spec = self.manager.check_task(name, task)
            if spec is not None:
                family_of(spec).check(request, spec.id)
            model = await self.manager.acquire(name, task)
            if spec is None:
                family_of(model.spec).check(request, model.spec.id)
            return await work(model)
        except SieError as exc:
            error = exc
            raise
        finally:
            if model is not None:
                await self.manager.release(model, items=items, failed=error is not None)
            seconds = time.perf_counter() - started
            for listener in self._listeners:
                try:
                    listener.on_request(model.spec.id if model else name, task, seconds, items, error)
                except Exception:  # a metrics bug must never fail a request
                    logger.exception("engine listener failed")

    async def encode(self, request: EncodeRequest) -> list[EncodeResult]:
        """Vectors for the request's texts: dense, and sparse / multi-vector for models that produce them."""
        texts = request.texts

        async def work(model: LoadedModel) -> tuple[str, EncoderAdapter, list[Any]]:
            adapter = model.adapter
            assert isinstance(adapter, EncoderAdapter)
            prompt = adapter.prompt_for(is_query=request.is_query, instruction=request.instruction)
            if isinstance(adapter, MultiEncoderAdapter):
                check_dims(request.dims, adapter.output_dims().get("dense"), model.spec.id)
                group = adapter.group(prompt, is_query=request.is_query, output_types=wanted_outputs(request))
                costs = [adapter.cost_for(t, is_query=request.is_query) for t in texts]
                return model.spec.id, adapter, await model.worker.submit(group, texts, costs)
            check_dims(request.dims, adapter.dims, model.spec.id)
            costs = [adapter.cost(t) for t in texts]
            return model.spec.id, adapter, await model.worker.submit(("encode", prompt), texts, costs)

        model_id, adapter, outputs = await self._serve(request, "encode", work)
        if isinstance(adapter, MultiEncoderAdapter):
            return encode_results(model_id, adapter, request, outputs)
        normalize = request.normalize if request.normalize is not None else adapter.normalized
        vectors = finish_vectors(
            np.stack([o[0] for o in outputs]), normalize=normalize, dims=request.dims, output_dtype=request.output_dtype
        )
        limit = adapter.max_length
        return [
            EncodeResult(
                model=model_id,
                dense=vectors[i],
                dims=request.dims or adapter.dims,
                dtype=request.output_dtype,
                truncated=bool(limit is not None and tokens > limit),
                tokens=int(tokens),
                id=item_id,
            )
            for i, ((_, tokens), item_id) in enumerate(zip(outputs, request.ids))
        ]

    async def score(self, request: ScoreRequest) -> ScoreResult:
        """The items ranked by the cross-encoder's logit (or a late-interaction model's MaxSim), best first."""
        query, texts, ids = request.query.text, request.texts, request.ids

        async def work(model: LoadedModel) -> tuple[str, list[ScoreEntry] | None, list[float] | None]:
            adapter = model.adapter
            if isinstance(adapter, MultiEncoderAdapter):
                return model.spec.id, await _late_interaction(model, adapter, query, texts, ids, request.top_k), None
            costs = [adapter.cost(query) + adapter.cost(t) for t in texts]
            return model.spec.id, None, await model.worker.submit(("score",), [(query, t) for t in texts], costs)

        model_id, late, logits = await self._serve(request, "score", work)
        if late is not None:
            return ScoreResult(model=model_id, scores=late, query_id=request.query.id)
        raw = np.asarray(logits, dtype=np.float64)
        relevance = 1.0 / (1.0 + np.exp(-raw))
        order = sorted(range(len(texts)), key=lambda i: (-raw[i], i))[: request.top_k]
        entries = [
            ScoreEntry(index=i, score=float(raw[i]), relevance=float(relevance[i]), rank=rank, item_id=ids[i] or str(i))
            for rank, i in enumerate(order)
        ]
        return ScoreResult(model=model_id, scores=entries, query_id=request.query.id)

    async def extract(self, request: ExtractRequest) -> list[ExtractResult]:
        """Entities, relations, classes and fields per text; long texts are windowed and merged off the loop.

        A relation family (GLiREL) is given the entities of ``metadata.entities``, else those its entity
        model (``options.entity_model`` of its catalog entry, else the family's) finds with the labels.
        """
        texts = request.texts
        loop = asyncio.get_running_loop()
        spec = self.manager.check_task(str(request.model), "extract")
        family = family_of(spec) if spec is not None else None
        if spec is not None and family is not None:
            family.check(request, spec.id)
            request = family.prepare(request)
        given = await self._entities_for(request, spec, family)

        async def work(model: LoadedModel) -> tuple[str, ExtractTask, list[Any], list[Any]]:
            adapter = model.adapter
            assert isinstance(adapter, ExtractorAdapter)
            task = adapter.prepare(ExtractTask.of(family_of(model.spec).prepare(request)), model.spec.id)
            window = int(adapter.max_length or 384)
            overlap = model.spec.window_overlap or max(8, window // 8)
            plans, inputs, costs = await loop.run_in_executor(
                self._post, plan_extraction, adapter, texts, given, window, overlap
            )
            return model.spec.id, task, plans, await model.worker.submit(("extract", task), inputs, costs)

        model_id, task, plans, found = await self._serve(request, "extract", work)
        return await loop.run_in_executor(self._post, merge_extraction, model_id, request, task, plans, found, given)

    async def _entities_for(
        self, request: ExtractRequest, spec: Any, family: Family | None
    ) -> list[list[GivenEntity]] | None:
        """The entities a relation model is given: the items' own, else found by the entity model."""
        given = given_entities(request.items)
        if given is not None or family is None or family.entity_model is None:
            return given
        entity_model = str(spec.options.get("entity_model") or family.entity_model)
        found = await self.extract(
            ExtractRequest.model_construct(
                model=entity_model,
                items=request.items,
                labels=request.labels,
                relation_labels=None,
                classes=None,
                output_schema=None,
                threshold=request.threshold,
                flat_ner=True,
                multi_label=False,
            )
        )
        return [[GivenEntity(e.start, e.end, e.label, e.score) for e in r.entities] for r in found]


async def _late_interaction(
    model: LoadedModel, adapter: MultiEncoderAdapter, query: str, texts: list[str], ids: list[str | None], top_k: Any
) -> list[ScoreEntry]:
    """MaxSim ranking: the query on the query side and the items on the document side, through the batch queue."""
    sides = []
    for is_query, batch in ((True, [query]), (False, texts)):
        prompt = adapter.prompt_for(is_query=is_query, instruction=None)
        group = adapter.group(prompt, is_query=is_query, output_types=("multivector",))
        costs = [adapter.cost_for(t, is_query=is_query) for t in batch]
        sides.append(model.worker.submit(group, batch, costs))
    found_query, found_items = await asyncio.gather(*sides)
    return maxsim_entries(found_query[0], found_items, ids, top_k)


def _batch_runner(adapter: Adapter) -> Callable[[Hashable, list[Any]], Sequence[Any]]:
    """The function the compute thread runs for one batch of this adapter's task (torch on CPU: sized threads)."""
    run = _task_runner(adapter)
    threads = adapter.threads
    # torch not imported: a model that runs no torch (spaCy's pipelines), whose threads are not torch's.
    if adapter.backend == "torch" and threads is not None and threads > 1 and "torch" in sys.modules:
        from .adapters._torch import sized_threads

        return sized_threads(run, threads)
    return run


def _task_runner(adapter: Adapter) -> Callable[[Hashable, list[Any]], Sequence[Any]]:
    if isinstance(adapter, MultiEncoderAdapter):
        return adapter.run_group
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

        def run_extract(group: Hashable, inputs: list[Any]) -> Sequence[Any]:
            return adapter.run(inputs, group[1])  # type: ignore[index]

        return run_extract
    raise TypeError(f"no batch function for adapter {type(adapter).__name__}")
