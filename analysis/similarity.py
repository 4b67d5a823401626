"""Similarity of two latent spaces on the same rows, from their sufficient statistics (so
it streams and costs O(d^2) memory): linear CKA (Kornblith et al. 2019) and SVCCA (Raghu et
al. 2017)."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from analysis.linear_maps import SufficientStats

__all__ = ["SVCCA_KEEP", "linear_cka", "canonical_correlations", "svcca"]

SVCCA_KEEP = 0.99  # SVCCA keeps the top directions holding 99% of each side's variance


def linear_cka(s: SufficientStats) -> float:
    """|Cxy|_F^2 / (|Cxx|_F |Cyy|_F) on centred scatter matrices: the feature-space form of
    HSIC(XX^T, YY^T) / sqrt(HSIC(XX^T, XX^T) HSIC(YY^T, YY^T)) with linear kernels."""
    cxx, cxy, cyy = s.centred()
    den = np.linalg.norm(cxx) * np.linalg.norm(cyy)
    return float(np.linalg.norm(cxy) ** 2 / den) if den > 0 else 0.0


def top_directions(c: np.ndarray, keep: float) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors of a scatter matrix, cut to the fewest that
    hold a share `keep` of its trace (at least one)."""
    w, v = scipy.linalg.eigh(c)
    w, v = np.maximum(w[::-1], 0.0), v[:, ::-1]
    total = w.sum()
    if total <= 0:
        return w[:0], v[:, :0]
    k = int(np.searchsorted(np.cumsum(w) / total, keep - 1e-12) + 1)
    k = min(k, int((w > 1e-12 * w[0]).sum()))  # never a direction without variance
    return w[:k], v[:, :k]


def canonical_correlations(s: SufficientStats, keep: float = SVCCA_KEEP) -> np.ndarray:
    """Canonical correlations (descending) between the two sides, each first reduced to the
    principal directions holding `keep` of its variance (keep=1: plain CCA)."""
    cxx, cxy, cyy = s.centred()
    wx, vx = top_directions(cxx, keep)
    wy, vy = top_directions(cyy, keep)
    if not len(wx) or not len(wy):
        return np.zeros(0)
    # In the principal bases the sides are uncorrelated within, with variances w: whitening
    # is a division, and the canonical correlations are the singular values of the
    # whitened cross-covariance.
    whitened = (vx.T @ cxy @ vy) / np.sqrt(np.outer(wx, wy))
    return np.clip(np.linalg.svd(whitened, compute_uv=False), 0.0, 1.0)


def svcca(s: SufficientStats, keep: float = SVCCA_KEEP) -> float:
    """Mean canonical correlation after the SVD reduction (0 when a side has no variance)."""
    rho = canonical_correlations(s, keep)
    return float(rho.mean()) if len(rho) else 0.0
