"""Extraction beyond entities: the task a batch runs, the inputs of each window, and merging windows' findings.

Every extract family runs on windows of a text (see :mod:`sie_core.windows`): a text that fits one window is
given to the model whole, so what it finds equals the library's own call on that text; a longer text is cut
into overlapping windows and what each window found is merged back, offsets into the original text:

* **entities**: kept first from the window that owns their start, best score first (``merge_entities``).
* **relations**: the model reads one window at a time, so a relation is found only between two entities that
  lie in one window together. Two entities whose combined extent (first start to last end) spans at most
  ``overlap`` words always share a window; two farther apart than one window never do and get no relation;
  in between it depends on where the seams fall. A relation found by two overlapping windows is reported
  once, with the better score.
* **classifications**: each window is classified on its own and a class's score for the text is the mean of
  its windows' scores, each window weighted by the characters it owns (so a text is judged as a whole and
  every part counts once); the order is best first.
* **data** (schema fields): per field, the value found with the highest confidence in any window; for array
  fields, the values of every window in text order, without repeats.

A model that is given entities (GLiREL with ``metadata.entities``, or entities found first by an entity
model) sees, in each window, the entities that lie wholly inside it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from .errors import InvalidInputError
from .results import Classification, Entity, ExtractResult, Relation
from .windows import Window, merge_entities, plan_windows

__all__ = [
    "ExtractInput",
    "ExtractTask",
    "GivenEntity",
    "given_entities",
    "merge_classifications",
    "merge_data",
    "merge_extraction",
    "merge_relations",
    "plan_extraction",
]


@dataclass(frozen=True)
class ExtractTask:
    """What one batch of windows is asked for; hashable, so it is the batch group key.

    Attributes:
        labels: Entity types (for a fixed-label model: its own labels, already mapped).
        relation_labels: Relation types.
        classes: Classes to score.
        output_schema: The schema of fields to fill, as canonical JSON text (hashable), or None.
        threshold: Minimum confidence for entities, relations and fields.
        flat_ner: No overlapping entities.
        multi_label: Several labels per span / independent class scores.
        label_names: For a fixed-label model, the model's label -> the label the caller asked for.
    """

    labels: tuple[str, ...] = ()
    relation_labels: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    output_schema: str | None = None
    threshold: float = 0.5
    flat_ner: bool = True
    multi_label: bool = False
    label_names: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, request: Any) -> ExtractTask:
        """The task of an :class:`~sie_core.requests.ExtractRequest` (labels deduplicated, order kept)."""
        schema = request.output_schema
        return cls(
            labels=tuple(dict.fromkeys(request.labels or ())),
            relation_labels=tuple(dict.fromkeys(request.relation_labels or ())),
            classes=tuple(dict.fromkeys(request.classes or ())),
            output_schema=json.dumps(schema) if schema is not None else None,
            threshold=float(request.threshold),
            flat_ner=bool(request.flat_ner),
            multi_label=bool(request.multi_label),
        )

    @property
    def schema(self) -> dict[str, Any] | None:
        """The output schema as a dict, or None."""
        return json.loads(self.output_schema) if self.output_schema is not None else None


class GivenEntity(NamedTuple):
    """An entity handed to a model (offsets relative to the text or window it is given with)."""

    start: int
    end: int
    label: str
    score: float = 1.0


class ExtractInput(NamedTuple):
    """One window as a model receives it: its text and, for relation models, the entities inside it."""

    text: str
    entities: tuple[GivenEntity, ...] | None = None


def given_entities(items: Sequence[Any]) -> list[list[GivenEntity]] | None:
    """The entities callers put in ``metadata.entities`` (SIE's way of giving GLiREL its entities).

    Returns:
        One list per item, or None when no item carries entities.

    Raises:
        InvalidInputError: Some items carry entities and others do not, or an entity is malformed.
    """
    found: list[list[GivenEntity] | None] = []
    for i, item in enumerate(items):
        metadata = item.metadata or {}
        raw = metadata.get("entities") if isinstance(metadata, Mapping) else None
        if raw is None:
            found.append(None)
            continue
        if not isinstance(raw, list):
            raise InvalidInputError(f"items[{i}].metadata.entities must be a list of {{start, end, label}} objects")
        text = item.text
        entities = []
        for j, ent in enumerate(raw):
            where = f"items[{i}].metadata.entities[{j}]"
            if not isinstance(ent, Mapping):
                raise InvalidInputError(f"{where} must be an object with start, end and label")
            start, end, label = ent.get("start"), ent.get("end"), ent.get("label")
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
                raise InvalidInputError(f"{where} needs integer start and end character offsets")
            assert isinstance(start, int) and isinstance(end, int)
            if not 0 <= start < end <= len(text) or not text[start:end].strip():
                raise InvalidInputError(
                    f"{where} has offsets [{start}, {end}); they must satisfy 0 <= start < end <= {len(text)} "
                    "(the text's length) and cover some text"
                )
            if not isinstance(label, str) or not label.strip():
                raise InvalidInputError(f"{where} needs a non-empty string label")
            score = ent.get("score", 1.0)
            entities.append(GivenEntity(start, end, label, float(score) if isinstance(score, (int, float)) else 1.0))
        found.append(entities)
    if all(f is None for f in found):
        return None
    missing = [i for i, f in enumerate(found) if f is None]
    if missing:
        raise InvalidInputError(
            f"items[{missing[0]}] has no metadata.entities while other items do; give every item its entities "
            "or none (then they are found with the labels)"
        )
    return [f or [] for f in found]


def _in_window(entities: Sequence[GivenEntity], win: Window) -> tuple[GivenEntity, ...]:
    return tuple(
        GivenEntity(e.start - win.start, e.end - win.start, e.label, e.score)
        for e in entities
        if e.start >= win.start and e.end <= win.end
    )


def plan_extraction(
    adapter: Any,
    texts: Sequence[str],
    given: Sequence[Sequence[GivenEntity]] | None,
    window: int,
    overlap: int,
) -> tuple[list[list[Window]], list[ExtractInput], list[int]]:
    """Cut each text into windows (in the adapter's words) and build the inputs the model receives.

    Returns:
        Each text's windows, every window's input (all texts, in order), and each input's estimated cost.
    """
    plans = [plan_windows(t, adapter.word_spans(t), window, overlap) for t in texts]
    inputs: list[ExtractInput] = []
    for index, (text, plan) in enumerate(zip(texts, plans)):
        for win in plan:
            entities = _in_window(given[index], win) if given is not None else None
            inputs.append(ExtractInput(text[win.start : win.end], entities))
    return plans, inputs, [adapter.cost(i.text) for i in inputs]


def merge_relations(
    text: str, windows: Sequence[Window], found: Sequence[Sequence[Mapping[str, Any]]]
) -> list[Relation]:
    """Relations of the whole text from each window's (window-relative offsets); best score first."""
    best: dict[tuple[int, int, int, int, str], Relation] = {}
    for win, relations in zip(windows, found):
        for rel in relations:
            hs, he = int(rel["head_start"]) + win.start, int(rel["head_end"]) + win.start
            ts, te = int(rel["tail_start"]) + win.start, int(rel["tail_end"]) + win.start
            key = (hs, he, ts, te, str(rel["relation"]))
            candidate = Relation(
                head=text[hs:he],
                tail=text[ts:te],
                relation=str(rel["relation"]),
                score=float(rel["score"]),
                head_label=str(rel.get("head_label", "")),
                head_start=hs,
                head_end=he,
                tail_label=str(rel.get("tail_label", "")),
                tail_start=ts,
                tail_end=te,
            )
            kept = best.get(key)
            if kept is None or candidate.score > kept.score:
                best[key] = candidate
    return sorted(best.values(), key=lambda r: (-r.score, r.head_start, r.tail_start, r.relation))


def merge_classifications(
    windows: Sequence[Window], found: Sequence[Sequence[Mapping[str, Any]]], classes: Sequence[str]
) -> list[Classification]:
    """One ranking for the text: a window's result as it is, else each class's owned-length-weighted mean."""
    if len(found) == 1:
        return sorted(
            (Classification(label=str(c["label"]), score=float(c["score"])) for c in found[0]),
            key=lambda c: -c.score,
        )
    weights = [max(1, w.own_end - w.own_start) for w in windows]
    total = float(sum(weights))
    sums: dict[str, float] = {}
    for weight, scores in zip(weights, found):
        for c in scores:
            sums[str(c["label"])] = sums.get(str(c["label"]), 0.0) + weight * float(c["score"])
    order = {label: i for i, label in enumerate(classes)}
    merged = [Classification(label=label, score=value / total) for label, value in sums.items()]
    return sorted(merged, key=lambda c: (-c.score, order.get(c.label, len(order))))


def merge_data(found: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The schema's fields for the text from each window's ``{field: (value, confidence)}``.

    A scalar field takes the value with the highest confidence in any window (None when none found one); an
    array field (a list value) takes every window's values in text order, each once.
    """
    if not found:
        return {}
    fields = list(dict.fromkeys(name for window in found for name in window))
    data: dict[str, Any] = {}
    for name in fields:
        values = [window[name] for window in found if name in window]
        if any(isinstance(v[0], list) for v in values):
            seen: list[Any] = []
            for value, _ in values:
                for one in value or []:
                    if one not in seen:
                        seen.append(one)
            data[name] = seen
            continue
        present = [(value, score) for value, score in values if value is not None]
        data[name] = max(present, key=lambda v: v[1])[0] if present else None
    return data


def merge_extraction(
    model_id: str,
    request: Any,
    task: ExtractTask,
    plans: Sequence[Sequence[Window]],
    found: Sequence[Mapping[str, Any]],
    given: Sequence[Sequence[GivenEntity]] | None,
) -> list[ExtractResult]:
    """Each item's result from its windows' findings (see the module docstring for the rules)."""
    results = []
    offset = 0
    for index, (text, item_id, plan) in enumerate(zip(request.texts, request.ids, plans)):
        parts = found[offset : offset + len(plan)]
        offset += len(plan)
        if given is not None:
            entities = [
                Entity(text=text[e.start : e.end], label=e.label, score=e.score, start=e.start, end=e.end)
                for e in sorted(given[index], key=lambda e: (e.start, e.end))
            ]
        else:
            merged = merge_entities(
                text, list(plan), [list(p.get("entities", ())) for p in parts], flat_ner=task.flat_ner
            )
            entities = [Entity(**e) for e in merged]
        relations = merge_relations(text, plan, [p.get("relations", ()) for p in parts])
        classifications: list[Classification] = []
        if any("classifications" in p for p in parts):
            classifications = merge_classifications(plan, [p.get("classifications", ()) for p in parts], task.classes)
        data = merge_data([p["data"] for p in parts if "data" in p])
        results.append(
            ExtractResult(
                model=model_id,
                entities=entities,
                relations=relations,
                classifications=classifications,
                data=data,
                windows=len(plan),
                id=item_id,
            )
        )
    return results


def finite(value: Any) -> float:
    """A score as a float in 0..1 (NaN counts as 0), for results that must be valid JSON."""
    score = float(value)
    return 0.0 if math.isnan(score) else min(1.0, max(0.0, score))
