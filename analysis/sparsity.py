"""How a latent variable dies and whether it comes back (the seed's sparsity post): the
collapse experiment's plan and the per-variable quantities it follows. Pure numpy.

A variable's KL term is KL(N(mu_i, sigma_i^2) || N(0, 1)) averaged over items, in nats; its
reconstruction gain in the same units is how much the loss's reconstruction term (BCE
summed over pixels, the seed's Keras VAE) grows when the variable is zeroed: the post stops
adding noise when the gain falls below the KL, so the two must be in one unit. The stats
step's information gain (pixel MSE) is measured beside. The plan lives here, free of torch,
so that the verb's --help starts at once; the experiment is analysis.studies.sparsity."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latentatlas.errors import UserError

__all__ = ["SparsityPlan", "variable_moments", "variable_kl", "first_at_or_after"]


@dataclass(frozen=True)
class SparsityPlan:
    # training before the experiment: on Fashion-MNIST epochs 18-22 each moved the probe's
    # val/mse by under 1%, the claims' settled rule (bench/RESULTS.md, "The sparsity verb")
    epochs: int = 20
    every: int = 25  # minibatches between two points of the per-variable curves
    probe: int = 2000  # validation images every measurement runs on
    noise_step: float = 0.25  # noise std added per increment
    max_increments: int = 12
    hold_epochs: int = 5  # at most, at the last strength, for the variable to go inactive
    revival_epochs: int = 10  # at most, without noise, for it to come back
    variable: int | None = None  # None: the least informative active variable
    hidden: tuple[int, ...] = (256, 64, 32)
    latent_dim: int = 16
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "every", "probe", "max_increments", "hold_epochs",
                     "revival_epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"sparsity: --{name.replace('_', '-')} "
                                f"{getattr(self, name)} must be >= 1")
        if self.noise_step <= 0 or self.lr <= 0:
            raise UserError(f"sparsity: --noise-step {self.noise_step} and --lr {self.lr} "
                            "must be > 0")
        if self.variable is not None and not 0 <= self.variable < self.latent_dim:
            raise UserError(f"sparsity: --variable {self.variable} is not one of the "
                            f"{self.latent_dim} latent variables")


def variable_moments(mu: np.ndarray, logvar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """var(mu) and mean(sigma^2) per variable over the rows: the post's Figure 1 and Table 1."""
    mu, logvar = np.asarray(mu, np.float64), np.asarray(logvar, np.float64)
    return mu.var(axis=0), np.exp(logvar).mean(axis=0)


def variable_kl(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """Each variable's KL term, 0.5 (mu^2 + sigma^2 - log sigma^2 - 1), averaged over rows."""
    mu, logvar = np.asarray(mu, np.float64), np.asarray(logvar, np.float64)
    return 0.5 * (mu ** 2 + np.exp(logvar) - logvar - 1).mean(axis=0)


def first_at_or_after(flags: list[bool], start: int) -> int | None:
    """The index of the first True in `flags` at or after `start`, else None."""
    return next((i for i in range(start, len(flags)) if flags[i]), None)
