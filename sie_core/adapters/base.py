"""What every adapter provides: load once, then run batches in the engine's compute thread."""

from __future__ import annotations

import gc
import logging
import sys
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

from ..catalog import ModelSpec
from ..config import EngineConfig
from ..sources import ModelSource

__all__ = [
    "Adapter",
    "EncoderAdapter",
    "ExtractorAdapter",
    "ScorerAdapter",
    "release_memory",
    "stdout_to_stderr",
]

logger = logging.getLogger(__name__)


@contextmanager
def stdout_to_stderr() -> Any:
    """Send anything a library prints while loading to stderr: stdout belongs to the MCP stdio protocol."""
    saved = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = saved


def release_memory(device: str | None) -> None:
    """Return freed model memory: collect garbage, empty the CUDA cache, and trim the C heap on glibc."""
    gc.collect()
    if device and device.startswith("cuda") and "torch" in sys.modules:
        import torch

        torch.cuda.empty_cache()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


class Adapter(ABC):
    """A loaded model. Constructed (and loaded) in a loader thread; its batch methods run in the compute thread.

    Attributes:
        spec: The catalog entry.
        source: Where the files came from.
        device: The device it runs on.
        dtype: Its weights dtype.
        memory_bytes: Memory its weights take.
        max_length: Maximum tokens per input (words per window for extractors).
        batch_tokens: The most (estimated, padded) tokens per forward pass this model runs best with, when
            that is below the engine's ``max_batch_tokens``; None for no preference.
        group_fixed_cost: When set, the batch worker runs mixed-length batches in groups of similar
            length (this is the cost of one extra forward pass, in padded tokens; see ``sie_core.padding``).
    """

    task: ClassVar[str]
    name: ClassVar[str]
    backend: ClassVar[str] = "torch"

    def __init__(self, spec: ModelSpec, source: ModelSource, config: EngineConfig) -> None:
        self.spec = spec
        self.source = source
        self.config = config
        self.device = "cpu"
        self.dtype = "float32"
        self.memory_bytes = 0
        self.max_length: int | None = spec.max_length
        self.batch_tokens: int | None = None
        self.group_fixed_cost: int | None = None

    @property
    def threads(self) -> int | None:
        """CPU threads one forward pass uses, when it runs on the CPU (None elsewhere, or when unknown)."""
        if self.device != "cpu":
            return None
        graph = getattr(self, "graph", None)
        if graph is not None:
            return getattr(graph, "threads", None)
        if self.backend != "torch":
            return None
        from ..threads import thread_plan

        return thread_plan(self.config.num_threads).torch_threads

    def cost(self, text: str) -> int:
        """Estimated tokens for a text (about four characters a token), used to size batches."""
        return len(text) // 4 + 2

    def close(self) -> None:
        """Drop the model's weights and give the memory back."""
        for attr in ("model", "session", "tokenizer"):
            if hasattr(self, attr):
                setattr(self, attr, None)
        release_memory(self.device)


class EncoderAdapter(Adapter):
    """A model that turns texts into dense vectors."""

    task = "encode"
    dims: int
    prompts: dict[str, str]
    #: Whether the model's own output is unit length (the default for ``normalize=None``).
    normalized: bool = False

    def prompt_for(self, *, is_query: bool, instruction: str | None) -> str | None:
        """The prompt to put before the texts.

        An ``instruction`` wins: it is put into the model's ``instruction_template`` when it has one,
        else used as the prompt itself (followed by a space unless it ends in whitespace). Otherwise the
        catalog's query/document prompt, else the model's own ``query``/``document``/``passage`` prompt.
        """
        if instruction is not None:
            template = self.spec.instruction_template
            if template:
                return template.replace("{instruction}", instruction)
            return instruction if instruction[-1:].isspace() else instruction + " "
        if is_query:
            return self.spec.query_prompt or self.prompts.get("query") or self.prompts.get("search_query")
        return (
            self.spec.document_prompt
            or self.prompts.get("document")
            or self.prompts.get("passage")
            or self.prompts.get("search_document")
        )

    @abstractmethod
    def encode(self, texts: list[str], prompt: str | None) -> tuple[np.ndarray, list[int]]:
        """Encode a batch.

        Returns:
            A float32 array of shape (len(texts), dims) with the model's own output (no extra
            normalization), and each text's token count including the prompt and special tokens,
            before truncation.
        """


class ScorerAdapter(Adapter):
    """A cross-encoder that scores (query, document) pairs."""

    task = "score"

    @abstractmethod
    def score(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """Score a batch of pairs: one raw score (logit) per pair, float32."""


class ExtractorAdapter(Adapter):
    """An extraction model: entities (GLiNER-style spans), relations, classes and/or schema fields.

    The engine cuts long texts into windows of at most ``max_length`` of the model's words
    (:meth:`word_spans`); :meth:`run` gets one input per window. Span extractors implement :meth:`extract`
    (the default :meth:`run` calls it); other families override :meth:`run`.
    """

    task = "extract"

    @abstractmethod
    def word_spans(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) of each word, as the model splits words (its window unit)."""

    def prepare(self, task: Any, model_id: str) -> Any:
        """Check (and, for fixed-label models, map) a request's task before it is queued (loop thread, cheap).

        Raises:
            InvalidInputError: Something this model cannot do, naming what it can.
        """
        return task

    def extract(
        self, texts: list[str], labels: list[str], threshold: float, flat_ner: bool, multi_label: bool
    ) -> list[list[dict[str, Any]]]:
        """Entities per text as dicts with start, end (character offsets), label and score."""
        raise NotImplementedError(f"{type(self).__name__} finds no entity spans; it implements run()")

    def run(self, inputs: list[Any], task: Any) -> list[dict[str, Any]]:
        """Run one batch of windows (:class:`~sie_core.extraction.ExtractInput`) for one task.

        Returns:
            Per input a dict with any of ``entities`` (start, end, label, score), ``relations`` (head_start,
            head_end, head_label, tail_start, tail_end, tail_label, relation, score), ``classifications``
            (label, score) and ``data`` (field -> (value, confidence)); offsets relative to the window.
        """
        found = self.extract(
            [i.text for i in inputs], list(task.labels), task.threshold, task.flat_ner, task.multi_label
        )
        return [{"entities": entities} for entities in found]
