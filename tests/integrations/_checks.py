"""Comparisons with the in-process engine, shared by the integration modules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from sie_core import ExtractResult, ScoreResult

TOLERANCE = 1e-5


def assert_close(got: Any, want: Any, tolerance: float = TOLERANCE) -> None:
    """Two vectors (or matrices) have the same shape and agree within ``tolerance``."""
    got_array, want_array = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got_array.shape == want_array.shape
    assert float(np.abs(got_array - want_array).max(initial=0.0)) <= tolerance


def cosine(a: Any, b: Any) -> float:
    """Cosine similarity of two vectors."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def ranked_texts(result: ScoreResult, texts: Sequence[str]) -> list[str]:
    """The engine's ranking as texts, best first."""
    return [texts[e.index] for e in result.scores]


def assert_ranking(got: Iterable[tuple[str, float]], result: ScoreResult, texts: Sequence[str]) -> None:
    """(text, score) pairs from an integration are the engine's ranking, raw scores included, best first."""
    pairs = list(got)
    want = [(texts[e.index], e.score) for e in result.scores][: len(pairs)]
    assert [t for t, _ in pairs] == [t for t, _ in want]
    assert_close([s for _, s in pairs], [s for _, s in want])


def entity_tuples(entities: Iterable[Any]) -> list[tuple[str, str, int | None, int | None]]:
    """(text, label, start, end) of entities given as dicts or objects, in order."""
    out = []
    for e in entities:
        get = e.get if isinstance(e, Mapping) else lambda k, e=e: getattr(e, k, None)
        out.append((str(get("text")), str(get("label")), get("start"), get("end")))
    return out


def assert_entities(got: Iterable[Any], want: ExtractResult, *, offsets: bool = True) -> None:
    """Entities from an integration are the engine's: same spans, labels and (within tolerance) scores."""
    items = list(got)
    expected = [(e.text, e.label, e.start, e.end) for e in want.entities]
    assert expected, "the engine found no entities: the check would be empty"
    mine = entity_tuples(items)
    if not offsets:
        mine, expected = [m[:2] + (None, None) for m in mine], [x[:2] + (None, None) for x in expected]
    assert mine == expected
    scores = [e["score"] if isinstance(e, Mapping) else e.score for e in items]
    assert_close(scores, [e.score for e in want.entities])
