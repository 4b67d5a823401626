"""How a latent variable dies and whether it comes back (the seed's sparsity post): the
collapse experiment's plan and the per-variable quantities it follows. Pure numpy.

A variable's KL term is KL(N(mu_i, sigma_i^2) || N(0, 1)) averaged over items, in nats; its
reconstruction gain in the same units is how much the loss's reconstruction term (BCE
summed over pixels, the seed's Keras VAE) grows when the variable is zeroed: the post stops
adding noise when the gain falls below the KL, so the two must be in one unit. The stats
step's information gain (pixel MSE) is measured beside. The plan lives here, free of torch,
so that the verb's --help starts at once; the experiment is analysis.studies.sparsity."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from analysis.defaults import SparsityPlan
from analysis.latent import INACTIVE_SIGMA2, INACTIVE_VAR
from latentatlas.errors import UserError

__all__ = ["SparsityPlan", "CollapseEvents", "variable_moments", "variable_kl",
           "choose_variable", "run_phases"]


def variable_moments(mu: np.ndarray, logvar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """var(mu) and mean(sigma^2) per variable over the rows: the post's Figure 1 and Table 1."""
    mu, logvar = np.asarray(mu, np.float64), np.asarray(logvar, np.float64)
    return mu.var(axis=0), np.exp(logvar).mean(axis=0)


def variable_kl(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """Each variable's KL term, 0.5 (mu^2 + sigma^2 - log sigma^2 - 1), averaged over rows."""
    mu, logvar = np.asarray(mu, np.float64), np.asarray(logvar, np.float64)
    return 0.5 * (mu ** 2 + np.exp(logvar) - logvar - 1).mean(axis=0)


def choose_variable(plan: SparsityPlan, gain: np.ndarray, kl: np.ndarray,
                    held: np.ndarray) -> int:
    """The variable to damage: `plan.variable`, else the least informative active variable
    whose gain exceeds its KL (one whose gain is already below would "cross" before any
    noise, and the experiment would show nothing)."""
    active = np.flatnonzero(~held)
    if len(active) == 0:
        raise UserError("sparsity: no variable is active after training (var(mu) >= "
                        f"{INACTIVE_VAR} and mean(sigma^2) <= {INACTIVE_SIGMA2}); train "
                        "longer (--epochs)")
    if plan.variable is not None:
        v = plan.variable
        if held[v]:
            raise UserError(f"sparsity: --variable {v} is inactive after training; active: "
                            f"{active.tolist()}")
        if gain[v] <= kl[v]:
            raise UserError(f"sparsity: --variable {v}: its gain {gain[v]:.3g} nats is "
                            f"already below its KL {kl[v]:.3g}; no noise is needed to cross")
        return v
    worth = [v for v in active if gain[v] > kl[v]]
    if not worth:
        raise UserError(f"sparsity: every active variable ({active.tolist()}) has a gain "
                        "below its KL after training; train longer (--epochs)")
    return int(min(worth, key=lambda v: gain[v]))


@dataclass(frozen=True)
class CollapseEvents:
    crossed_at: int | None  # the increment (1-based) after which the gain fell below the KL
    collapsed_early: bool  # inactive at an increment while its gain still exceeded its KL
    collapse_epochs: int | None  # hold epochs after the crossing until inactive (0: at it)
    revival_epochs: int | None  # epochs without noise until active again


def run_phases(plan: SparsityPlan, epoch: Callable[[str, float], dict]) -> CollapseEvents:
    """The experiment's order of events, given `epoch(phase, noise)`: one epoch of training
    at that noise and a row of the damaged variable's measures (gain_nats, kl, inactive).
    Increase the noise until the gain falls below the KL (or the variable is inactive
    first: a collapse before the crossing); hold that noise until the variable is
    inactive; remove it until the variable is active again."""
    row, crossed_at, early = None, None, False
    strength = 0.0
    for increment in range(1, plan.max_increments + 1):
        strength = increment * plan.noise_step
        row = epoch("increase", strength)
        if row["gain_nats"] < row["kl"]:
            crossed_at = increment
            break
        if row["inactive"]:
            early = True
            break
    collapse_epochs = None
    if crossed_at is not None:
        held = 0
        while not row["inactive"] and held < plan.hold_epochs:
            row, held = epoch("hold", strength), held + 1
        collapse_epochs = held if row["inactive"] else None
    revival_epochs = None
    if row is not None and row["inactive"]:
        for n in range(1, plan.revival_epochs + 1):
            if not epoch("revive", 0.0)["inactive"]:
                revival_epochs = n
                break
    return CollapseEvents(crossed_at, early, collapse_epochs, revival_epochs)
