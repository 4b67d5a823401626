"""Distribution-level coverage of real data by generated data, by k nearest neighbours in a
feature space: improved precision and recall (Kynkäänniemi et al. 2019) and density and
coverage (Naeem et al. 2020), computed as the authors' `prdc` package does (Euclidean
distances, a point's radius = distance to its k-th nearest neighbour in its own set,
"inside" = strictly closer than the radius). Pure numpy, in row blocks: memory
O(block x n), not O(n^2)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["knn_radii", "prdc"]

BLOCK = 1024


def distance_blocks(a: np.ndarray, b: np.ndarray,
                    block: int = BLOCK) -> Iterator[tuple[slice, np.ndarray]]:
    """(rows of a, Euclidean distances from those rows to every row of b)."""
    b_sq = np.einsum("ij,ij->i", b, b)
    for start in range(0, len(a), block):
        rows = a[start:start + block]
        sq = np.einsum("ij,ij->i", rows, rows)[:, None] + b_sq[None, :] - 2.0 * rows @ b.T
        yield slice(start, start + len(rows)), np.sqrt(np.maximum(sq, 0.0))


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row of x to its k-th nearest other row."""
    radii = np.empty(len(x))
    for rows, d in distance_blocks(x, x):
        # the row itself is at distance 0: the (k+1)-th smallest is the k-th other
        radii[rows] = np.partition(d, k, axis=1)[:, k]
    return radii


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage of `fake` against `real` (rows = samples)."""
    real = np.asarray(real, np.float64)
    fake = np.asarray(fake, np.float64)
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"prdc: need more than k={k} samples on each side "
                         f"(real {len(real)}, fake {len(fake)})")
    real_radii, fake_radii = knn_radii(real, k), knn_radii(fake, k)
    inside_count = np.zeros(len(fake))  # real balls each fake lies in
    recalled = np.zeros(len(real), dtype=bool)  # real points inside some fake ball
    covered = np.zeros(len(real), dtype=bool)  # real balls holding some fake
    for rows, d in distance_blocks(real, fake):  # d: (real block, fake)
        inside = d < real_radii[rows, None]
        inside_count += inside.sum(axis=0)
        covered[rows] = inside.any(axis=1)
        recalled[rows] = (d < fake_radii[None, :]).any(axis=1)
    return {"precision": float((inside_count > 0).mean()),
            "recall": float(recalled.mean()),
            "density": float(inside_count.mean() / k),
            "coverage": float(covered.mean())}
