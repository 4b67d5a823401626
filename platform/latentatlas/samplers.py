"""Samplers: (model, n, seed) -> codes the model decodes: its prior, a Gaussian mixture fitted
to its codes of real images. Science, but here in the engine because a training scores its
own samplers' FID after its last epoch (latentatlas.train.family) and the engine imports
nothing of analysis/."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from latentatlas.images import to_unit_float


def prior_codes(model, n: int, seed: int) -> np.ndarray:
    """The model's own prior: N(0, I) for a VAE, noise through the mapping for a GAN."""
    with torch.no_grad():
        return model.sample_codes(n, torch.Generator().manual_seed(seed)).cpu().numpy()


@dataclass(frozen=True)
class Mixture:
    """A Gaussian mixture with full covariances (scikit-learn's fit, kept as plain arrays)."""

    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, d)
    covariances: np.ndarray  # (K, d, d)


def fit_mixture(codes: np.ndarray, components: int, seed: int) -> Mixture:
    """Split-VAE's sampler: a GMM fitted to codes of real images (at most one component per
    two rows)."""
    from sklearn.mixture import GaussianMixture

    k = max(1, min(components, len(codes) // 2))
    gmm = GaussianMixture(k, covariance_type="full", random_state=seed, reg_covar=1e-6)
    gmm.fit(np.asarray(codes, np.float64))
    return Mixture(gmm.weights_, gmm.means_, gmm.covariances_)


def mixture_codes(mixture: Mixture, n: int, seed: int) -> np.ndarray:
    """n draws, in random component order (scikit-learn's `sample` returns them grouped)."""
    rng = np.random.default_rng(seed)
    component = rng.choice(len(mixture.weights), size=n, p=mixture.weights / mixture.weights.sum())
    chol = np.linalg.cholesky(mixture.covariances)
    eps = rng.standard_normal((n, mixture.means.shape[1]))
    return (mixture.means[component]
            + np.einsum("nij,nj->ni", chol[component], eps)).astype(np.float32)


@torch.no_grad()
def posterior_means(model, images: np.ndarray, batch: int = 1024) -> np.ndarray:
    """A VAE's posterior means of uint8 images."""
    return np.concatenate([model.encode(to_unit_float(images[i:i + batch]))[0].numpy()
                           for i in range(0, len(images), batch)])


def gmm_codes(model, images: np.ndarray, components: int, n: int, seed: int) -> np.ndarray:
    """n draws from a GMM fitted to a VAE's posterior means of `images`; the fit runs in a
    Ray task when Ray is up (scikit-learn holds one core for seconds)."""
    import ray

    mu = posterior_means(model, images)
    fit = (ray.get(ray.remote(fit_mixture).remote(mu, components, seed))
           if ray.is_initialized() else fit_mixture(mu, components, seed))
    return mixture_codes(fit, n, seed)
