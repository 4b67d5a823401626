"""Information (reconstruction) gain of each latent variable, and latent traversals."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["Decoder", "ablation_errors", "per_item_mse", "information_gain", "ranking", "traversal"]

Decoder = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def ablation_errors(decode: Decoder, z: torch.Tensor, x: torch.Tensor) -> np.ndarray:
    """Summed per-item pixel MSE over the batch: entry 0 with all variables, entry i+1
    with z_i set to 0. Sums (not means) so batches add up exactly; summed in float64, so
    the order in which rows arrive (Ray Data bundles blocks as they come) moves the sums by
    float64 rounding only, far below the gains' scale."""
    errors = [per_item_mse(decode(z), x).double().sum()]
    for i in range(z.shape[1]):
        zi = z.clone()
        zi[:, i] = 0
        errors.append(per_item_mse(decode(zi), x).double().sum())
    return torch.stack(errors).cpu().numpy()


def per_item_mse(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (x_hat - x).pow(2).flatten(1).mean(dim=1)


def information_gain(error_sums: np.ndarray, n: int) -> np.ndarray:
    """Mean error with z_i zeroed minus mean error with all variables, per variable."""
    mean = np.asarray(error_sums, dtype=np.float64) / n
    return mean[1:] - mean[0]


def ranking(gain: np.ndarray) -> np.ndarray:
    """Variables from most to least informative (stable for ties)."""
    return np.argsort(-np.asarray(gain), kind="stable")


@torch.no_grad()
def traversal(decode: Decoder, base: torch.Tensor, variables, values) -> torch.Tensor:
    """Images decoded from `base` (d,) with variable v swept over `values`, one row per v:
    shape (len(variables) * len(values), C, H, W)."""
    rows = []
    for v in variables:
        z = base.repeat(len(values), 1)
        z[:, v] = torch.as_tensor(values, dtype=z.dtype)
        rows.append(decode(z))
    return torch.cat(rows)
