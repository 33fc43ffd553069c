"""Zero-shot extraction with GLiNER, on torch."""

from __future__ import annotations

from typing import Any

from ..catalog import ModelSpec
from ..config import EngineConfig
from ..sources import ModelSource
from ._torch import parameter_bytes, prepare_torch, torch_dtype
from .base import ExtractorAdapter, stdout_to_stderr

__all__ = ["GlinerExtractor"]


class GlinerExtractor(ExtractorAdapter):
    """A GLiNER model; a window's entities equal ``GLiNER.inference`` on that window's text."""

    name = "gliner"

    def __init__(self, spec: ModelSpec, source: ModelSource, config: EngineConfig) -> None:
        super().__init__(spec, source, config)
        self.device, self.dtype = prepare_torch(config)
        import warnings

        from gliner import GLiNER

        with stdout_to_stderr(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = GLiNER.from_pretrained(
                str(source.path),
                local_files_only=True,
                map_location=self.device,
                **dict(spec.options),
            )
        model = model.to(self.device)
        if self.dtype != "float32":
            model = model.to(torch_dtype(self.dtype))
        model.eval()
        self.model: Any = model
        self.max_length = int(getattr(model.config, "max_len", None) or spec.max_length or 384)
        self._split = model.data_processor.words_splitter
        self.memory_bytes = parameter_bytes(model)

    def word_spans(self, text: str) -> list[tuple[int, int]]:
        """Word boundaries as GLiNER's own splitter finds them (its ``max_len`` counts these words)."""
        return [(start, end) for _, start, end in self._split(text)]

    def extract(
        self, texts: list[str], labels: list[str], threshold: float, flat_ner: bool, multi_label: bool
    ) -> list[list[dict[str, Any]]]:
        """Run ``GLiNER.inference`` on a batch of texts that each fit the window."""
        return self.model.inference(
            texts,
            labels,
            flat_ner=flat_ner,
            threshold=threshold,
            multi_label=multi_label,
            batch_size=len(texts),
        )
