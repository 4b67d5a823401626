"""Sectors of a latent space and the support set selected from them (Asperti & Tonelli).

For k ordered variables and a threshold t, a code lies in sector s when |z_i| > t for all
k variables; bit j of s is 1 when the j-th variable is positive. Codes within t of any
axis belong to no sector (id -1), so neighbouring sectors are 2t apart."""

from __future__ import annotations

import numpy as np

# scipy.special, not scipy.stats: the same functions (stats' norm and chi2 call these),
# 0.3 s to import instead of 1.0 s in every command that counts sectors
from scipy.special import chdtrc, ndtr

from analysis.latent import inactive

__all__ = ["NO_SECTOR", "MIN_IN_SECTORS", "effective_k", "sector_variables", "sector_ids",
           "sector_counts", "sector_signs", "gaussian_sector_probabilities", "kl_divergence",
           "density_vs_gaussian", "few_in_sectors_note", "select_support",
           "random_pairs_mse"]

NO_SECTOR = -1
MIN_IN_SECTORS = 0.01  # below this share of codes in any sector, the run warns


def effective_k(k: int, active: int) -> int:
    """k never exceeds the number of active variables: a dead variable sits at 0 for every
    input and would leave every sector empty."""
    return max(1, min(k, active))


def sector_variables(score: np.ndarray, var_mu: np.ndarray, mean_sigma2: np.ndarray,
                     k: int) -> np.ndarray:
    """The k highest-scoring variables among those active by Asperti's rule (var(mu) >= 0.05
    and mean(sigma^2) <= 0.95), best first; k shrinks to their number. Burda's looser rule
    (var(mu) > 0.01) would admit a variable with var(mu) = 0.02, whose sd of 0.14 almost
    never passes |z| > 0.5, and that empties every sector."""
    active = ~inactive(var_mu, mean_sigma2)
    ranked = [v for v in np.argsort(-np.asarray(score), kind="stable") if active[v]]
    return np.array(ranked[:effective_k(k, int(active.sum()))], dtype=np.int64)


def sector_ids(z: np.ndarray, variables, threshold: float) -> np.ndarray:
    """Each code's sector: bit j set where variable `variables[j]` is positive; NO_SECTOR
    where any of them lies within `threshold` of 0."""
    v = np.asarray(z)[:, list(variables)]
    ids = np.zeros(len(v), np.int64)
    for j in range(v.shape[1]):  # a column at a time: half the time of a (n, k) int array
        ids |= (v[:, j] > 0).astype(np.int64) << j
    ids[(np.abs(v) <= threshold).any(axis=1)] = NO_SECTOR
    return ids


def sector_counts(ids: np.ndarray, k: int) -> np.ndarray:
    """Counts of all 2^k sectors, empty ones included."""
    ids = np.asarray(ids)
    return np.bincount(ids[ids >= 0], minlength=2**k)


def sector_signs(sector: int, k: int) -> str:
    """'+-+...' for variable order 0..k-1."""
    return "".join("+" if sector >> j & 1 else "-" for j in range(k))


def gaussian_sector_probabilities(mean: np.ndarray, sd: np.ndarray,
                                  threshold: float) -> np.ndarray:
    """P(sector s) for s = 0..2^k-1 when the k sector variables are independent Gaussians of
    the given means and sds: a product over variables of P(z_j > t) (bit j set) or
    P(z_j < -t). The rest, 1 - sum, is the chance of lying in no sector."""
    p = np.ones(1)
    for m, s in zip(np.asarray(mean, np.float64), np.asarray(sd, np.float64), strict=True):
        above = ndtr(-(threshold - m) / s)  # the normal's survival function
        below = ndtr((-threshold - m) / s)
        p = np.concatenate([p * below, p * above])  # bit j is the new high half
    return p


def kl_divergence(q: np.ndarray, p: np.ndarray) -> float:
    """KL(q || p) of two distributions over the same cells (0 log 0 = 0)."""
    q, p = np.asarray(q, np.float64), np.asarray(p, np.float64)
    nz = q > 0
    return float(np.sum(q[nz] * np.log(q[nz] / p[nz])))


