"""Variance loss (Asperti 2020): generated data vary less than real data, by about the MSE."""

from __future__ import annotations

from analysis.moments import Moments

__all__ = ["delta_var", "variance_loss"]

def delta_var(real: Moments, other: Moments) -> float:
    """mean over pixels of var(x, axis=0) minus the same for the other images."""
    return float(real.var.mean() - other.var.mean())


def variance_loss(real: Moments, recon: Moments, sse: float, generated: Moments | None = None):
    """The three `variance_loss/*` metrics from streaming pixel moments and the summed
    squared reconstruction error (mse = sse / (N * pixels))."""
    out = {"variance_loss/delta_var_recon": delta_var(real, recon),
           "variance_loss/mse_recon": float(sse / (real.n * real.mean.size))}
    if generated is not None:
        out["variance_loss/delta_var_gen"] = delta_var(real, generated)
    return out
