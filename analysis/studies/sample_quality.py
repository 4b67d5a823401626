"""How good a generator's samples are, and what the seed's remedies do to them: FID, KID and
the variance loss of samples drawn from the prior, from a Gaussian mixture fitted to the
model's codes of real images (Split-VAE's sampler), and through a second-stage VAE (Dai &
Wipf), raw and renormalised: by the authors' one scale (Asperti's variance-loss paper) and
by a scale per variable, all on the same first stage, in one or more named feature
spaces; or of images a user brings. The real side is a dataset split, or statistics
(pytorch-fid's `mu`, `sigma`) read from a file."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from analysis import figures
from analysis.renormalisation import (
    renormalise_authors,
    renormalise_per_variable,
    second_stage_codes,
)
from latentatlas import fid_stats, quality, samplers
from latentatlas.data.base import Split
from latentatlas.errors import UserError
from latentatlas.features import Extractor
from latentatlas.frechet import Reference
from latentatlas.images import readable_grid
from latentatlas.models import VAE
from latentatlas.record import Record

__all__ = ["SampleQuality", "measure_images", "measure_quality", "references_of",
           "sampler_codes"]

GRID = 64  # samples per sampler in the side-by-side picture


@dataclass
class SampleQuality:
    generated: dict[str, str]  # {"model": address} or {"images": path}
    second_stage: str | None
    extractors: list[Extractor]
    references: dict[str, Reference]  # extractor name -> the real side
    samples: int  # generated images per sampler
    scores: dict[str, dict[str, dict]]  # extractor name -> sampler -> fid, kid_mean, ...
    grids: dict[str, np.ndarray]  # sampler -> image grid
    metrics: dict
    notes: list[str]  # what was not scored, and why

    def table(self) -> dict[str, list]:
        rows = [{"extractor": e, "sampler": s, **v} for e, by in self.scores.items()
                for s, v in by.items()]
        columns = dict.fromkeys(k for r in rows for k in r)
        return {c: [r.get(c) for r in rows] for c in columns}

    def record(self, name: str = "fid") -> Record:
        reference = next(iter(self.references.values())).described
        return Record(
            "fid", name,
            params={**self.generated, "second_stage": self.second_stage,
                    "samplers": ",".join(self.grids),
                    **quality.fid_params(self.extractors, self.samples, reference)},
            metrics=self.metrics,
            tags={"latentatlas.fid_extractor": ",".join(e.source for e in self.extractors)},
            tables={"sample_quality.json": self.table()},
            figures={"sample_grids.png": lambda: figures.sample_grids(self.grids)})


def references_of(extractors: list[Extractor], real: Split, samples: int,
                  **where) -> dict[str, Reference]:
    """The real side in each extractor's space: the split's first `samples` images."""
    images = real.images[:samples]
    described = fid_stats.described_images(real.dataset, real.split, len(images))
    return {e.name: fid_stats.reference_of(e, images, described, **where) for e in extractors}


def no_kid_note(references: dict[str, Reference]) -> list[str]:
    return [f"{name}: no KID (the reference is statistics, {ref.described}, without the "
            "features KID needs)" for name, ref in references.items() if ref.features is None]


def sampler_codes(model, images: np.ndarray | None, seed: int, *, samples: int,
                  gmm_components: int = 0, second_stage=None) -> dict[str, np.ndarray]:
    """`samples` codes per sampler: `prior` always; `gmm` for a VAE when components are
    given (fitted to its codes of `images`); with a second stage (its model and logged
    spec) `two_stage`, and the same codes renormalised to the first stage's spread,
    `two_stage_renorm_authors` (one scale) and `two_stage_renorm_variable`."""
    codes = {"prior": samplers.prior_codes(model, samples, seed)}
    if isinstance(model, VAE) and gmm_components:
        codes["gmm"] = samplers.gmm_codes(model, images, gmm_components, samples, seed)
    if second_stage is not None:
        stage2, spec = second_stage
        raw = second_stage_codes(stage2, samples, seed)
        moments = spec["var_mu"], spec["mean_sigma2"]
        codes.update(two_stage=raw,
                     two_stage_renorm_authors=renormalise_authors(raw, *moments),
                     two_stage_renorm_variable=renormalise_per_variable(raw, *moments))
    return codes


def check_second_stage(model, address: str, stage2, spec: dict, stage2_address: str) -> None:
    first = spec.get("first_stage")
    if first is None or not hasattr(stage2, "decode") or "var_mu" not in spec:
        raise UserError(f"--second-stage {stage2_address}: not a second stage "
                        f"({spec['model']['name']})")
    if stage2.input_shape != (model.latent_dim,):
        raise UserError(f"--second-stage {stage2_address}: learns {stage2.input_shape[0]}-d "
                        f"codes, the model's are {model.latent_dim}-d")
    if address.startswith("runs:/") and first.startswith("runs:/") and first != address:
        raise UserError(f"--second-stage {stage2_address}: trained on the codes of {first}, "
                        f"not of {address}")


# The authors renormalise second-stage samples only when the second stage shows "an evident
# variance loss" on the first stage's codes: delta_var / mse above this (BalancingVAE code).
AUTHORS_RENORM_RATIO = 0.25


@torch.no_grad()
def second_stage_variance_loss(stage2, mu: np.ndarray) -> dict[str, float]:
    """The variance loss of a second stage on the first stage's codes `mu` (reconstructed
    through its posterior means): `second_stage/mse`, `second_stage/delta_var` (mean variance
    of mu minus that of the reconstructions), and whether the authors would renormalise."""
    z = torch.as_tensor(mu, dtype=torch.float32)
    z_hat = stage2.decode(stage2.encode(z)[0]).numpy().astype(np.float64)
    mu = np.asarray(mu, np.float64)
    mse = float(((mu - z_hat) ** 2).mean())
    delta = float(mu.var(axis=0).mean() - z_hat.var(axis=0).mean())
    return {"second_stage/mse": mse, "second_stage/delta_var": delta,
            "second_stage/authors_renormalise": float(delta > AUTHORS_RENORM_RATIO * mse)}


def real_side(real: Split | dict[str, Reference], shape: tuple, what: str,
              extractors: list[Extractor], samples: int, **where) -> dict[str, Reference]:
    """The references: given (statistics read from a file), or of the split's first `samples`
    images, which must have the generated images' `shape`."""
    if not isinstance(real, Split):
        return real
    if tuple(shape) != real.shape:
        raise UserError(f"{what} {tuple(shape)} images, the data are {real.shape}")
    return references_of(extractors, real, samples, **where)


