"""Sectors of a latent space and the support set selected from them (Asperti & Tonelli).

For k ordered variables and a threshold t, a code lies in sector s when |z_i| > t for all
k variables; bit j of s is 1 when the j-th variable is positive. Codes within t of any
axis belong to no sector (id -1), so neighbouring sectors are 2t apart."""

from __future__ import annotations

import numpy as np

NO_SECTOR = -1


def effective_k(k: int, active: int) -> int:
    """k never exceeds the number of active variables: a dead variable sits at 0 for every
    input and would leave every sector empty."""
    return max(1, min(k, active))


def sector_variables(score: np.ndarray, var_mu: np.ndarray, k: int,
                     active_threshold: float = 0.01) -> np.ndarray:
    """The k highest-scoring active variables (var(mu) > 0.01), best first. A dead
    variable sits at 0 for every input and would leave every sector empty, whatever its
    score, so only active ones qualify and k shrinks to their number."""
    active = np.asarray(var_mu) > active_threshold
    ranked = [v for v in np.argsort(-np.asarray(score), kind="stable") if active[v]]
    return np.array(ranked[:effective_k(k, int(active.sum()))], dtype=np.int64)


def sector_ids(z: np.ndarray, variables, threshold: float) -> np.ndarray:
    v = np.asarray(z)[:, list(variables)]
    bits = (v > 0).astype(np.int64) << np.arange(v.shape[1], dtype=np.int64)
    ids = bits.sum(axis=1)
    ids[(np.abs(v) <= threshold).any(axis=1)] = NO_SECTOR
    return ids


def sector_counts(ids: np.ndarray, k: int) -> np.ndarray:
    """Counts of all 2^k sectors, empty ones included."""
    ids = np.asarray(ids)
    return np.bincount(ids[ids >= 0], minlength=2**k)


def sector_signs(sector: int, k: int) -> str:
    """'+-+...' for variable order 0..k-1."""
    return "".join("+" if sector >> j & 1 else "-" for j in range(k))


def select_support(ids: np.ndarray, size: int, seed: int = 0,
                   eligible: np.ndarray | None = None) -> np.ndarray:
    """Row positions of the support set: one random member of each non-empty sector
    (the most crowded sectors first when there are more sectors than `size`), then filled
    up to `size` with further random members of the most crowded sectors, in turn."""
    rng = np.random.default_rng(seed)
    ids = np.asarray(ids)
    ok = ids >= 0 if eligible is None else (ids >= 0) & np.asarray(eligible, dtype=bool)
    members: dict[int, list[int]] = {}
    for pos in np.flatnonzero(ok):
        members.setdefault(int(ids[pos]), []).append(int(pos))
    # Shuffle each sector's members once: taking them in that order is random selection.
    pools = {s: list(rng.permutation(m)) for s, m in sorted(members.items())}
    crowded = sorted(pools, key=lambda s: (-len(pools[s]), s))
    chosen = [pools[s].pop(0) for s in crowded[:size]]
    while len(chosen) < size and any(pools[s] for s in crowded):
        for s in crowded:
            if pools[s] and len(chosen) < size:
                chosen.append(pools[s].pop(0))
    return np.array(chosen, dtype=np.int64)


def mean_pairwise_mse(images: np.ndarray) -> float:
    """Mean over all pairs i < j of the per-pixel MSE between images i and j, in closed form:
    sum_{i<j} |x_i - x_j|^2 = n sum_i |x_i|^2 - |sum_i x_i|^2."""
    x = np.asarray(images, np.float64).reshape(len(images), -1)
    n = len(x)
    total = n * (x**2).sum() - (x.sum(axis=0) ** 2).sum()
    return float(total / (n * (n - 1) / 2) / x.shape[1])


def random_pairs_mse(images: np.ndarray, pairs: int, seed: int = 0) -> float:
    """Mean per-pixel MSE over `pairs` random pairs of distinct images (the baseline)."""
    rng = np.random.default_rng(seed)
    x = np.asarray(images)
    i = rng.integers(0, len(x), pairs)
    j = (i + rng.integers(1, len(x), pairs)) % len(x)
    a = x[i].reshape(pairs, -1).astype(np.float64)
    b = x[j].reshape(pairs, -1).astype(np.float64)
    return float(((a - b) ** 2).mean())
