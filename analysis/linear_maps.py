"""Linear maps between latent spaces, fitted in closed form from sufficient statistics.

A map sends row vectors x (dx,) to y = x @ A + b (dy,). Every estimator is a function of
the sufficient statistics (n, sums, X^T X, X^T Y, Y^T Y), so fitting on a support set,
on any rows, or streaming over a whole encoded dataset is the same computation. Beside them,
the translator study's field translators: latentis' four (statistics too) and a translator
built on relative representations, which needs the anchor rows themselves."""

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
           "sgd_authors", "LATENTIS_TINY", "LATENTIS_STEPS", "LATENTIS_LR", "latentis_scale",
           "latentis_standardised", "latentis_unscaled", "latentis_linear", "latentis_lortho",
           "latentis_ortho", "adam_latentis", "latentis_affine", "relative_representation",
           "RelativeMap", "relative", "Estimator", "ESTIMATORS", "FIELD_TRANSLATORS",
           "fit_from_stats", "fit_linear_map", "fit_translators"]

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


# latentis (Flegyas/latentis, Maiorca et al.'s library: "Latent Space Translation via Semantic
# Alignment", NeurIPS 2023), as its Translator runs (src/latentis/transform/translate/
# aligner.py at 800699f): each side standard-scaled by its anchors' own mean and std
# (transform/base.py StandardScaling), the narrower side zero-padded to the wider
# (transform/dim_matcher.py ZeroPadding), an aligner fitted on the anchors, then the padding
# cut off and the target's scaling undone. The std is torch's (n - 1), and _handle_zeros
# (transform/functional.py) counts one under 10 machine epsilons as 1: float32's, the dtype
# of the codes latentis would be handed.
LATENTIS_TINY = 10 * float(np.finfo(np.float32).eps)
# Its affine aligner (sgd_affine_align_state's defaults): torch's Adam at 1e-3 for 300
# full-batch steps on F.mse_loss, from nn.Linear's initialisation.
LATENTIS_STEPS, LATENTIS_LR = 300, 1e-3


def latentis_scale(c: np.ndarray, n: int) -> np.ndarray:
    """Per-dimension std (n - 1) from a scatter matrix, a near-constant dimension's as 1."""
    sd = np.sqrt(np.maximum(np.diag(c), 0.0) / (n - 1))
    return np.where(sd < LATENTIS_TINY, 1.0, sd)


def latentis_standardised(s: SufficientStats):
    """latentis' preprocessing of the anchors, on their statistics: the Gram X~^T X~ and the
    cross product X~^T Y~ of the scaled, zero-padded anchors, both (d, d) with
    d = max(dx, dy), and the two sides' scales."""
    cxx, cxy, cyy = s.centred()
    sx, sy = latentis_scale(cxx, s.n), latentis_scale(cyy, s.n)
    dx, dy = len(sx), len(sy)
    gxx, gxy = np.zeros((max(dx, dy),) * 2), np.zeros((max(dx, dy),) * 2)
    gxx[:dx, :dx] = cxx / np.outer(sx, sx)
    gxy[:dx, :dy] = cxy / np.outer(sx, sy)
    return gxx, gxy, sx, sy


def latentis_unscaled(name: str, s: SufficientStats, m: np.ndarray, sx, sy, rank: int = -1,
                      dims: int = -1, shift: np.ndarray | None = None) -> LinearMap:
    """What latentis does to a code x with the aligner's (d, d) matrix m (and bias `shift`):
    pad((x - mx) / sx) @ m + shift, cut to the first dy columns, times sy plus my; as one
    (A, b). The n - 1 of the two scales cancels here, the scaling of x against the
    un-scaling of y."""
    dx, dy = len(sx), len(sy)
    a = m[:dx, :dy] / sx[:, None] * sy[None, :]
    b = s.mean_y - s.mean_x @ a
    return LinearMap(name, a, b if shift is None else b + shift[:dy] * sy, rank, dims)


def latentis_linear(s: SufficientStats) -> LinearMap:
    """latentis' `linear` (lstsq_align_state): least squares without a bias between the
    scaled, padded anchors, minimum-norm where they do not determine it. The scaled anchors
    are centred, so where they determine the map this is `ols`; short of that it is the
    minimum-norm solution in the standardised coordinates, not in the raw ones."""
    gxx, gxy, sx, sy = latentis_standardised(s)
    m, rank = solve_psd(gxx, gxy)
    return latentis_unscaled("latentis_linear", s, m, sx, sy, rank, len(sx))


