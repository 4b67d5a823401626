"""Streaming per-column moments with the exact pairwise merge of Chan et al."""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

import numpy as np

__all__ = ["Moments", "merge_all"]

@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations (M2) of each column, in float64."""

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @staticmethod
    def of(x: np.ndarray) -> Moments:
        x = np.asarray(x, dtype=np.float64)
        x = x.reshape(x.shape[0], int(np.prod(x.shape[1:])))
        mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
        return Moments(len(x), mean, ((x - mean) ** 2).sum(axis=0))

    def merge(self, other: Moments) -> Moments:
        if self.n == 0:
            return other
        if other.n == 0:
            return self
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.n * other.n / n)
        return Moments(n, mean, m2)

    @property
    def var(self) -> np.ndarray:
        """Population variance (ddof=0), as numpy.var."""
        return self.m2 / self.n


def merge_all(parts) -> Moments:
    return reduce(Moments.merge, parts)
