"""Splitting one batch into length-sorted sub-batches so that short texts are not padded to long ones.

Concurrent callers bring texts of any length into one batch; run as one forward pass, every text is
padded to the longest. On a CPU that wasted compute costs more than an extra forward pass, so a batch is
cut into groups of similar length wherever that lowers the estimated cost: ``fixed_cost`` per forward
pass (in token-equivalents) plus, per group, items x longest length. On GPUs the fixed cost is large and
batches stay whole.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["fixed_cost_for", "length_groups"]


def fixed_cost_for(device: str) -> int:
    """Estimated cost of one extra forward pass, in padded tokens, on ``device``."""
    return 128 if device == "cpu" else 4096


def length_groups(lengths: Sequence[int], fixed_cost: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped into the cheapest length-sorted sub-batches (longest group first).

    Dynamic programming over the lengths sorted longest first: a group ``i..j`` costs
    ``fixed_cost + (j - i) * lengths[i]``. O(n^2) for a batch of n, which is at most a few hundred.
    """
    n = len(lengths)
    if n <= 1:
        return [list(range(n))]
    order = sorted(range(n), key=lambda i: -lengths[i])
    longest = [lengths[i] for i in order]
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        for start in range(end):
            cost = best[start] + fixed_cost + (end - start) * longest[start]
            if cost < best[end]:
                best[end] = cost
                cut[end] = start
    groups = []
    end = n
    while end > 0:
        start = cut[end]
        groups.append(order[start:end])
        end = start
    return groups[::-1]
