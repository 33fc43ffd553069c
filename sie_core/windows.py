"""Splitting long texts into overlapping windows for extraction, and merging what each window found.

A text longer than the model's window (counted in the model's own words) is cut into windows of at most
``window`` words that overlap by ``overlap`` words. Each window *owns* the words from the middle of its
overlap with the previous window to the middle of its overlap with the next one. Entities are kept first
from the window that owns their start (it saw them with context on both sides), best score first (the
greedy rule GLiNER itself uses, which only matters where two windows' entities cross the seam); entities a
window found outside its own part are added too unless they clash with one already kept (same span and
label, or any overlap when ``flat_ner``). Offsets always point into the original text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Window", "merge_entities", "plan_windows"]


@dataclass(frozen=True)
class Window:
    """One window of a text.

    Attributes:
        start: Character offset of the window in the original text.
        end: Character offset one past the window's end.
        own_start: First character offset this window owns.
        own_end: Offset one past the last character this window owns.
    """

    start: int
    end: int
    own_start: int
    own_end: int


def plan_windows(text: str, word_spans: list[tuple[int, int]], window: int, overlap: int) -> list[Window]:
    """Cut a text into windows of at most ``window`` words overlapping by ``overlap`` words.

    A text that fits in one window is returned whole (offsets 0..len(text)), so short texts are seen
    exactly as the model alone would see them.
    """
    n = len(word_spans)
    if n <= window:
        return [Window(0, len(text), 0, len(text))]
    overlap = max(0, min(overlap, window // 2))
    step = window - overlap
    starts = list(range(0, n - window, step)) + [n - window]
    windows: list[tuple[int, int]] = []
    for first in starts:
        if windows and first <= windows[-1][0]:
            continue
        windows.append((first, first + window))
    result = []
    for i, (first, stop) in enumerate(windows):
        if i == 0:
            own_start = 0
        else:
            prev_stop = windows[i - 1][1]
            own_start = word_spans[(first + prev_stop) // 2][0]
        if i == len(windows) - 1:
            own_end = len(text)
        else:
            next_first = windows[i + 1][0]
            own_end = word_spans[(next_first + stop) // 2][0]
        result.append(Window(word_spans[first][0], word_spans[stop - 1][1], own_start, own_end))
    return result


def merge_entities(
    text: str, windows: list[Window], found: list[list[dict[str, Any]]], *, flat_ner: bool
) -> list[dict[str, Any]]:
    """Merge each window's entities (offsets relative to the window) into entities of the whole text.

    Returns:
        Entity dicts (text, label, score, start, end) sorted by start, then end.
    """
    owned: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for win, entities in zip(windows, found):
        for ent in entities:
            start, end = int(ent["start"]) + win.start, int(ent["end"]) + win.start
            item = {
                "text": text[start:end],
                "label": ent["label"],
                "score": float(ent["score"]),
                "start": start,
                "end": end,
            }
            (owned if win.own_start <= start < win.own_end else others).append(item)
    kept: list[dict[str, Any]] = []
    by_score = lambda e: -e["score"]  # noqa: E731
    for candidate in sorted(owned, key=by_score) + sorted(others, key=by_score):
        if not _clashes(candidate, kept, flat_ner):
            kept.append(candidate)
    kept.sort(key=lambda e: (e["start"], e["end"], e["label"]))
    return kept


def _clashes(candidate: dict[str, Any], kept: list[dict[str, Any]], flat_ner: bool) -> bool:
    for other in kept:
        same = other["start"] == candidate["start"] and other["end"] == candidate["end"]
        if same and other["label"] == candidate["label"]:
            return True
        if flat_ner and candidate["start"] < other["end"] and other["start"] < candidate["end"]:
            return True
    return False
