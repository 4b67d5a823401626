"""Linear maps between latent spaces, fitted in closed form from sufficient statistics.

A map sends row vectors x (dx,) to y = x @ A + b (dy,). Every estimator is a function of
the sufficient statistics (n, sums, X^T X, X^T Y, Y^T Y), so fitting on a support set,
on any rows, or streaming over a whole encoded dataset is the same computation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg

STATS_CHUNK = 8192  # rows per float64 product in SufficientStats.of


@dataclass(frozen=True)
class SufficientStats:
    n: int
    sx: np.ndarray  # (dx,)
    sy: np.ndarray  # (dy,)
    sxx: np.ndarray  # (dx, dx)
    sxy: np.ndarray  # (dx, dy)
    syy: np.ndarray  # (dy, dy)

    @staticmethod
    def of(x: np.ndarray, y: np.ndarray, rows: np.ndarray | None = None) -> SufficientStats:
        """Statistics of the pairs (x[i], y[i]), of those where the boolean mask `rows` is
        true when given (masked chunk by chunk: no masked copy of the whole block)."""
        if len(x) != len(y):
            raise ValueError(f"{len(x)} source rows but {len(y)} target rows")
        x, y = np.asarray(x), np.asarray(y)
        dx, dy = x.shape[1], y.shape[1]
        sx, sy, sxx, sxy, syy = (np.zeros(dx), np.zeros(dy), np.zeros((dx, dx)),
                                 np.zeros((dx, dy)), np.zeros((dy, dy)))
        # float64 chunk by chunk: a whole-block float64 copy costs more in fresh pages than
        # the products themselves, and a chunk's buffers are reused from one to the next.
        for i in range(0, len(x), STATS_CHUNK):
            part = slice(i, i + STATS_CHUNK)
            keep = part if rows is None else np.flatnonzero(rows[part]) + i
            a, b = x[keep].astype(np.float64), y[keep].astype(np.float64)
            sx += a.sum(0)
            sy += b.sum(0)
            sxx += a.T @ a
            sxy += a.T @ b
            syy += b.T @ b
        n = len(x) if rows is None else int(np.count_nonzero(rows))
        return SufficientStats(n, sx, sy, sxx, sxy, syy)

    def __add__(self, other: SufficientStats) -> SufficientStats:
        return SufficientStats(self.n + other.n, self.sx + other.sx, self.sy + other.sy,
                               self.sxx + other.sxx, self.sxy + other.sxy, self.syy + other.syy)

    @property
    def mean_x(self) -> np.ndarray:
        return self.sx / self.n

    @property
    def mean_y(self) -> np.ndarray:
        return self.sy / self.n

    def centred(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cxx, Cxy, Cyy: scatter matrices about the means (computed once, in float64)."""
        mx, my = self.mean_x, self.mean_y
        return (self.sxx - self.n * np.outer(mx, mx), self.sxy - self.n * np.outer(mx, my),
                self.syy - self.n * np.outer(my, my))


@dataclass(frozen=True)
class LinearMap:
    estimator: str
    A: np.ndarray  # (dx, dy)
    b: np.ndarray  # (dy,)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) @ self.A + self.b

    def save(self, path: str | Path) -> None:
        np.savez(path, A=self.A, b=self.b, estimator=self.estimator)

    @staticmethod
    def load(path: str | Path) -> LinearMap:
        with np.load(path) as f:
            return LinearMap(str(f["estimator"]), f["A"], f["b"])


def solve_spd(m: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve m @ a = rhs for symmetric positive (semi)definite m without an inverse."""
    try:
        return scipy.linalg.solve(m, rhs, assume_a="pos")
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        # Singular (fewer rows than dimensions, dead variables): minimum-norm solution.
        return scipy.linalg.lstsq(m, rhs)[0]


def ols(s: SufficientStats) -> LinearMap:
    cxx, cxy, _ = s.centred()
    a = solve_spd(cxx, cxy)
    return LinearMap("ols", a, s.mean_y - s.mean_x @ a)


def ols_nobias(s: SufficientStats) -> LinearMap:
    return LinearMap("ols_nobias", solve_spd(s.sxx, s.sxy), np.zeros(len(s.sy)))


def ridge(s: SufficientStats, lam: float = 1e-4) -> LinearMap:
    """The authors' bias-free map with an L2 penalty, in closed form: (X^T X + lam I)^-1 X^T Y."""
    return LinearMap("ridge", solve_spd(s.sxx + lam * np.eye(len(s.sx)), s.sxy),
                     np.zeros(len(s.sy)))


def procrustes(s: SufficientStats) -> LinearMap:
    """Orthogonal Procrustes between per-dimension standardised spaces, zero-padded to a
    common width: y = ((x - mx)/sdx) [R]_{:dx,:dy} * sdy + my, with R = U V^T from the SVD
    of the standardised cross-covariance."""
    cxx, cxy, cyy = s.centred()
    sdx = np.sqrt(np.maximum(np.diag(cxx) / s.n, 1e-12))
    sdy = np.sqrt(np.maximum(np.diag(cyy) / s.n, 1e-12))
    d = max(len(sdx), len(sdy))
    m = np.zeros((d, d))
    m[:len(sdx), :len(sdy)] = cxy / np.outer(sdx, sdy)
    u, _, vt = np.linalg.svd(m)
    r = (u @ vt)[:len(sdx), :len(sdy)]
    a = r / sdx[:, None] * sdy[None, :]
    return LinearMap("procrustes", a, s.mean_y - s.mean_x @ a)


ESTIMATORS: dict[str, Callable[..., LinearMap]] = {
    "ols": ols, "ols_nobias": ols_nobias, "ridge": ridge, "procrustes": procrustes,
}


def fit_from_stats(s: SufficientStats, estimator: str = "ols", **params) -> LinearMap:
    if estimator not in ESTIMATORS:
        raise KeyError(f"unknown estimator {estimator!r}; known: {', '.join(ESTIMATORS)}")
    return ESTIMATORS[estimator](s, **params)


def fit_linear_map(x: np.ndarray, y: np.ndarray, estimator: str = "ols", **params) -> LinearMap:
    """Fit on explicit rows (a support set, any index list): the seed's setting."""
    return fit_from_stats(SufficientStats.of(x, y), estimator, **params)
