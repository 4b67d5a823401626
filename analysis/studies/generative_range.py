"""The generative range of a generator (the seed's "StyleGAN regenerates its own samples with
MSE ~0.026 but the support set with ~0.251"): regeneration errors on its own samples, on
real images and on a support set chosen in a reference latent space (a VAE's encoding of
the same images); per sector of that space, the share of real images the generator
reaches and the share of its samples that land there; precision / recall / density /
coverage between real and generated images in the reference space.

The headline is the first guess alone (`range/guess_*`: the recoder's, as the seed's numbers
are recoder-only regenerations), with the support set tested against random real sets of
its size; the errors after gradient refinement beside (`range/mse_*`, `range/random_*`).
Without a recoder or an own encoder, gradient ascent alone from the mean code is the
headline (`range/mse_*`; the seed's double check), and nothing of the mean code is logged."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from analysis import figures
from analysis.coverage import prdc
from analysis.defaults import PRDC_K
from analysis.generative_range import (
    MEAN_CODE,
    MIN_SECTOR_IMAGES,
    ecdf,
    inversions,
    missed_sectors,
    reach_threshold,
    sector_shares,
    subset_test,
)
from analysis.model_passes import regeneration_errors
from analysis.sectors import sector_ids, sector_signs
from analysis.studies.sectors import SectorCounts, support_rows
from latentatlas.data.base import Split
from latentatlas.encode import Encoding
from latentatlas.errors import UserError
from latentatlas.images import readable_grid
from latentatlas.inversion import NO_REFINEMENT, Refinement
from latentatlas.models import VAE, share_model
from latentatlas.record import Record
from latentatlas.samplers import posterior_means

__all__ = ["GenerativeRange", "measure_range", "first_guess_of", "SETS"]

SETS = ("generated", "real", "support")


@dataclass
class GenerativeRange:
    generator: str  # its address (MLflow URI or module:function)
    inverter: str  # how images were inverted
    first_guess: str  # what made the first guess: "recoder", "its own encoder", MEAN_CODE
    headline: str  # what made the headline numbers (analysis.generative_range.inversions)
    sectors: SectorCounts  # of the reference encoding
    errors: dict[str, np.ndarray]  # set -> per-image MSE after inversion
    guesses: dict[str, np.ndarray]  # set -> per-image MSE of the first guess (none: the mean code)
    threshold: float
    shares: dict[str, np.ndarray]
    missed: np.ndarray
    examples: np.ndarray | None  # rows of real images of missed sectors, in [0, 1]
    metrics: dict

    def record(self, name: str = "range") -> Record:
        s, n = self.sectors, len(self.shares["sector"])
        judged = np.flatnonzero(self.shares["real"] >= MIN_SECTOR_IMAGES)
        curves = {f"{k} ({len(v)})": ecdf(v) for k, v in self.errors.items()}
        # the first guess (the headline) dashed beside, where refinement changed anything
        curves.update({f"{k} first guess ({self.first_guess} only)": ecdf(v)
                       for k, v in self.guesses.items()
                       if not np.array_equal(v, self.errors[k])})
        missed = set(self.missed.tolist())
        return Record(
            "range", name,
            params={"generator": self.generator, "inverter": self.inverter,
                    "headline": self.headline,
                    "headline_metrics": "range/guess_*" if self.guesses else "range/*",
                    "reference": str(s.encoding.path), "k": s.k, "threshold": s.threshold,
                    "variables": ",".join(map(str, s.variables))},
            metrics=self.metrics,
            tables={"range_sectors.json": {
                "sector": list(range(n)), "signs": [sector_signs(i, s.k) for i in range(n)],
                **{k: v.tolist() for k, v in self.shares.items() if k != "sector"},
                "missed": [i in missed for i in range(n)]}},
            figures={"range_errors_ecdf.png": lambda: figures.error_ecdfs(
                         curves, self.threshold),
                     "range_sector_shares.png": lambda: figures.sector_shares_bars(
                         self.shares, judged, self.missed)},
            images={} if self.examples is None else {"range_missed_sectors": self.examples},
            files={"range_errors.npz": lambda path: np.savez(path, threshold=self.threshold, **{
                f"{k}_{kind}": v for kind, d in (("mse", self.errors), ("guess", self.guesses))
                for k, v in d.items()})})


def generated_split(generator, samples: int, seed: int) -> Split:
    """The generator's own samples as a dataset split (uint8, like real images)."""
    with torch.no_grad():
        codes = generator.sample_codes(samples, torch.Generator().manual_seed(seed))
        images = generator.decode(codes).clamp(0, 1).numpy()
    return Split("generated", "samples", (images * 255).round().astype(np.uint8),
                 np.full(samples, -1, dtype=np.int64))


