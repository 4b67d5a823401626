"""Thin Ray Data wrappers over codes alone: map the pure functions over encoded shards,
reduce in the driver. Passes that run a model are in analysis/model_passes.py (torch)."""

from __future__ import annotations

import numpy as np

from analysis.moments import Moments, merge_all
from latentatlas.batches import map_concat


def moments_row(m: Moments, prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}_n": np.array([m.n]), f"{prefix}_mean": m.mean[None],
            f"{prefix}_m2": m.m2[None]}


def moments_from(parts: dict[str, np.ndarray], prefix: str) -> Moments:
    """Merged moments of per-batch partials (`moments_row` outputs, joined)."""
    return merge_all(Moments(int(n), np.asarray(mean), np.asarray(m2)) for n, mean, m2 in zip(
        parts[f"{prefix}_n"], parts[f"{prefix}_mean"], parts[f"{prefix}_m2"], strict=True))


def latent_partial(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-batch moments of mu and the sum of sigma^2: one output row per input batch."""
    # A generator's codes are points (no posterior): sigma^2 = 0.
    sigma2 = (np.exp(batch["logvar"].astype(np.float64)) if "logvar" in batch
              else np.zeros(np.shape(batch["mu"])))
    return {**moments_row(Moments.of(batch["mu"]), "mu"), "sigma2_sum": sigma2.sum(axis=0)[None]}


def latent_moments(source) -> tuple[Moments, np.ndarray]:
    """Moments of mu and the summed sigma^2 over batches of `mu` and `logvar` (none: 0)."""
    parts = map_concat(source, latent_partial, batch_size=8192)
    return moments_from(parts, "mu"), parts["sigma2_sum"].sum(axis=0)
