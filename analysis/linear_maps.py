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

__all__ = ["STATS_CHUNK", "AUTHORS_L2", "AUTHORS_L2_GAN", "authors_l2",
           "SufficientStats", "LinearMap", "RTOL", "solve_psd", "ols", "ols_nobias",
           "ridge", "ridge_authors", "standardised", "nearest_orthogonal", "orthogonal_map",
           "procrustes", "lstsq_ortho", "ADAM_STEPS", "ADAM_LR", "adam_authors",
           "sgd_authors", "Estimator", "ESTIMATORS", "fit_from_stats",
           "fit_linear_map", "fit_translators"]

STATS_CHUNK = 8192  # rows per float64 product in SufficientStats.of
# The L2 of the authors' Keras map (comparison.py), larger when one side is a GAN.
AUTHORS_L2, AUTHORS_L2_GAN = 1e-4, 0.0015


def authors_l2(src_family: str, tgt_family: str) -> float:
    """The authors' regulariser for a pair of latent spaces ("vae" / "gan" encodings)."""
    return AUTHORS_L2_GAN if "gan" in (src_family, tgt_family) else AUTHORS_L2


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
    rank: int = -1  # numerical rank of the system the fit solved (-1: not recorded)
    dims: int = -1  # its size: rank < dims means the fit rows did not determine the map

    @property
    def rank_deficient(self) -> bool:
        return 0 <= self.rank < self.dims

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) @ self.A + self.b

    def save(self, path: str | Path) -> None:
        np.savez(path, A=self.A, b=self.b, estimator=self.estimator, rank=self.rank,
                 dims=self.dims)

    @staticmethod
    def load(path: str | Path) -> LinearMap:
        with np.load(path) as f:
            return LinearMap(str(f["estimator"]), f["A"], f["b"], int(f["rank"]),
                             int(f["dims"]))


# Directions along which the fit rows spread less than 1/1000 of the widest (eigenvalues of
# the Gram matrix below RTOL = 1e-6 of the largest) are left out of the fit: a few rows do
# not determine them, and a VAE's near-dead variables (sd ~1e-3) are such directions. On 16
# support rows in 16 dimensions, Cholesky solved them anyway (it does not see that the
# centred system has rank 15) and returned maps with entries in the thousands.
RTOL = 1e-6


def solve_psd(m: np.ndarray, rhs: np.ndarray, rtol: float = RTOL) -> tuple[np.ndarray, int]:
    """Minimum-norm solution of m @ a = rhs for symmetric positive semidefinite m, by an
    eigendecomposition truncated at rtol * the largest eigenvalue; and the rank kept."""
    w, v = scipy.linalg.eigh(m)
    keep = w > rtol * max(w[-1], 0.0) if w[-1] > 0 else np.zeros(len(w), bool)
    vk = v[:, keep]
    return vk @ ((vk.T @ rhs) / w[keep][:, None]), int(keep.sum())


def ols(s: SufficientStats) -> LinearMap:
    cxx, cxy, _ = s.centred()
    a, rank = solve_psd(cxx, cxy)
    return LinearMap("ols", a, s.mean_y - s.mean_x @ a, rank, len(cxx))


def ols_nobias(s: SufficientStats) -> LinearMap:
    a, rank = solve_psd(s.sxx, s.sxy)
    return LinearMap("ols_nobias", a, np.zeros(len(s.sy)), rank, len(s.sxx))


def ridge(s: SufficientStats, lam: float = 1e-4) -> LinearMap:
    """Bias-free map with an L2 penalty on the sum-of-squares scale: argmin |Y - XA|^2 +
    lam |A|^2 = (X^T X + lam I)^-1 X^T Y. Not the authors' scale: see `ridge_authors`."""
    a, rank = solve_psd(s.sxx + lam * np.eye(len(s.sx)), s.sxy)
    return LinearMap("ridge", a, np.zeros(len(s.sy)), rank, len(s.sxx))