def missed_examples(split: Split, sectors: SectorCounts, missed: np.ndarray, seed: int,
                    rows: int = 6, per_row: int = 8) -> np.ndarray | None:
    """A row of real images from each of the most crowded missed sectors."""
    if not len(missed):
        return None
    rng = np.random.default_rng(seed)
    picked, names = [], []
    for sector in missed[:rows]:
        names.append(f"sector {sector}")
        members = sectors.index[sectors.ids == sector]
        chosen = rng.choice(members, min(per_row, len(members)), replace=False)
        padded = np.ones((per_row, *split.shape), np.float32)
        padded[:len(chosen)] = split.images[np.sort(chosen)] / 255.0
        picked.append(padded)
    return readable_grid(np.concatenate(picked), ncols=per_row, rows=names)


def first_guess_of(generator, recoder) -> str:
    """What makes the first guess of a code: a recoder, else the model's own encoder (a VAE's,
    a user's `encode`), else the mean code (no inversion by itself)."""
    if recoder is not None:
        return "recoder"
    if isinstance(generator, VAE) or getattr(generator, "has_encoder", False):
        return "its own encoder"
    return MEAN_CODE


def measure_range(generator, generator_spec: dict, address: str, real: Split,
                  sectors: SectorCounts, reference_model, *, recoder=None,
                  refine: Refinement = NO_REFINEMENT, samples: int = 2000,
                  real_images: int | None = None, support_size: int | None = None,
                  exclude: str | None = None, quantile: float = 0.95, seed: int = 0,
                  draws: int = 2000, actors: int | None = None, use_gpu: bool = False,
                  here: bool | None = None) -> GenerativeRange:
    """`generator`: what decodes codes (a GAN, a VAE's decoder, a user's module) with its
    spec; `recoder`: (model, spec, address) or None (a VAE inverts with its encoder);
    `sectors`: the sectors of the reference encoding of `real` (a VAE's);
    `reference_model`: that VAE, which also encodes the generated samples; `real_images`:
    invert only the first that many real images (and the support set, chosen among all);
    `draws`: random real sets the support set is tested against."""
    first_guess = first_guess_of(generator, recoder)
    # the mean code alone is refused
    headline, prefix = inversions(first_guess, refine.steps, f"--generator {address}")[0]
    ref: Encoding = sectors.encoding
    if (ref.meta.dataset, ref.meta.split, ref.meta.rows) != (real.dataset, real.split,
                                                              len(real)):
        raise UserError(f"--support-from {ref.path}: encodes {ref.meta.dataset}:"
                        f"{ref.meta.split} ({ref.meta.rows} rows), not the {len(real)} images "
                        f"of {real.dataset}:{real.split} given as --data")
    if tuple(generator.input_shape) != real.shape:
        raise UserError(f"--generator {address}: makes {tuple(generator.input_shape)} images, "
                        f"the data are {real.shape}")
    own = generated_split(generator, samples, seed)
    shared = {"model": share_model(generator, generator_spec)}
    if recoder is not None:
        shared["recoder"] = share_model(recoder[0], recoder[1])
    support, _, _ = support_rows(sectors, support_size, exclude, seed)
    if real_images is not None and not len(support) <= real_images:
        # the random real sets the support set is tested against are drawn among these
        raise UserError(f"--real-images {real_images}: at least the support set's "
                        f"{len(support)} images are needed")
    n_real = len(real) if real_images is None else min(real_images, len(real))
    inverted = np.union1d(np.arange(n_real), support)  # sorted: the first n_real come first
    chosen = real if len(inverted) == len(real) else replace(
        real, images=real.images[inverted], labels=real.labels[inverted],
        attrs={k: v[inverted] for k, v in real.attrs.items()})
    passes = {name: regeneration_errors(split, shared, refine, actors=actors, use_gpu=use_gpu,
                                        here=here)
              for name, split in (("generated", own), ("real", chosen))}
    at_support = np.searchsorted(inverted, support)

    def by_set(column: str) -> dict[str, np.ndarray]:
        return {"generated": passes["generated"][column],
                "real": passes["real"][column][:n_real],
                "support": passes["real"][column][at_support]}

    errors = by_set("inversion_mse")
    guesses = by_set("guess_mse") if first_guess != MEAN_CODE else {}
    threshold = reach_threshold(errors["generated"], quantile)

    real_ids = np.full(len(real), -1)
    real_ids[sectors.index] = sectors.ids
    real_ids = real_ids[:n_real]
    generated_codes = posterior_means(reference_model, own.images)
    shares = sector_shares(real_ids, errors["real"],
                           sector_ids(generated_codes, sectors.variables, sectors.threshold),
                           len(sectors.counts), threshold)
    missed = missed_sectors(shares)

    rng = np.random.default_rng(seed)
    real_codes = ref.arrays(["index", "mu"])["mu"]
    matched = real_codes[rng.choice(len(real_codes), min(samples, len(real_codes)),
                                    replace=False)]
    knn = prdc(matched, generated_codes, k=PRDC_K)
    # range/* after inversion (the first guess where no steps follow it), range/guess_* the
    # first guess alone where it inverts; the same random real sets (one seed) for both, so
    # their intervals differ only by the inversion
    metrics = {**regeneration_metrics(errors, "", draws, seed),
               **(regeneration_metrics(guesses, "guess_", draws, seed) if guesses else {}),
               "range/random_draws": draws, "range/real_images": n_real,
               "range/threshold": threshold,
               "range/coverage": float((errors["real"] <= threshold).mean()),
               "range/missed_sectors": len(missed),
               "range/judged_sectors": int((shares["real"] >= MIN_SECTOR_IMAGES).sum()),
               "range/samples": samples, "range/support_size": len(support),
               **{f"range/latent_{k}": v for k, v in knn.items()}}
    inverter = f"recoder {recoder[2]}" if recoder is not None else first_guess
    if refine.steps:
        inverter += f" + {refine.steps} gradient steps ({refine.loss}, lr {refine.lr})"
    return GenerativeRange(address, inverter, first_guess,
                           headline + (" (first guess)" if prefix else ""), sectors, errors,
                           guesses,
                           threshold, shares, missed,
                           missed_examples(real, sectors, missed, seed), metrics)


def regeneration_metrics(errors: dict[str, np.ndarray], prefix: str, draws: int,
                         seed: int) -> dict[str, float]:
    """`range/<prefix>*` of one regeneration (`REGENERATION_KEYS`): the mean error per set,
    real and support over own samples, the support set against random real sets."""
    mse = {k: float(v.mean()) for k, v in errors.items()}
    random = subset_test(errors["support"], errors["real"], draws, seed)
    return {**{f"range/{prefix}mse_{k}": v for k, v in mse.items()},
            f"range/{prefix}ratio_real": mse["real"] / mse["generated"],
            f"range/{prefix}ratio_support": mse["support"] / mse["generated"],
            **{f"range/{prefix}random_{k}": random[k] for k in ("lo", "hi", "p")}}
