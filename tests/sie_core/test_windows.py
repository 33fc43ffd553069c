"""Long-text windows for extraction: planning and merging."""

from __future__ import annotations

import bisect
import itertools
import random
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sie_core.windows import Window, merge_entities, plan_windows


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


# --- merge equivalence and speed -------------------------------------------------------------------------


def reference_merge(text, windows, found, *, flat_ner):
    """The original quadratic merge (every candidate checked against every kept entity), kept as the oracle."""
    owned, others = [], []
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

    def clashes(candidate, kept):
        for other in kept:
            same = other["start"] == candidate["start"] and other["end"] == candidate["end"]
            if same and other["label"] == candidate["label"]:
                return True
            if flat_ner and candidate["start"] < other["end"] and other["start"] < candidate["end"]:
                return True
        return False

    kept = []
    by_score = lambda e: -e["score"]  # noqa: E731
    for candidate in sorted(owned, key=by_score) + sorted(others, key=by_score):
        if not clashes(candidate, kept):
            kept.append(candidate)
    kept.sort(key=lambda e: (e["start"], e["end"], e["label"]))
    return kept


_entity = st.fixed_dictionaries(
    {
        "start": st.integers(-2, 30),
        "length": st.integers(-3, 8),  # empty and reversed spans too: the merge must agree on them as well
        "label": st.sampled_from(["a", "b", "c"]),
        "score": st.sampled_from([0.1, 0.5, 0.5, 0.9, 1.0]),  # ties: the order among equals must match
    }
).map(lambda d: {"start": d["start"], "end": d["start"] + d["length"], "label": d["label"], "score": d["score"]})


@st.composite
def _arbitrary_windows(draw):
    count = draw(st.integers(1, 6))
    wins, found = [], []
    for _ in range(count):
        start = draw(st.integers(0, 40))
        own_start = draw(st.integers(0, 60))
        wins.append(Window(start, start + 30, own_start, own_start + draw(st.integers(0, 30))))
        found.append(draw(st.lists(_entity, max_size=12)))
    return wins, found


@settings(max_examples=400, deadline=None)
@given(_arbitrary_windows(), st.booleans())
def test_merge_matches_the_reference_on_arbitrary_windows(case, flat_ner):
    wins, found = case
    text = "".join(chr(ord("a") + i % 26) for i in range(80))
    assert merge_entities(text, wins, found, flat_ner=flat_ner) == reference_merge(text, wins, found, flat_ner=flat_ner)


@settings(max_examples=100, deadline=None)
@given(st.integers(20, 200), st.integers(4, 30), st.integers(0, 10), st.randoms(use_true_random=False), st.booleans())
def test_merge_matches_the_reference_on_planned_windows(n_words, window, overlap, rnd, flat_ner):
    text = " ".join(f"w{i}" for i in range(n_words))
    words = spans(text)
    wins = plan_windows(text, words, window=window, overlap=overlap)
    found = _random_entities(rnd, words, wins, per_window=rnd.randint(0, 15))
    assert merge_entities(text, wins, found, flat_ner=flat_ner) == reference_merge(text, wins, found, flat_ner=flat_ner)


def _random_entities(rnd, words, wins, per_window):
    """Entities of 1-4 words inside each window, offsets relative to the window, as a model returns them."""
    starts = [s for s, _ in words]
    found = []
    for w in wins:
        inside = range(bisect.bisect_left(starts, w.start), bisect.bisect_right(starts, w.end - 1))
        ents = []
        for _ in range(per_window):
            first = rnd.choice(inside)
            last = min(first + rnd.randint(0, 3), inside[-1])
            ents.append(
                {
                    "start": words[first][0] - w.start,
                    "end": words[last][1] - w.start,
                    "label": rnd.choice(["person", "org", "place", "date", "money"]),
                    "score": round(rnd.random(), 2),
                }
            )
        found.append(ents)
    return found


@pytest.mark.parametrize("flat_ner", [True, False])
def test_merging_a_200k_character_extract_is_fast(flat_ner):
    # the size that used to take ~54 s: ~199,000 characters, ~329 windows, ~34,000 raw entities
    rnd = random.Random(7)
    text = " ".join(f"w{i % 100_000:05d}" for i in range(28_500))
    words = spans(text)
    wins = plan_windows(text, words, window=170, overlap=85)
    assert 190_000 < len(text) < 210_000 and 300 < len(wins) < 360
    found = _random_entities(rnd, words, wins, per_window=34_000 // len(wins))
    assert sum(map(len, found)) > 33_000
    started = time.perf_counter()
    merged = merge_entities(text, wins, found, flat_ner=flat_ner)
    elapsed = time.perf_counter() - started
    assert merged
    assert elapsed < 2.0, f"merging took {elapsed:.2f} s"
