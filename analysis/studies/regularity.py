"""How well a 3-D latent space's prior matches its codes, and its pictures: a 3-D scatter of
test codes, and prior samples decoded on the seed's grid, five horizontal slices (z2 in
SLICES) of 5 x 5 points over (z0, z1). Measured: the latent precision / recall / density /
coverage of N(0, I) draws against the codes, the FID of the decoded draws against the test
images in a classifier's features (when one is given), and how far the codes sit from the
prior (aggregate KL)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from analysis.coverage import prdc
from analysis.defaults import PRDC_K
from analysis.figures import scatter3d
from analysis.regularity import aggregate_gaussian_kl, slice_grid
from latentatlas import quality, samplers
from latentatlas.encode import Encoding
from latentatlas.features import Extractor
from latentatlas.frechet import Reference
from latentatlas.images import image_grid
from latentatlas.record import Record

__all__ = ["CodeRegularity", "measure_regularity", "SLICES", "GRID", "SPAN"]

SPAN = 2.0  # the pictures' grid runs over [-SPAN, SPAN] on every axis
SLICES = np.linspace(-SPAN, SPAN, 5).tolist()  # z2 of the seed's five horizontal slices
GRID = 5  # n x n samples per slice: the seed's 25 points


@dataclass
class CodeRegularity:
    metrics: dict  # regularity/*
    codes: np.ndarray
    labels: np.ndarray
    slices: np.ndarray  # the prior-sample grids side by side
    params: dict  # what the prior draws' FID depends on (`quality.fid_params`), if scored

    def record(self) -> Record:
        """Pictures and metrics for the trained model's own run."""
        return Record("train", "", params=self.params, metrics=self.metrics,
                      images={"prior_slices": self.slices},
                      figures={"codes_3d.png": lambda: scatter3d(
                          self.codes, self.labels, f"{len(self.codes)} test codes")})


def slice_pictures(model: torch.nn.Module) -> np.ndarray:
    """The prior decoded on the slice grid: one 5 x 5 image grid per slice, side by side."""
    with torch.no_grad():
        grids = [image_grid(model.decode(torch.from_numpy(z).float()).numpy(), ncols=GRID)
                 for z in slice_grid(SLICES, GRID, SPAN)]
    gap = np.full((grids[0].shape[0], 8, 3), 255, np.uint8)  # white between slices
    return np.concatenate([part for g in grids for part in (g, gap)][:-1], axis=1)


def measure_regularity(enc: Encoding, model: torch.nn.Module, spec: dict, *,
                       fid: tuple[Extractor, Reference] | None = None,
                       seed: int = 0) -> CodeRegularity:
    """`enc`: the model's test codes; as many N(0, I) draws are compared with them, and, with
    `fid` (an extractor and its reference of the encoded test images), decoded and
    scored."""
    rows = enc.arrays(["mu", "label"])
    codes = rows["mu"]
    draws = samplers.prior_codes(model, len(codes), seed)
    metrics = {"regularity/aggregate_kl": aggregate_gaussian_kl(codes),
               "regularity/code_radius_p99": float(np.percentile(
                   np.linalg.norm(codes, axis=1), 99)),
               **{f"regularity/prior_{k}": v for k, v in prdc(codes, draws, PRDC_K).items()}}
    params = {}
    if fid is not None:
        extractor, reference = fid
        (scores,) = quality.score_samplers(extractor, reference, model, spec,
                                           {"prior": draws}, seed).values()
        metrics |= {"regularity/prior_fid": scores["fid"],
                    "regularity/prior_kid": scores["kid_mean"]}
        params = quality.fid_params([extractor], len(draws), reference.described)
    return CodeRegularity(metrics, codes, rows["label"], slice_pictures(model), params)
