"""How a latent variable dies and whether it comes back (the seed's sparsity post): the
per-variable quantities the collapse experiment follows, and the experiment's codes. Pure
numpy / torch.

A variable's KL term is KL(N(mu_i, sigma_i^2) || N(0, 1)) averaged over items, in nats; its
reconstruction gain in the same units is how much the loss's reconstruction term (BCE
summed over pixels, the seed's Keras VAE) grows when the variable is zeroed: the post stops
adding noise when the gain falls below the KL, so the two must be in one unit. The stats
step's information gain (pixel MSE) is measured beside."""

from __future__ import annotations

import numpy as np
import torch

from latentatlas.losses import bernoulli_nll

__all__ = ["variable_moments", "variable_kl", "perturbed_codes", "reconstruction_gains",
           "first_at_or_after"]


def variable_moments(mu: np.ndarray, logvar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """var(mu) and mean(sigma^2) per variable over the rows: the post's Figure 1 and Table 1."""
    mu, logvar = np.asarray(mu, np.float64), np.asarray(logvar, np.float64)
    return mu.var(axis=0), np.exp(logvar).mean(axis=0)


def variable_kl(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """Each variable's KL term, 0.5 (mu^2 + sigma^2 - log sigma^2 - 1), averaged over rows."""
    mu, logvar = np.asarray(mu, np.float64), np.asarray(logvar, np.float64)
    return 0.5 * (mu ** 2 + np.exp(logvar) - logvar - 1).mean(axis=0)


def perturbed_codes(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None,
                    held: torch.Tensor, variable: int, strength: float,
                    noise: torch.Tensor) -> torch.Tensor:
    """The decoder's input in the collapse experiment: z = mu + sigma * eps (eps None: the
    means), the variables in `held` (a bool mask) zeroed so the decoder cannot revive them,
    and Gaussian noise of std `strength` added to `variable` (`noise` ~ N(0, 1) per row)."""
    z = mu if eps is None else mu + (0.5 * logvar).exp() * eps
    z = z.masked_fill(held, 0.0)
    if strength:
        z = z.clone()
        z[:, variable] = z[:, variable] + strength * noise
    return z


@torch.no_grad()
def reconstruction_gains(decode, z: torch.Tensor, x: torch.Tensor,
                         variable: int) -> tuple[float, float]:
    """(gain in nats, gain in pixel MSE) of `variable`: the mean per-item BCE summed over
    pixels, and the mean per-item pixel MSE, with the variable zeroed minus with it."""
    zeroed = z.clone()
    zeroed[:, variable] = 0
    x_hat, x_cut = decode(z), decode(zeroed)
    nats = bernoulli_nll(x, x_cut).double().mean() - bernoulli_nll(x, x_hat).double().mean()
    mse = ((x_cut - x).pow(2).double().mean() - (x_hat - x).pow(2).double().mean())
    return float(nats), float(mse)


def first_at_or_after(flags: list[bool], start: int) -> int | None:
    """The index of the first True in `flags` at or after `start`, else None."""
    return next((i for i in range(start, len(flags)) if flags[i]), None)