def ridge_authors(s: SufficientStats, l2: float = 1e-4) -> LinearMap:
    """The authors' map exactly (We_love_latent_space `comparison.py`): a bias-free Keras
    Dense layer trained on `mse` with `kernel_regularizer=L2(l2)` and
    `activity_regularizer=L2(l2)`, i.e. the minimiser of

        |Y - XA|^2 / (n dy) + l2 |A|^2 + l2 |XA|^2 / n

    (Keras divides an activity penalty by the batch size). Setting its gradient to zero:
    ((1 + l2 dy) X^T X + l2 n dy I) A = X^T Y, a ridge with penalty l2 * n * dy on a Gram
    matrix inflated by (1 + l2 dy). Their l2: 1e-4, and 0.0015 when one side is a GAN."""
    dy = len(s.sy)
    a, rank = solve_psd((1 + l2 * dy) * s.sxx + l2 * s.n * dy * np.eye(len(s.sx)), s.sxy)
    return LinearMap("ridge_authors", a, np.zeros(dy), rank, len(s.sxx))


def standardised(s: SufficientStats):
    """Cxx, Cxy, Cyy and the per-dimension standard deviations of x and y."""
    cxx, cxy, cyy = s.centred()
    sdx = np.sqrt(np.maximum(np.diag(cxx) / s.n, 1e-12))
    sdy = np.sqrt(np.maximum(np.diag(cyy) / s.n, 1e-12))
    return cxx, cxy, cyy, sdx, sdy


def nearest_orthogonal(m: np.ndarray) -> tuple[np.ndarray, int]:
    """The (semi-)orthogonal matrix nearest to m (dx, dy) in Frobenius norm, U V^T of the SVD
    of m zero-padded to a square, cut back to (dx, dy); and the rank of m."""
    dx, dy = m.shape
    d = max(dx, dy)
    square = np.zeros((d, d))
    square[:dx, :dy] = m
    u, sv, vt = np.linalg.svd(square)
    rank = int((sv > np.sqrt(RTOL) * sv[0]).sum()) if sv[0] > 0 else 0
    return (u @ vt)[:dx, :dy], rank


def orthogonal_map(name: str, s: SufficientStats, r: np.ndarray, sdx, sdy, rank) -> LinearMap:
    """y = ((x - mx) / sdx) R * sdy + my."""
    a = r / sdx[:, None] * sdy[None, :]
    return LinearMap(name, a, s.mean_y - s.mean_x @ a, rank, min(len(sdx), len(sdy)))


def procrustes(s: SufficientStats) -> LinearMap:
    """Orthogonal Procrustes between per-dimension standardised spaces: R = U V^T from the
    SVD of the standardised cross-covariance (zero-padded when dimensions differ)."""
    _, cxy, _, sdx, sdy = standardised(s)
    r, rank = nearest_orthogonal(cxy / np.outer(sdx, sdy))
    return orthogonal_map("procrustes", s, r, sdx, sdy, rank)


def lstsq_ortho(s: SufficientStats) -> LinearMap:
    """Least squares between the standardised spaces, then the orthogonal matrix nearest to
    it: set beside `procrustes` and `ols`, it shows how much of a map is an isometry."""
    cxx, cxy, _, sdx, sdy = standardised(s)
    a, rank = solve_psd(cxx / np.outer(sdx, sdx), cxy / np.outer(sdx, sdy))
    r, _ = nearest_orthogonal(a)
    return orthogonal_map("lstsq_ortho", s, r, sdx, sdy, rank)


# The authors' optimiser (We_love_latent_space `comparison.py`): Adam at 5e-4 for 2000
# full-batch steps from Keras' Glorot-uniform initialisation.
ADAM_STEPS, ADAM_LR = 2000, 5e-4


