"""Renormalising a second stage's samples to the first stage's spread: the authors' one scale
and a scale per variable. The first stage's codes z ~ q(z|x) have, per variable j, variance
var(mu_j) + mean(sigma_j^2) (the variance law); a second stage's samples lose some of it (its
own variance loss), and a rescaling about 0 gives it back."""

from __future__ import annotations

import numpy as np
import torch


def sample_spread(codes: np.ndarray) -> np.ndarray:
    """Per variable, the standard deviation of `codes` (n, d), float64; exactly 0 where every
    row holds the same value."""
    codes = np.asarray(codes, np.float64)
    return np.where(codes.max(axis=0) == codes.min(axis=0), 0.0, codes.std(axis=0))


def code_variance(var_mu, mean_sigma2) -> np.ndarray:
    """Per variable, the variance of the first stage's posterior draws: var(mu) + mean(sigma^2)."""
    return np.asarray(var_mu, np.float64) + np.asarray(mean_sigma2, np.float64)


def renormalise_authors(codes: np.ndarray, var_mu, mean_sigma2) -> np.ndarray:
    """Asperti's renormalisation (the variance-loss paper, the authors' BalancingVAE code):
    ONE scale for every variable, making the mean per-variable std of the samples
    adjust = sqrt(mean(var(mu) + mean(sigma^2))). The scale is sized by all variables: where
    the second stage collapses the inactive variables' noise (it cannot reproduce it), the
    active ones are inflated to make up for them. Codes all constant are left as they are."""
    adjust = np.sqrt(code_variance(var_mu, mean_sigma2).mean())
    mean_std = sample_spread(codes).mean()
    return (codes * (adjust / mean_std if mean_std > 0 else 1.0)).astype(np.float32)


def renormalise_per_variable(codes: np.ndarray, var_mu, mean_sigma2) -> np.ndarray:
    """Each variable j scaled to its own first-stage spread sqrt(var(mu_j) + mean(sigma_j^2)):
    a collapsed inactive variable gets its noise back without inflating the active ones,
    and the correlations between variables are kept. A variable the samples hold constant is
    left as it is."""
    std = sample_spread(codes)
    target = np.sqrt(code_variance(var_mu, mean_sigma2))
    scale = np.divide(target, std, out=np.ones_like(std), where=std > 0)
    return (codes * scale).astype(np.float32)


def second_stage_codes(stage2, n: int, seed: int) -> np.ndarray:
    """u ~ N(0, I) -> the second stage's decoder -> first-stage codes."""
    with torch.no_grad():
        u = torch.randn(n, stage2.latent_dim, generator=torch.Generator().manual_seed(seed))
        return stage2.decode(u).numpy()
