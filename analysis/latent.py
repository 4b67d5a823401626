"""Per-variable latent statistics: activity, sparsity and the stationary condition."""

from __future__ import annotations

import numpy as np

from analysis.moments import Moments

__all__ = ["BURDA_ACTIVE", "INACTIVE_VAR", "INACTIVE_SIGMA2", "inactive", "latent_stats",
           "summary",
           "zero_variables", "least_informative_active", "table"]

BURDA_ACTIVE = 0.01  # active unit: var(mu) > 0.01 (Burda et al.)
INACTIVE_VAR = 0.05  # Split-VAE's get_stats: inactive if var(mu) < 0.05 ...
INACTIVE_SIGMA2 = 0.95  # ... or mean(sigma^2) > 0.95


def inactive(var_mu, mean_sigma2) -> np.ndarray:
    """Asperti's rule, per variable: var(mu) < 0.05 or mean(sigma^2) > 0.95."""
    return (np.asarray(var_mu) < INACTIVE_VAR) | (np.asarray(mean_sigma2) > INACTIVE_SIGMA2)


def latent_stats(mu: Moments, sigma2_sum: np.ndarray) -> dict[str, np.ndarray]:
    """From streaming moments of mu and the sum of sigma^2 = exp(logvar) per variable."""
    var_mu = mu.var
    mean_sigma2 = np.asarray(sigma2_sum, dtype=np.float64) / mu.n
    return {
        "variable": np.arange(len(var_mu)),
        "mean_mu": mu.mean,
        "var_mu": var_mu,
        "mean_sigma2": mean_sigma2,
        "stationary": var_mu + mean_sigma2,
        "active": var_mu > BURDA_ACTIVE,
        "inactive": inactive(var_mu, mean_sigma2),
    }


def summary(stats: dict[str, np.ndarray]) -> dict[str, float]:
    # Split-VAE's get_stats reports its two tests as two counts; `inactive` is their union
    return {"latent/active_units": int(stats["active"].sum()),
            "latent/inactive": int(stats["inactive"].sum()),
            "latent/inactive_var_mu": int((stats["var_mu"] < INACTIVE_VAR).sum()),
            "latent/inactive_sigma2": int((stats["mean_sigma2"] > INACTIVE_SIGMA2).sum()),
            "latent/stationary_mean": float(stats["stationary"].mean()),
            "latent/stationary_min": float(stats["stationary"].min()),
            "latent/stationary_max": float(stats["stationary"].max()),
            "latent/variables": len(stats["variable"])}


def zero_variables(z: np.ndarray, which: np.ndarray) -> np.ndarray:
    """Codes with the variables flagged in `which` set to 0."""
    z = np.array(z, copy=True)
    z[:, np.asarray(which, dtype=bool)] = 0
    return z


def least_informative_active(gain: np.ndarray, inactive: np.ndarray) -> np.ndarray:
    """As many active variables as there are inactive ones (every active one when there are
    fewer), the least informative first: the baseline of the zero-out check (zeroing that
    many variables that do carry information)."""
    inactive = np.asarray(inactive, dtype=bool)
    active = np.flatnonzero(~inactive)
    chosen = active[np.argsort(np.asarray(gain)[active], kind="stable")][:int(inactive.sum())]
    mask = np.zeros(len(inactive), dtype=bool)
    mask[chosen] = True
    return mask


def table(stats: dict[str, np.ndarray]) -> list[dict]:
    """Rows for `latent_stats.json`."""
    keys = list(stats)
    return [{k: stats[k][i].item() for k in keys} for i in range(len(stats["variable"]))]