def density_vs_gaussian(counts: np.ndarray, outside: int, probabilities: np.ndarray,
                        draws: int = 200, seed: int = 0) -> dict[str, float]:
    """How far sector counts are from what independent Gaussian codes of the same means and
    variances would give, and how far sampling noise alone would put them:
    - `kl_to_gaussian`: KL(observed || expected) over the sectors, given a code is in one;
    - `kl_gaussian_p99`: the 99th percentile of that KL for as many codes drawn from the
      Gaussian reference (multinomial draws): above it, unevenness is not noise;
    - `chi2`, `chi2_pvalue`: Pearson's test over the sectors plus the no-sector cell;
    - `expected_in_sectors` beside `in_sectors`: the share of codes in any sector."""
    counts = np.asarray(counts, np.float64)
    inside = counts.sum()
    total = inside + outside
    cells = np.append(probabilities, max(1.0 - probabilities.sum(), 0.0))
    observed = np.append(counts, outside)
    expected = total * cells
    used = expected > 0
    chi2 = float((((observed - expected) ** 2)[used] / expected[used]).sum())
    conditional = probabilities / probabilities.sum()
    rng = np.random.default_rng(seed)
    noise = [kl_divergence(c / inside, conditional)
             for c in rng.multinomial(int(inside), conditional, size=draws)] if inside else [0.0]
    return {"kl_to_gaussian": kl_divergence(counts / max(inside, 1), conditional),
            "kl_gaussian_p99": float(np.quantile(noise, 0.99)),
            "chi2": chi2, "chi2_pvalue": float(chdtrc(int(used.sum()) - 1, chi2)),
            "in_sectors": float(inside / max(total, 1)),
            "expected_in_sectors": float(probabilities.sum())}


def total_variation(q: np.ndarray, p: np.ndarray) -> float:
    """Half the L1 distance of two distributions over the same cells: the share of the mass
    that would have to move to turn one into the other."""
    return 0.5 * float(np.abs(np.asarray(q, np.float64) - np.asarray(p, np.float64)).sum())


def density_vs_prior(counts: np.ndarray, outside: int, k: int, threshold: float,
                     draws: int = 200, seed: int = 0) -> dict[str, float]:
    """How far the codes' sector occupancy is from the prior's, N(0, I) on the k sector
    variables, over every sector and the no-sector cell: the total variation (an effect
    size: the share of codes that would have to move) and its 99th percentile for as many
    codes drawn from the prior (multinomial draws): above it, the mismatch is not noise."""
    prior = gaussian_sector_probabilities(np.zeros(k), np.ones(k), threshold)
    cells = np.append(prior, max(1.0 - prior.sum(), 0.0))
    observed = np.append(np.asarray(counts, np.float64), outside)
    total = int(observed.sum())
    rng = np.random.default_rng(seed)
    noise = [total_variation(c / total, cells) for c in rng.multinomial(total, cells, draws)] \
        if total else [0.0]
    return {"tv_to_prior": total_variation(observed / max(total, 1), cells),
            "tv_prior_p99": float(np.quantile(noise, 0.99)),
            "prior_in_sectors": float(prior.sum())}


def few_in_sectors_note(in_sectors: float, threshold: float, sd: np.ndarray) -> str | None:
    """Why almost no code lies in any sector, when that is so."""
    if in_sectors >= MIN_IN_SECTORS:
        return None
    spread = ", ".join(f"{v:.2f}" for v in sd)
    return (f"only {in_sectors:.2%} of codes lie in any sector: each must pass |z| > "
            f"{threshold} on all {len(sd)} sector variables, whose sds are {spread}; "
            "lower --threshold or --k")


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


def random_pairs_mse(images: np.ndarray, pairs: int, seed: int = 0) -> float:
    """Mean per-pixel MSE over `pairs` random pairs of distinct images (the baseline)."""
    rng = np.random.default_rng(seed)
    x = np.asarray(images)
    i = rng.integers(0, len(x), pairs)
    j = (i + rng.integers(1, len(x), pairs)) % len(x)
    a = x[i].reshape(pairs, -1).astype(np.float64)
    b = x[j].reshape(pairs, -1).astype(np.float64)
    return float(((a - b) ** 2).mean())