def by_extractor(extractors: list[Extractor], references: dict[str, Reference], score
                 ) -> tuple[dict, dict]:
    """`score(extractor, reference)` -> {sampler: scores} for each extractor, and the
    metrics of them all."""
    scores, metrics = {}, {}
    for e in extractors:
        scores[e.name] = score(e, references[e.name])
        metrics.update(quality.quality_metrics(e.name, scores[e.name]))
    return scores, metrics


def measure_quality(model, spec: dict, address: str, extractors: list[Extractor],
                    real: Split | dict[str, Reference], *, second_stage=None,
                    gmm_components: int = 100, samples: int = 10000, seed: int = 0,
                    **where) -> SampleQuality:
    """`real`: the real images scored (their first `samples`), or the references (extractor
    name -> statistics read from a file: no KID, and no GMM sampler, which fits the model's
    codes of real images); `second_stage`: (model, spec, address) or None; `where`: actors,
    use_gpu, here."""
    if second_stage is not None:
        check_second_stage(model, address, *second_stage)
    references = real_side(real, spec["input_shape"], f"--model {address}: makes", extractors,
                           samples, **where)
    notes, images = [], None
    if isinstance(real, Split):
        images = real.images[:samples]
        samples = len(images)
    elif gmm_components and isinstance(model, VAE):
        notes.append("gmm: not scored (it fits the model's codes of real images; give "
                     "--data rather than --ref-stats)")
        gmm_components = 0
    codes = sampler_codes(model, images, seed, samples=samples, gmm_components=gmm_components,
                          second_stage=second_stage and second_stage[:2])
    scores, metrics = by_extractor(extractors, references, lambda e, ref: quality.score_samplers(
        e, ref, model, spec, codes, seed, **where))
    if second_stage is not None and images is not None:
        metrics.update(second_stage_variance_loss(second_stage[0],
                                                  samplers.posterior_means(model, images)))
    elif second_stage is not None:
        notes.append("second_stage/*: not measured (the second stage's variance loss is on "
                     "the model's codes of real images; give --data)")
    with torch.no_grad():
        grids = {name: readable_grid(model.decode(torch.as_tensor(c[:GRID])).numpy(), ncols=8)
                 for name, c in codes.items()}
    return SampleQuality({"model": address}, second_stage and second_stage[2], extractors,
                         references, samples, scores, grids, metrics,
                         notes + no_kid_note(references))


def measure_images(images: np.ndarray, path: str, extractors: list[Extractor],
                   real: Split | dict[str, Reference], *, samples: int = 10000, seed: int = 0,
                   **where) -> SampleQuality:
    """FID, KID and variance loss of uint8 `images` (N, C, H, W; their first `samples`), read
    from `path`, against `real` (as `measure_quality` takes it)."""
    images = images[:samples]
    references = real_side(real, images.shape[1:], f"--images {path}:", extractors, samples,
                           **where)
    scores, metrics = by_extractor(extractors, references, lambda e, ref: {
        "images": quality.score_images(e, ref, images, f"--images {path}", seed, **where)})
    grid = readable_grid(images[:GRID] / 255.0, ncols=8)
    return SampleQuality({"images": path}, None, extractors, references, len(images), scores,
                         {"images": grid}, metrics, no_kid_note(references))
