"""Long-text windows for extraction: planning and merging."""

from __future__ import annotations

import itertools
import re

from sie_core.windows import merge_entities, plan_windows


def spans(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"\w+(?:[-_]\w+)*|\S", text)]


def test_short_text_is_one_window_covering_the_whole_text():
    text = "  Alice met Bob.  "
    (win,) = plan_windows(text, spans(text), window=10, overlap=2)
    assert (win.start, win.end, win.own_start, win.own_end) == (0, len(text), 0, len(text))


def test_windows_cover_every_word_and_respect_the_size():
    text = " ".join(f"w{i}" for i in range(100))
    words = spans(text)
    wins = plan_windows(text, words, window=20, overlap=4)
    assert len(wins) > 1
    covered = set()
    for w in wins:
        inside = [i for i, (s, e) in enumerate(words) if s >= w.start and e <= w.end]
        assert len(inside) <= 20
        covered.update(inside)
    assert covered == set(range(100))
    # ownership tiles the text exactly once
    assert wins[0].own_start == 0 and wins[-1].own_end == len(text)
    for a, b in itertools.pairwise(wins):
        assert a.own_end == b.own_start
        assert b.start < a.end  # windows overlap


def test_merge_shifts_offsets_and_keeps_text_identical_to_the_input():
    text = " ".join(["Alice works at Acme."] * 30)
    words = spans(text)
    wins = plan_windows(text, words, window=16, overlap=4)
    found = []
    for w in wins:
        chunk = text[w.start : w.end]
        found.append(
            [{"start": m.start(), "end": m.end(), "label": "person", "score": 0.9} for m in re.finditer("Alice", chunk)]
        )
    merged = merge_entities(text, wins, found, flat_ner=True)
    assert [e["start"] for e in merged] == [m.start() for m in re.finditer("Alice", text)]
    assert all(text[e["start"] : e["end"]] == e["text"] == "Alice" for e in merged)


def test_entities_seen_only_by_the_non_owning_window_survive_unless_they_clash():
    text = " ".join(f"w{i}" for i in range(40))
    words = spans(text)
    wins = plan_windows(text, words, window=24, overlap=8)
    assert len(wins) == 2
    seam_word = words[21]  # inside both windows; owned by the second
    rel = lambda w, s, e: {"start": s - w.start, "end": e - w.start}  # noqa: E731
    only_first = {**rel(wins[0], *seam_word), "label": "x", "score": 0.4}
    found = [[only_first], []]
    merged = merge_entities(text, wins, found, flat_ner=True)
    assert [(e["start"], e["end"]) for e in merged] == [seam_word]
    # when the owner found an overlapping span, the owner's wins under flat_ner
    owner = {**rel(wins[1], seam_word[0], words[22][1]), "label": "y", "score": 0.3}
    merged = merge_entities(text, wins, [[only_first], [owner]], flat_ner=True)
    assert [(e["start"], e["end"], e["label"]) for e in merged] == [(seam_word[0], words[22][1], "y")]
    # nested mode keeps both, but never the same span and label twice
    dup = {**rel(wins[1], *seam_word), "label": "x", "score": 0.5}
    merged = merge_entities(text, wins, [[only_first], [owner, dup]], flat_ner=False)
    assert sorted((e["start"], e["end"], e["label"]) for e in merged) == sorted(
        [(seam_word[0], words[22][1], "y"), (*seam_word, "x")]
    )