def adam_authors(stats: list[SufficientStats], l2: float = 1e-4, steps: int = ADAM_STEPS,
                 lr: float = ADAM_LR, seed: int = 0) -> list[LinearMap]:
    """The authors' fit itself, as a check of its closed form `ridge_authors`: Keras' Adam
    (beta 0.9 / 0.999, eps 1e-7) on their objective |Y - XW|^2 / (n dy) + l2 |W|^2 +
    l2 |XW|^2 / n over the full batch. Its gradient is a function of the sufficient
    statistics, (2 / (n dy) + 2 l2 / n) Sxx W - 2 / (n dy) Sxy + 2 l2 W, so fits of the same
    shape run together, stacked, in O(d^2) memory each."""
    dx, dy = len(stats[0].sx), len(stats[0].sy)
    sxx = np.stack([s.sxx for s in stats])
    n = np.array([s.n for s in stats], dtype=np.float64)[:, None, None]
    pull = 2 / (n * dy) * np.stack([s.sxy for s in stats])
    grow = 2 / (n * dy) + 2 * l2 / n
    limit = np.sqrt(6 / (dx + dy))
    w = np.random.default_rng(seed).uniform(-limit, limit, (1, dx, dy)).repeat(len(stats), 0)
    m, v = np.zeros_like(w), np.zeros_like(w)
    b1, b2, eps = 0.9, 0.999, 1e-7
    for t in range(1, steps + 1):
        g = grow * (sxx @ w) - pull + 2 * l2 * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w -= lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
    return [LinearMap("sgd_authors", wi, np.zeros(dy)) for wi in w]


def sgd_authors(s: SufficientStats, l2: float = 1e-4) -> LinearMap:
    return adam_authors([s], l2)[0]


@dataclass(frozen=True)
class Estimator:
    """An estimator by its registry name, with the parameters it takes (and their defaults)."""

    name: str
    fit: Callable[..., LinearMap]
    params: tuple[str, ...] = ()
    about: str = ""


ESTIMATORS: dict[str, Estimator] = {e.name: e for e in (
    Estimator("ols", ols, about="least squares with bias"),
    Estimator("ols_nobias", ols_nobias, about="least squares through the origin"),
    Estimator("ridge", ridge, ("lam",), "bias-free, penalty lam on the sum-of-squares scale"),
    Estimator("ridge_authors", ridge_authors, ("l2",),
              "the authors' Keras map in closed form (their l2)"),
    Estimator("procrustes", procrustes, about="orthogonal, after standardisation"),
    Estimator("lstsq_ortho", lstsq_ortho,
              about="least squares projected to the nearest orthogonal map"),
    Estimator("sgd_authors", sgd_authors, ("l2",),
              "the authors' own fit: Adam 5e-4, 2000 full-batch steps (checks ridge_authors)"),
)}


def fit_from_stats(s: SufficientStats, estimator: str = "ols", **params) -> LinearMap:
    """Fit one estimator; `params` may hold every estimator's parameters (e.g. lam and l2):
    each takes those it declares."""
    if estimator not in ESTIMATORS:
        raise KeyError(f"unknown estimator {estimator!r}; known: {', '.join(ESTIMATORS)}")
    e = ESTIMATORS[estimator]
    return e.fit(s, **{k: v for k, v in params.items() if k in e.params and v is not None})


def fit_linear_map(x: np.ndarray, y: np.ndarray, estimator: str = "ols", **params) -> LinearMap:
    """Fit on explicit rows (a support set, any index list): the seed's setting."""
    return fit_from_stats(SufficientStats.of(x, y), estimator, **params)


def fit_translators(stats: dict[str, SufficientStats], translators, seed: int = 0,
                 **params) -> dict[str, LinearMap]:
    """Every estimator in `translators` on every named set of statistics, keyed
    `<estimator>|<name>`; the authors' optimiser runs on all the sets at once. Light
    imports: what a Ray task of the translator study runs."""
    maps = {}
    for name in translators:
        if name == "sgd_authors":
            fitted = adam_authors(list(stats.values()), params.get("l2", 1e-4), seed=seed)
        else:
            fitted = [fit_from_stats(s, name, **params) for s in stats.values()]
        maps.update({f"{name}|{key}": m for key, m in zip(stats, fitted, strict=True)})
    return maps
