"""Anchor rows a map is fitted on, chosen in the source space without looking at the target:
random rows, and farthest-point sampling (each new anchor the row farthest from those
already chosen, which spreads a budget over the whole occupied space). The support set of
the sectors is the third choice (analysis.sectors.select_support)."""

from __future__ import annotations

import numpy as np

__all__ = ["random_rows", "farthest_point_rows"]


def random_rows(n: int, k: int, seed: int = 0) -> np.ndarray:
    """k distinct positions of n, uniformly at random."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(k, n), replace=False))


def farthest_point_rows(x: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k positions of the rows of x by greedy farthest-point sampling (Euclidean), from a
    random first row; ties go to the lowest position. O(n k d) time, O(n) extra memory."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    k = min(k, n)
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = np.random.default_rng(seed).integers(n)
    nearest = np.full(n, np.inf)  # squared distance of each row to its nearest anchor
    for i in range(1, k):
        nearest = np.minimum(nearest, ((x - x[chosen[i - 1]]) ** 2).sum(axis=1))
        chosen[i] = int(np.argmax(nearest))
    return chosen
