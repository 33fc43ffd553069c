r"""Zero-shot relation extraction with GLiREL (``pip install glirel``), on torch.

GLiREL scores every ordered pair of a text's entities against the relation types named in
``relation_labels``. The entities come from the items' ``metadata.entities`` (SIE's way), else the engine
finds them first with the entity model (``options.entity_model``, en_core_web_sm by default) and the
request's ``labels``. A window's relations equal ``GLiREL.batch_predict_relations`` on that window's words
(GLiREL's own ``\w+(?:[-_]\w+)*|\S`` split) with the entities inside it, ``top_k=-1`` (every label above
``threshold``); character offsets come from the words' offsets.

Loading goes through GLiREL's own ``_from_pretrained`` (its ``from_pretrained`` wrapper no longer fits
huggingface_hub 1.x), and ``fixed_relation_types`` is set, which is what ``predict_relations`` with one list
of relation types needs.
"""

from __future__ import annotations

import re
from typing import Any

from ..catalog import ModelSpec
from ..config import EngineConfig
from ..sources import ModelSource
from ._torch import parameter_bytes, prepare_torch, torch_dtype
from .base import ExtractorAdapter, stdout_to_stderr

__all__ = ["GlirelExtractor", "WORD"]

#: GLiREL's word pattern (``GLiREL.batch_predict_relations`` splits raw text with it).
WORD = re.compile(r"\w+(?:[-_]\w+)*|\S")


def words(text: str) -> list[tuple[str, int, int]]:
    """GLiREL's words of a text with their character offsets."""
    return [(m.group(), m.start(), m.end()) for m in WORD.finditer(text)]


def token_spans(entities: Any, offsets: list[tuple[int, int]]) -> list[tuple[int, int, Any]]:
    """Each entity's (first word, last word inclusive, entity), one per word span; entities on no word dropped."""
    spans: dict[tuple[int, int], Any] = {}
    for ent in entities:
        covered = [i for i, (a, b) in enumerate(offsets) if b > ent.start and a < ent.end]
        if covered:
            spans.setdefault((covered[0], covered[-1]), ent)
    return [(a, b, ent) for (a, b), ent in spans.items()]


class GlirelExtractor(ExtractorAdapter):
    """A GLiREL model; a window's relations equal ``batch_predict_relations`` on that window."""

    name = "glirel"

    def __init__(self, spec: ModelSpec, source: ModelSource, config: EngineConfig) -> None:
        super().__init__(spec, source, config)
        self.device, self.dtype = prepare_torch(config)
        from glirel import GLiREL

        with stdout_to_stderr():
            model = GLiREL._from_pretrained(
                model_id=str(source.path),
                revision=None,
                cache_dir=None,
                force_download=False,
                proxies=None,
                resume_download=False,
                local_files_only=True,
                token=None,
                map_location=self.device,
            )
        model.base_config.fixed_relation_types = True
        if self.dtype != "float32":
            model = model.to(torch_dtype(self.dtype))
        model.eval()
        self.model: Any = model
        self.max_length = int(getattr(model.base_config, "max_len", None) or spec.max_length or 384)
        self.memory_bytes = parameter_bytes(model)

    def word_spans(self, text: str) -> list[tuple[int, int]]:
        """GLiREL's words (its ``max_len`` counts these)."""
        return [(a, b) for _, a, b in words(text)]

    def run(self, inputs: list[Any], task: Any) -> list[dict[str, Any]]:
        """Relations between each window's entities (windows with fewer than two entities find none)."""
        import torch

        out: list[dict[str, Any]] = [{"relations": []} for _ in inputs]
        batch, ners, metas = [], [], []
        for index, item in enumerate(inputs):
            split = words(item.text)
            offsets = [(a, b) for _, a, b in split]
            spans = token_spans(item.entities or (), offsets)
            if len(spans) < 2:
                continue
            tokens = [w for w, _, _ in split]
            batch.append(tokens)
            ners.append([[a, b, ent.label, " ".join(tokens[a : b + 1])] for a, b, ent in spans])
            metas.append((index, offsets, {(a, b): ent for a, b, ent in spans}))
        if not batch:
            return out
        with torch.inference_mode():
            found = self.model.batch_predict_relations(
                batch, list(task.relation_labels), threshold=task.threshold, ner=ners, top_k=-1
            )
        for (index, offsets, by_span), relations in zip(metas, found):
            rows = []
            for rel in relations:
                (hs, he), (ts, te) = rel["head_pos"], rel["tail_pos"]
                head, tail = by_span.get((hs, he - 1)), by_span.get((ts, te - 1))
                rows.append(
                    {
                        "head_start": head.start if head is not None else offsets[hs][0],
                        "head_end": head.end if head is not None else offsets[he - 1][1],
                        "head_label": head.label if head is not None else "",
                        "tail_start": tail.start if tail is not None else offsets[ts][0],
                        "tail_end": tail.end if tail is not None else offsets[te - 1][1],
                        "tail_label": tail.label if tail is not None else "",
                        "relation": rel["label"],
                        "score": float(rel["score"]),
                    }
                )
            out[index] = {"relations": rows}
        return out
