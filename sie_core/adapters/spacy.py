"""Named-entity recognition with a spaCy pipeline (fixed labels), e.g. ``en_core_web_sm``.

A spaCy NER pipeline finds the labels it was trained on (OntoNotes' 18 for the English pipelines) and no
others. A request names labels in plain words, mapped to the pipeline's labels by :data:`PLAIN_LABELS`
(``person`` → PERSON, ``organization``/``company`` → ORG, ``location`` → GPE and LOC, ``city``/``country`` →
GPE, ``date`` → DATE, ``amount``/``money`` → MONEY, ...; a trailing plural ``s`` is ignored), or with the
pipeline's own labels (``GPE``, ``NORP``, any case); each entity carries the label the caller used (when two
requested labels map to one pipeline label, the first one named). A label the pipeline cannot produce is an
:class:`~sie_core.InvalidInputError` listing the ones it can. With no labels, every entity is returned under
the pipeline's own label.

**Score**: spaCy's NER has no confidences, so every entity has ``score`` 1.0 (found) and ``threshold``
filters nothing.

**Windows**: texts longer than ``max_length`` tokens (spaCy's tokenizer; 1,000 by default) are cut into
overlapping windows like every extractor's; a window's entities equal ``nlp(window_text).ents``, and a text
that fits one window gives exactly ``nlp(text).ents``. Only the ``tok2vec`` and ``ner`` components run (the
tagger, parser and lemmatizer do not change entities).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..catalog import ModelSpec
from ..config import EngineConfig
from ..errors import InvalidInputError
from ..sources import ModelSource
from .base import ExtractorAdapter, stdout_to_stderr

__all__ = ["PLAIN_LABELS", "SpacyExtractor", "map_labels"]

#: Plain words -> the OntoNotes labels of spaCy's English pipelines they stand for.
PLAIN_LABELS: dict[str, tuple[str, ...]] = {
    "person": ("PERSON",),
    "people": ("PERSON",),
    "name": ("PERSON",),
    "per": ("PERSON",),
    "organization": ("ORG",),
    "organisation": ("ORG",),
    "company": ("ORG",),
    "companies": ("ORG",),
    "business": ("ORG",),
    "corporation": ("ORG",),
    "institution": ("ORG",),
    "agency": ("ORG",),
    "location": ("GPE", "LOC"),
    "place": ("GPE", "LOC"),
    "city": ("GPE",),
    "cities": ("GPE",),
    "country": ("GPE",),
    "countries": ("GPE",),
    "state": ("GPE",),
    "nation": ("GPE",),
    "region": ("LOC",),
    "facility": ("FAC",),
    "facilities": ("FAC",),
    "building": ("FAC",),
    "date": ("DATE",),
    "day": ("DATE",),
    "year": ("DATE",),
    "time": ("TIME",),
    "amount": ("MONEY",),
    "money": ("MONEY",),
    "price": ("MONEY",),
    "cost": ("MONEY",),
    "currency": ("MONEY",),
    "percent": ("PERCENT",),
    "percentage": ("PERCENT",),
    "quantity": ("QUANTITY",),
    "quantities": ("QUANTITY",),
    "measurement": ("QUANTITY",),
    "number": ("CARDINAL",),
    "cardinal": ("CARDINAL",),
    "ordinal": ("ORDINAL",),
    "nationality": ("NORP",),
    "nationalities": ("NORP",),
    "religion": ("NORP",),
    "political group": ("NORP",),
    "product": ("PRODUCT",),
    "event": ("EVENT",),
    "law": ("LAW",),
    "language": ("LANGUAGE",),
    "work of art": ("WORK_OF_ART",),
    "works of art": ("WORK_OF_ART",),
}


#: The plain words an error message lists (the table holds more synonyms and plurals).
_SHOWN = (
    "person", "organization", "company", "location", "city", "country", "region", "facility", "date", "time",
    "amount", "money", "percent", "quantity", "number", "ordinal", "nationality", "product", "event", "law",
    "language", "work of art",
)  # fmt: skip


def _plain(label: str) -> str:
    return " ".join(label.strip().lower().replace("_", " ").replace("-", " ").split())


def map_labels(requested: tuple[str, ...], produced: tuple[str, ...], model_id: str) -> tuple[tuple[str, str], ...]:
    """Map requested labels onto a pipeline's labels.

    Args:
        requested: The caller's labels, in order; empty for every label the pipeline has.
        produced: The pipeline's NER labels.
        model_id: For messages.

    Returns:
        (pipeline label, caller's label) pairs; a pipeline label appears once (the first requested label
        that maps to it).

    Raises:
        InvalidInputError: A label the pipeline cannot produce; the message lists what it can.
    """
    if not requested:
        return tuple((label, label) for label in produced)
    by_upper = {label.upper(): label for label in produced}
    pairs: dict[str, str] = {}
    for label in requested:
        plain = _plain(label)
        targets: tuple[str, ...] | None = None
        if label.strip().upper().replace(" ", "_") in by_upper:
            targets = (by_upper[label.strip().upper().replace(" ", "_")],)
        else:
            for key in (plain, plain[:-1] if plain.endswith("s") else None):
                if key and key in PLAIN_LABELS:
                    targets = tuple(t for t in PLAIN_LABELS[key] if t in produced) or None
                    break
        if not targets:
            words = [k for k in _SHOWN if any(t in produced for t in PLAIN_LABELS[k])]
            raise InvalidInputError(
                f"model {model_id!r} has fixed labels and cannot find {label!r}; it finds {', '.join(produced)} "
                f"(or in plain words: {', '.join(words)}); use a zero-shot extractor (GLiNER) for other labels"
            )
        for target in targets:
            pairs.setdefault(target, label)
    return tuple(pairs.items())


class SpacyExtractor(ExtractorAdapter):
    """A spaCy pipeline's named entities; a window's entities equal ``nlp(window).ents``."""

    name = "spacy"

    def __init__(self, spec: ModelSpec, source: ModelSource, config: EngineConfig) -> None:
        super().__init__(spec, source, config)
        import spacy

        with stdout_to_stderr():
            nlp: Any = spacy.load(str(source.path))
        if "ner" not in nlp.pipe_names:
            raise ValueError(f"the spaCy pipeline at {source.path} has no ner component")
        keep = {"ner", *(name for name in nlp.pipe_names if name == "tok2vec" and _listened(nlp, name))}
        for name in [name for name in nlp.pipe_names if name not in keep]:
            nlp.disable_pipe(name)
        self.nlp: Any = nlp
        ner: Any = nlp.get_pipe("ner")
        self.labels: tuple[str, ...] = tuple(ner.labels)
        self.max_length = int(spec.max_length or 1000)
        self.memory_bytes = sum(p.stat().st_size for p in Path(source.path).rglob("*") if p.is_file())

    def word_spans(self, text: str) -> list[tuple[int, int]]:
        """The tokens of spaCy's tokenizer (whitespace tokens left out)."""
        return [(t.idx, t.idx + len(t.text)) for t in self.nlp.tokenizer(text) if not t.is_space]

    def prepare(self, task: Any, model_id: str) -> Any:
        """Map the requested labels onto the pipeline's (see :func:`map_labels`)."""
        from dataclasses import replace

        pairs = map_labels(task.labels, self.labels, model_id)
        return replace(task, labels=tuple(p[0] for p in pairs), label_names=pairs)

    def run(self, inputs: list[Any], task: Any) -> list[dict[str, Any]]:
        """``nlp.pipe`` over the windows; entities of the wanted labels, score 1.0."""
        names = dict(task.label_names)
        docs = self.nlp.pipe([i.text for i in inputs], batch_size=max(1, len(inputs)))
        return [
            {
                "entities": [
                    {"start": e.start_char, "end": e.end_char, "label": names[e.label_], "score": 1.0}
                    for e in doc.ents
                    if e.label_ in names
                ]
            }
            for doc in docs
        ]

    def close(self) -> None:
        """Drop the pipeline."""
        self.nlp = None
        super().close()


def _listened(nlp: Any, name: str) -> bool:
    """Whether the ner component reads this (shared tok2vec) component's output."""
    component = nlp.get_pipe(name)
    listeners = getattr(component, "listener_map", {}) or {}
    return "ner" in listeners
