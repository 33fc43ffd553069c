"""Length-grouped sub-batches."""

from __future__ import annotations

from sie_core.padding import length_groups


def cost(groups, lengths, fixed):
    return sum(fixed + len(g) * max(lengths[i] for i in g) for g in groups)


def test_every_index_appears_once():
    lengths = [5, 40, 7, 38, 6, 41, 12]
    groups = length_groups(lengths, 10)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))


def test_similar_lengths_stay_together_and_outliers_split_off():
    lengths = [50, 6, 7, 5, 6, 8, 7, 6, 49]
    groups = length_groups(lengths, 20)
    assert [sorted(g) for g in groups] == [[0, 8], [1, 2, 3, 4, 5, 6, 7]]
    assert cost(groups, lengths, 20) < cost([list(range(len(lengths)))], lengths, 20)


def test_a_large_fixed_cost_keeps_one_batch():
    lengths = [50, 6, 7, 5, 49]
    assert [sorted(g) for g in length_groups(lengths, 10_000)] == [[0, 1, 2, 3, 4]]


def test_small_inputs():
    assert length_groups([], 10) == [[]]
    assert length_groups([3], 10) == [[0]]


def test_groups_are_optimal_on_a_small_case():
    import itertools

    lengths = [30, 3, 17, 9, 25]
    best = min(
        cost(groups, lengths, 12)
        for cuts in itertools.product([0, 1], repeat=len(lengths) - 1)
        for order in [sorted(range(5), key=lambda i: -lengths[i])]
        for groups in [_split(order, cuts)]
    )
    assert cost(length_groups(lengths, 12), lengths, 12) == best


def _split(order, cuts):
    groups, current = [], [order[0]]
    for index, cut in zip(order[1:], cuts):
        if cut:
            groups.append(current)
            current = []
        current.append(index)
    return [*groups, current]
