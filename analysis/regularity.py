"""How regular a latent space is: the aggregate posterior against the N(0, I) prior."""

from __future__ import annotations

import numpy as np

__all__ = ["aggregate_gaussian_kl", "slice_grid"]

def aggregate_gaussian_kl(codes: np.ndarray) -> float:
    """KL(N(m, S) || N(0, I)) for the mean m and covariance S of `codes` (n, d):
    0.5 * (tr S + |m|^2 - d - log det S). Zero when the codes fill the prior exactly; it grows
    as they drift, stretch, or collapse onto a thinner set (log det S -> -inf)."""
    codes = np.asarray(codes, dtype=np.float64)
    m = codes.mean(axis=0)
    s = np.atleast_2d(np.cov(codes, rowvar=False))
    sign, logdet = np.linalg.slogdet(s)
    if sign <= 0:
        return float("inf")
    return float(0.5 * (np.trace(s) + m @ m - len(m) - logdet))


def slice_grid(slices: list[float], n: int, span: float = 2.0) -> np.ndarray:
    """Latent points for pictures of a 3-D prior in slices: for each value of z2, an n x n
    grid over (z0, z1) in [-span, span], rows running along z1. Shape (len(slices), n*n, 3)."""
    axis = np.linspace(-span, span, n)
    z1, z0 = np.meshgrid(axis[::-1], axis, indexing="ij")  # top row: largest z1
    plane = np.stack([z0.ravel(), z1.ravel()], axis=1)
    return np.stack([np.column_stack([plane, np.full(len(plane), v)]) for v in slices])