def latentis_lortho(s: SufficientStats) -> LinearMap:
    """latentis' `l-ortho` (lstsq_ortho_align_state): `latentis_linear`'s matrix replaced by
    U V^T of its SVD. `lstsq_ortho` computes the same map, but for near-constant dimensions
    (see `latentis_ortho`)."""
    gxx, gxy, sx, sy = latentis_standardised(s)
    m, rank = solve_psd(gxx, gxy)
    return latentis_unscaled("latentis_lortho", s, nearest_orthogonal(m)[0], sx, sy, rank,
                             len(sx))


def latentis_ortho(s: SufficientStats) -> LinearMap:
    """latentis' `ortho` (svd_align_state, its Procrustes): U V^T of the SVD of X~^T Y~.
    `procrustes` computes the same map but for dimensions constant on the anchors: latentis
    leaves them unscaled (scale 1) where `procrustes` floors their variance at 1e-12."""
    _, gxy, sx, sy = latentis_standardised(s)
    r, rank = nearest_orthogonal(gxy)
    return latentis_unscaled("latentis_ortho", s, r, sx, sy, rank, min(len(sx), len(sy)))


def adam_latentis(stats: list[SufficientStats], steps: int = LATENTIS_STEPS,
                  lr: float = LATENTIS_LR, seed: int = 0) -> list[LinearMap]:
    """latentis' `affine` (SGDAffineAligner): nn.Linear(d, d) with a bias, trained by torch's
    Adam (beta 0.9 / 0.999, eps 1e-8) on F.mse_loss between the scaled, padded anchors, full
    batch, from nn.Linear's U(-1/sqrt d, 1/sqrt d) (drawn from numpy's generator at `seed`,
    not torch's). The scaled anchors are centred, so the gradients are functions of the
    statistics, 2 / (k d) (X~^T X~ W - X~^T Y~) and 2 b / d, and fits of one shape run
    stacked. Its minimum is `latentis_linear`'s map; each step moves an entry by about lr at
    most, so 300 steps stop short wherever the map lies farther than ~0.3 from its start."""
    parts = [latentis_standardised(s) for s in stats]
    gxx, gxy = np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts])
    k = np.array([s.n for s in stats], dtype=np.float64)[:, None, None]
    d = gxx.shape[1]
    rng = np.random.default_rng(seed)
    w = rng.uniform(-1 / np.sqrt(d), 1 / np.sqrt(d), (1, d, d)).repeat(len(stats), 0)
    b = rng.uniform(-1 / np.sqrt(d), 1 / np.sqrt(d), (1, 1, d)).repeat(len(stats), 0)
    moments = [(np.zeros_like(w), np.zeros_like(w)), (np.zeros_like(b), np.zeros_like(b))]
    b1, b2, eps = 0.9, 0.999, 1e-8
    for t in range(1, steps + 1):
        grads = (2 / (k * d) * (gxx @ w - gxy), 2 / d * b)
        for p, g, (m, v) in zip((w, b), grads, moments, strict=True):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            p -= lr / (1 - b1**t) * m / (np.sqrt(v) / np.sqrt(1 - b2**t) + eps)
    return [latentis_unscaled("latentis_affine", s, wi, sx, sy, shift=bi[0])
            for s, (_, _, sx, sy), wi, bi in zip(stats, parts, w, b, strict=True)]


def latentis_affine(s: SufficientStats, seed: int = 0) -> LinearMap:
    return adam_latentis([s], seed=seed)[0]


