"""The Frechet distance and the kernel inception distance between a real side (a `Reference`:
the Gaussian of its features and, when computed here, the features) and generated features.
Science, but here in the engine because a training scores its own samples' FID
(latentatlas.train.family), and the engine imports nothing of analysis/."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

KID_SUBSET = 1000  # torchmetrics' default subset size (capped by the set sizes)


KID_SUBSETS = 100


def sqrt_psd(sigma: np.ndarray) -> np.ndarray:
    """The symmetric square root of a covariance (eigenvalues rounding made negative are 0)."""
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


@dataclass(frozen=True, eq=False)
class Reference:
    """The real side of FID in one feature space: the Gaussian of its features (`mu`,
    `sigma`: pytorch-fid's statistics), the features themselves when computed here (KID
    needs them; a statistics file holds none), the mean pixel variance of its images (the
    variance loss; None when a file does not carry it), what it is (`described`), and the
    extractor and weights it was computed with (None when a file does not say)."""

    mu: np.ndarray  # (F,) float64
    sigma: np.ndarray  # (F, F) float64
    count: int | None
    described: str  # "fashion-mnist:test, 10000 images" or "<file> (sha256 ...)"
    features: np.ndarray | None = None
    pixel_variance: float | None = None
    extractor: str | None = None
    weights_sha256: str | None = None

    @classmethod
    def of(cls, features: np.ndarray, described: str = "", **known) -> Reference:
        features = np.asarray(features, np.float64)
        return cls(features.mean(0), np.cov(features, rowvar=False), len(features), described,
                   features, **known)

    @cached_property
    def sigma_root(self) -> np.ndarray:  # one per reference, however many samplers it scores
        return sqrt_psd(self.sigma)


def frechet_distance(reference: Reference, mu: np.ndarray, sigma: np.ndarray) -> float:
    """|mu_r - mu|^2 + tr(sigma_r + sigma - 2 (sigma_r sigma)^(1/2)). The trace of the root is
    the sum of the roots of the eigenvalues of sigma_r^(1/2) sigma sigma_r^(1/2), a symmetric
    PSD matrix with the same eigenvalues (eigvalsh: real, stable; pytorch-fid's sqrtm of the
    non-symmetric product needs an offset when it is near singular)."""
    root = reference.sigma_root
    inner = root @ sigma @ root
    eigen = np.linalg.eigvalsh((inner + inner.T) / 2)
    distance = (((reference.mu - mu) ** 2).sum() + np.trace(reference.sigma) + np.trace(sigma)
                - 2 * np.sqrt(np.clip(eigen, 0, None)).sum())
    return max(float(distance), 0.0)  # >= 0 exactly; rounding can leave -1e-12


def compare(reference: Reference, fake: np.ndarray, seed: int = 0) -> dict[str, float]:
    """FID of generated features against the reference, and KID (mean, std over subsets, by
    torchmetrics fed the features) when the reference has its features."""
    fake = np.asarray(fake, np.float64)
    out = {"fid": frechet_distance(reference, fake.mean(0), np.cov(fake, rowvar=False))}
    if reference.features is None:
        return out
    import warnings

    from torchmetrics.image.kid import KernelInceptionDistance

    class Given(torch.nn.Module):  # the features are the input
        num_features = fake.shape[1]

        def forward(self, x):
            return x

    size = min(KID_SUBSET, len(reference.features), len(fake))
    with warnings.catch_warnings():  # "KID will save all extracted features": it must
        warnings.simplefilter("ignore")
        kid = KernelInceptionDistance(feature=Given(), subsets=KID_SUBSETS, subset_size=size)
    kid.update(torch.as_tensor(reference.features), real=True)
    kid.update(torch.as_tensor(fake), real=False)
    with torch.random.fork_rng(devices=[]):  # KID draws its subsets from torch's global RNG
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {**out, "kid_mean": float(kid_mean), "kid_std": float(kid_std)}
