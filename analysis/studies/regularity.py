"""How far a 3-D latent space's codes sit from the N(0, I) prior, and its pictures: a 3-D
scatter of test codes, and prior samples decoded on grids over (z0, z1) at z2 in SLICES."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from analysis.figures import scatter3d
from analysis.regularity import aggregate_gaussian_kl, slice_grid
from latentatlas.encode import Encoding
from latentatlas.images import image_grid
from latentatlas.record import Record

__all__ = ["CodeRegularity", "measure_regularity", "SLICES", "GRID"]

SLICES = [-1.5, 0.0, 1.5]  # z2 values of the prior-sample pictures
GRID = 8  # n x n samples per slice


@dataclass
class CodeRegularity:
    metrics: dict  # regularity/*
    codes: np.ndarray
    labels: np.ndarray
    slices: np.ndarray  # the prior-sample grids side by side

    def record(self) -> Record:
        """Pictures and metrics for the trained model's own run."""
        return Record("train", "", metrics=self.metrics, images={"prior_slices": self.slices},
                      figures={"codes_3d.png": lambda: scatter3d(
                          self.codes, self.labels, f"{len(self.codes)} test codes")})


def measure_regularity(enc: Encoding, model: torch.nn.Module) -> CodeRegularity:
    rows = enc.arrays(["mu", "label"])
    codes = rows["mu"]
    with torch.no_grad():
        grids = [image_grid(model.decode(torch.from_numpy(z).float()).numpy(), ncols=GRID)
                 for z in slice_grid(SLICES, GRID)]
    gap = np.full((grids[0].shape[0], 8, 3), 255, np.uint8)  # white between slices
    slices = np.concatenate([part for g in grids for part in (g, gap)][:-1], axis=1)
    metrics = {"regularity/aggregate_kl": aggregate_gaussian_kl(codes),
               "regularity/code_radius_p99": float(np.percentile(
                   np.linalg.norm(codes, axis=1), 99))}
    return CodeRegularity(metrics, codes, rows["label"], slices)