def relative_representation(x: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Moschella et al.'s relative representation ("Relative representations enable zero-shot
    latent space communication", ICLR 2023): each row's cosine similarity to each anchor,
    (n, k); rows scaled to unit length as F.normalize does (norms floored at 1e-12)."""
    def unit(v):
        v = np.asarray(v, np.float64)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    return unit(x) @ unit(anchors).T


@dataclass(frozen=True)
class RelativeMap:
    """A translator through relative representations: a source code's cosines to the source
    anchors, then an affine readout to the target's code. No (A, b): the cosines scale each
    code to unit length first."""

    estimator: str
    anchors: np.ndarray  # (k, dx): the source anchors
    readout: LinearMap  # (k,) cosines -> (dy,) target code

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.readout(relative_representation(x, self.anchors))


def relative(x: np.ndarray, y: np.ndarray) -> RelativeMap:
    """Least squares with a bias from the anchors' relative representations (their k x k
    cosines among themselves) to their target codes. Moschella et al. put a learned affine
    layer on the k cosines and train it with a new decoder; here it is fitted in closed form
    into the target's code space, whose decoder is kept. Its predictions are an affine map
    of x / |x|, so nothing of a code's norm reaches the target."""
    x = np.asarray(x, np.float64)
    return RelativeMap("relative", x, ols(SufficientStats.of(relative_representation(x, x), y)))


@dataclass(frozen=True)
class Estimator:
    """An estimator by its registry name, with the parameters it takes (and their defaults)."""

    name: str
    fit: Callable[..., LinearMap | RelativeMap]
    params: tuple[str, ...] = ()
    about: str = ""
    rows: bool = False  # fitted on the anchor rows (x, y), not on their statistics


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


# The field's translators, which the translator study fits when asked by name (`--translator`):
# latentis' four (where one computes an estimator's map, its docstring says which) and the
# relative translator. Not `relocate` estimators: relocation scores (A, b) maps only.
FIELD_TRANSLATORS: dict[str, Estimator] = {e.name: e for e in (
    Estimator("latentis_affine", latentis_affine, about="latentis' affine: Adam 1e-3, 300 "
              "steps, after its scaling and padding"),
    Estimator("latentis_linear", latentis_linear,
              about="latentis' linear: least squares after its scaling and padding"),
    Estimator("latentis_lortho", latentis_lortho,
              about="latentis' l-ortho: its linear map's nearest orthogonal map"),
    Estimator("latentis_ortho", latentis_ortho,
              about="latentis' ortho: Procrustes after its scaling and padding"),
    Estimator("relative", relative, rows=True, about="least squares from the cosines to "
              "the anchors (relative representation) to the target's codes"),
)}


def fit_from_stats(s: SufficientStats, estimator: str = "ols", **params) -> LinearMap:
    """Fit one estimator (or latentis translator); `params` may hold every estimator's
    parameters (e.g. lam and l2): each takes those it declares."""
    e = ESTIMATORS.get(estimator) or FIELD_TRANSLATORS.get(estimator)
    if e is None or e.rows:
        known = [n for n, f in {**ESTIMATORS, **FIELD_TRANSLATORS}.items() if not f.rows]
        raise KeyError(f"unknown estimator {estimator!r}; known: {', '.join(known)}")
    return e.fit(s, **{k: v for k, v in params.items() if k in e.params and v is not None})


def fit_linear_map(x: np.ndarray, y: np.ndarray, estimator: str = "ols", **params) -> LinearMap:
    """Fit on explicit rows (a support set, any index list): the seed's setting."""
    return fit_from_stats(SufficientStats.of(x, y), estimator, **params)


def fit_translators(stats: dict[str, SufficientStats], translators, seed: int = 0,
                    rows: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                    **params) -> dict[str, LinearMap | RelativeMap]:
    """Every translator in `translators` on every named set of statistics, keyed
    `<translator>|<name>`; the Adam fits run on all the sets at once; a translator fitted on
    rows, on each named set of `rows` (x, y). Light imports: what a Ray task of the
    translator study runs."""
    maps = {}
    for name in translators:
        by_rows = name in FIELD_TRANSLATORS and FIELD_TRANSLATORS[name].rows
        sets = (rows or {}) if by_rows else stats
        if name == "sgd_authors":
            fitted = adam_authors(list(stats.values()), params.get("l2", 1e-4), seed=seed)
        elif name == "latentis_affine":
            fitted = adam_latentis(list(stats.values()), seed=seed)
        elif by_rows:
            fitted = [FIELD_TRANSLATORS[name].fit(x, y) for x, y in sets.values()]
        else:
            fitted = [fit_from_stats(s, name, **params) for s in stats.values()]
        maps.update({f"{name}|{key}": m for key, m in zip(sets, fitted, strict=True)})
    return maps
