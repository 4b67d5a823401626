"""Intervals over items for a number that is a mean over items (a relocation error over the
held-out rows, a regeneration error over images), where a measurement has one seed.

A Poisson bootstrap (Hanley & MacGibbon 2006; Chamandy et al. 2012): each item enters each
of REPLICATES resamples with a Poisson(1) weight, so a resample's mean is sum(w v) / sum(w),
and sums over any partition of the items add up. The weights are a hash of the item's index
and the replicate's number, not a random stream: every partition (Ray Data blocks, one
process) gives every item the same weights, and the numbers of one measurement (M, the
target's own error, another map's M) are resampled together, item for item."""

from __future__ import annotations

import numpy as np

REPLICATES = 200
CONFIDENCE = 0.95
# Poisson(1)'s CDF at 0..9: a weight is the number of thresholds below the item's uniform.
_POISSON_CDF = np.cumsum([np.exp(-1.0) / np.prod(np.arange(1, k + 1)) for k in range(10)])


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A 64-bit integer hash (Steele et al.'s SplitMix64 finaliser), elementwise."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)).astype(np.uint64)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def poisson_weights(index: np.ndarray, replicates: int = REPLICATES) -> np.ndarray:
    """(replicates, n) Poisson(1) weights of the items `index`, the same for an item wherever
    it is counted."""
    index = np.asarray(index, np.uint64)
    key = index[None, :] * np.uint64(replicates) + np.arange(replicates, dtype=np.uint64)[:, None]
    uniform = (_splitmix64(key) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.searchsorted(_POISSON_CDF, uniform, side="right").astype(np.float64)


# The unweighted count and sums ride along under this prefix (see resample_means).
WHOLE = "whole:"


def resample_sums(index: np.ndarray, values: dict[str, np.ndarray],
                  replicates: int = REPLICATES) -> dict[str, np.ndarray]:
    """Per replicate, the weighted count ("n") and the weighted sum of each value over the
    items `index`, and the plain count and sums (WHOLE): add these over partitions, then
    `resample_means`."""
    w = poisson_weights(index, replicates)
    values = {k: np.asarray(v, np.float64) for k, v in values.items()}
    whole = {"n": np.full(replicates, float(len(index))),
             **{k: np.full(replicates, v.sum()) for k, v in values.items()}}
    return {"n": w.sum(axis=1), **{k: w @ v for k, v in values.items()},
            **{WHOLE + k: v for k, v in whole.items()}}


def resample_means(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each value's mean in each replicate, from summed `resample_sums`. A replicate that
    drew no item (every weight 0: chance e^-n, a set of 8 items has one in 200 replicates
    about 7% of the time) has no mean of its own; it counts as the whole set's mean, not as
    0. Which replicates are empty is known only once every partition is added, so this is
    the one place that can say it."""
    n, empty = sums["n"], sums["n"] == 0
    return {k: np.where(empty, sums[WHOLE + k] / np.maximum(sums[WHOLE + "n"], 1.0),
                        v / np.where(empty, 1.0, n))
            for k, v in sums.items() if k != "n" and not k.startswith(WHOLE)}


def resampled_mean(values: np.ndarray, stream: int = 0,
                   replicates: int = REPLICATES) -> np.ndarray:
    """The replicate means of one set of items held whole (a support set's errors, a
    generator's samples'); `stream` keeps two sets of one measurement independent (item i of
    each set gets other weights)."""
    index = np.arange(len(values), dtype=np.uint64) + np.uint64(stream) * np.uint64(1 << 40)
    return resample_means(resample_sums(index, {"v": values}, replicates))["v"]


def percentile_interval(replicate_means, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The central `confidence` interval of a number's replicate means."""
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(np.asarray(replicate_means, np.float64), [tail, 100 - tail])
    return float(lo), float(hi)
