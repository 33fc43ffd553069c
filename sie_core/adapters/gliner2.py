"""Entities, classification, relations and schema fields with GLiNER2 (``pip install gliner2``), on torch.

One call builds one gliner2 ``Schema`` from the request: ``.entities(labels)``, ``.classification("classes",
classes, multi_label=...)``, ``.relations(relation_labels)`` and a ``.structure("data")`` with one field per
``output_schema`` property, and runs ``GLiNER2.batch_extract`` (``include_confidence``, ``include_spans``) on
the windows, so a window's findings are gliner2's own:

* entities: every span gliner2 returns per label (gliner2 applies its own overlap rules; ``flat_ner`` is not
  an option), its confidence as the score;
* classifications: what gliner2 returns, the chosen class for single-label, the classes above ``threshold``
  for multi-label;
* relations: each (head, tail) pair gliner2 returns, scored with the lower of the two spans' confidences (as
  SIE does); head and tail carry no entity label;
* data: the first record gliner2 forms for the schema; a ``string``/``number``/``integer`` field holds the
  span's text (None when not found), an ``array`` field a list of texts, a field with ``enum`` the chosen
  value, and a ``boolean`` field true or false (chosen between the two).
"""

from __future__ import annotations

from typing import Any

from ..catalog import ModelSpec
from ..config import EngineConfig
from ..sources import ModelSource
from ._torch import parameter_bytes, prepare_torch, torch_dtype
from .base import ExtractorAdapter, stdout_to_stderr

__all__ = ["CLASS_TASK", "DATA_STRUCTURE", "Gliner2Extractor", "build_schema"]

CLASS_TASK = "classes"
DATA_STRUCTURE = "data"


def build_schema(model: Any, task: Any) -> Any:
    """The gliner2 Schema for a task (see the module docstring)."""
    schema = model.create_schema()
    if task.labels:
        schema = schema.entities(list(task.labels))
    if task.classes:
        schema = schema.classification(
            CLASS_TASK, list(task.classes), multi_label=task.multi_label, cls_threshold=task.threshold
        )
    if task.relation_labels:
        schema = schema.relations(list(task.relation_labels))
    fields = (task.schema or {}).get("properties") or {}
    if fields:
        builder = schema.structure(DATA_STRUCTURE)
        for name, spec in fields.items():
            kind = spec.get("type", "string")
            choices = spec.get("enum")
            if kind == "boolean":
                choices = ["true", "false"]
            builder = builder.field(
                name,
                dtype="list" if kind == "array" else "str",
                choices=list(choices) if choices else None,
                description=spec.get("description") or None,
            )
        schema = builder
    return schema


def _span(value: Any) -> tuple[Any, float]:
    if isinstance(value, dict):
        return value.get("text", value.get("label")), float(value.get("confidence", 0.0))
    return value, 0.0


def _fields(record: dict[str, Any], properties: dict[str, Any]) -> dict[str, tuple[Any, float]]:
    data: dict[str, tuple[Any, float]] = {}
    for name, spec in properties.items():
        value = record.get(name)
        kind = spec.get("type", "string")
        if kind == "array":
            items = value if isinstance(value, list) else ([] if value is None else [value])
            spans = [_span(v) for v in items]
            data[name] = ([text for text, _ in spans], max((s for _, s in spans), default=0.0))
            continue
        if isinstance(value, list):
            value = max(value, key=lambda v: _span(v)[1]) if value else None
        text, score = _span(value) if value is not None else (None, 0.0)
        if kind == "boolean" and text is not None:
            text = str(text).strip().lower() == "true"
        data[name] = (text, score)
    return data


class Gliner2Extractor(ExtractorAdapter):
    """A GLiNER2 model; a window's findings equal ``GLiNER2.batch_extract`` with the request's schema."""

    name = "gliner2"

    def __init__(self, spec: ModelSpec, source: ModelSource, config: EngineConfig) -> None:
        super().__init__(spec, source, config)
        self.device, self.dtype = prepare_torch(config)
        from gliner2 import GLiNER2

        with stdout_to_stderr():
            model = GLiNER2.from_pretrained(str(source.path), map_location=self.device, **dict(spec.options))
        if self.dtype != "float32":
            model = model.to(torch_dtype(self.dtype))
        model.eval()
        self.model: Any = model
        self.max_length = int(getattr(model.config, "max_len", None) or spec.max_length or 512)
        self._split = model.processor.word_splitter
        self._schemas: dict[Any, Any] = {}
        self.memory_bytes = parameter_bytes(model)

    def word_spans(self, text: str) -> list[tuple[int, int]]:
        """Words as gliner2's own splitter finds them (its ``max_len`` counts these)."""
        return [(start, end) for _, start, end in self._split(text, lower=False)]

    def prepare(self, task: Any, model_id: str) -> Any:
        """gliner2 decides overlaps itself: entities from windows are merged without the flat rule."""
        from dataclasses import replace

        return replace(task, flat_ner=False)

    def run(self, inputs: list[Any], task: Any) -> list[dict[str, Any]]:
        """``batch_extract`` over the windows with the task's schema."""
        schema = self._schemas.get(task)
        if schema is None:
            if len(self._schemas) > 256:
                self._schemas.clear()
            schema = self._schemas[task] = build_schema(self.model, task)
        results = self.model.batch_extract(
            [i.text for i in inputs],
            schema,
            batch_size=max(1, len(inputs)),
            threshold=task.threshold,
            include_confidence=True,
            include_spans=True,
        )
        properties = (task.schema or {}).get("properties") or {}
        return [self._window(result, task, properties) for result in results]

    @staticmethod
    def _window(result: dict[str, Any], task: Any, properties: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if task.labels:
            found["entities"] = [
                {"start": int(s["start"]), "end": int(s["end"]), "label": label, "score": float(s["confidence"])}
                for label, spans in (result.get("entities") or {}).items()
                for s in spans or ()
            ]
        if task.classes:
            value = result.get(CLASS_TASK)
            chosen = value if isinstance(value, list) else ([value] if value else [])
            found["classifications"] = [
                {"label": c["label"], "score": float(c["confidence"])} for c in chosen if isinstance(c, dict)
            ]
        if task.relation_labels:
            found["relations"] = [
                {
                    "head_start": int(r["head"]["start"]),
                    "head_end": int(r["head"]["end"]),
                    "tail_start": int(r["tail"]["start"]),
                    "tail_end": int(r["tail"]["end"]),
                    "relation": label,
                    "score": min(float(r["head"]["confidence"]), float(r["tail"]["confidence"])),
                }
                for label, pairs in (result.get("relation_extraction") or {}).items()
                for r in pairs or ()
                if isinstance(r, dict) and isinstance(r.get("head"), dict) and isinstance(r.get("tail"), dict)
            ]
        if properties:
            records = result.get(DATA_STRUCTURE) or []
            record = records[0] if isinstance(records, list) and records else {}
            found["data"] = _fields(record if isinstance(record, dict) else {}, properties)
        return found
