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

import bisect
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
    taken = _Kept(flat_ner)
    by_score = lambda e: -e["score"]  # noqa: E731
    for candidate in sorted(owned, key=by_score) + sorted(others, key=by_score):
        if taken.add(candidate["start"], candidate["end"], candidate["label"]):
            kept.append(candidate)
    kept.sort(key=lambda e: (e["start"], e["end"], e["label"]))
    return kept


class _Kept:
    """The spans kept so far, answering "does this candidate clash?" in O(log n).

    A candidate clashes with a kept entity of the same span and label, and, with ``flat_ner``, with any kept
    entity it overlaps (``a.start < b.end and b.start < a.end``). Under ``flat_ner`` the kept non-empty spans
    never overlap each other, so sorted by start they are sorted by end too: the only one that can overlap a
    query is the last one starting before the query ends.
    """

    def __init__(self, flat_ner: bool) -> None:
        self._flat_ner = flat_ner
        self._exact: set[tuple[int, int, Any]] = set()
        self._starts: list[int] = []
        self._ends: list[int] = []
        # Empty or reversed spans (a model should never return them) can sit inside others; checked one by one.
        self._degenerate: list[tuple[int, int]] = []

    def add(self, start: int, end: int, label: Any) -> bool:
        """Keep the span unless it clashes; return whether it was kept."""
        key = (start, end, label)
        if key in self._exact:
            return False
        if self._flat_ner:
            i = bisect.bisect_left(self._starts, end)  # kept spans [0, i) start before this one ends
            if i and self._ends[i - 1] > start:
                return False
            if any(start < d_end and d_start < end for d_start, d_end in self._degenerate):
                return False
            if start < end:
                self._starts.insert(i, start)
                self._ends.insert(i, end)
            else:
                self._degenerate.append((start, end))
        self._exact.add(key)
        return True
