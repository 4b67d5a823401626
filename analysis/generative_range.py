"""The generative range (pure numpy): how well a generator regenerates images it made, real
images and a support set, and which sectors of a reference latent space it does not reach.

A generator "reaches" a real image when inverting and regenerating it costs no more than
the `quantile` (default 95th percentile) of the same error on the generator's own samples:
images it made are in its range by construction, so their errors set the bar.

The seed's point is that the support set lies outside the range more than ordinary real
images do; `subset_test` sets the support set's mean error against the means of random
real sets of the same size."""

from __future__ import annotations

import numpy as np

from latentatlas.errors import UserError

__all__ = ["MIN_SECTOR_IMAGES", "UNDER_FACTOR", "MEAN_CODE", "REGENERATION_KEYS", "inversions",
           "regeneration", "reach_threshold", "sector_shares", "missed_sectors", "ecdf",
           "random_subset_means", "subset_test"]

MEAN_CODE = "the mean code"  # where inversion starts without a recoder or an own encoder
REGENERATION_KEYS = ("mse_generated", "mse_real", "mse_support", "ratio_real",
                     "ratio_support", "random_lo", "random_hi", "random_p")

MIN_SECTOR_IMAGES = 5  # sectors with fewer real images are not judged
UNDER_FACTOR = 10  # "missed": the generator's share below 1/10 of the data's share


def inversions(first_guess: str, steps: int,
               generator: str = "the generator") -> list[tuple[str, str]]:
    """The regenerations one run measures, the headline first: (what made them, the prefix of
    their `range/` metrics). A first guess that inverts (`first_guess`: "recoder", "its own
    encoder") alone is `range/guess_*`, and after `steps` gradient steps `range/*` beside it.
    Without one (`MEAN_CODE`), gradient ascent alone from the mean code is the headline,
    `range/*`, and nothing is logged of the mean code itself: it regenerates every image as
    one image, which is no inversion, so with no steps either the run is refused (the line
    names `generator`)."""
    if first_guess != MEAN_CODE:
        return [(f"{first_guess} only", "guess_"),
                *([(f"{first_guess} + {steps} gradient steps", "")] if steps else [])]
    if not steps:
        raise UserError(f"{generator}: no recoder, no encoder of its own and no --refine: the "
                        "mean code alone is not an inversion; give --recoder and/or --refine "
                        "STEPS")
    return [(f"gradient ascent, {steps} steps from the mean code", "")]


def regeneration(metrics: dict, prefix: str) -> dict[str, float]:
    """One regeneration's numbers (`REGENERATION_KEYS`) out of a range run's metrics."""
    return {k: metrics[f"range/{prefix}{k}"] for k in REGENERATION_KEYS}


def reach_threshold(own_errors: np.ndarray, quantile: float = 0.95) -> float:
    return float(np.quantile(np.asarray(own_errors, np.float64), quantile))


def sector_shares(real_sectors: np.ndarray, real_errors: np.ndarray,
                  generated_sectors: np.ndarray, n_sectors: int,
                  threshold: float) -> dict[str, np.ndarray]:
    """Per sector (index = sector id; codes outside every sector, id -1, are left out): real
    images, their share of all real images, the share of them regenerated within
    `threshold`, and the share of generated samples that land in the sector."""
    real_sectors, generated_sectors = np.asarray(real_sectors), np.asarray(generated_sectors)
    inside = real_sectors >= 0
    count = np.bincount(real_sectors[inside], minlength=n_sectors)
    reached = np.bincount(real_sectors[inside],
                          weights=(np.asarray(real_errors)[inside] <= threshold),
                          minlength=n_sectors)
    made = generated_sectors[generated_sectors >= 0]
    return {"sector": np.arange(n_sectors),
            "real": count,
            "data_share": count / max(len(real_sectors), 1),
            "reached_share": np.divide(reached, count, out=np.zeros(n_sectors),
                                       where=count > 0),
            "generator_share": np.bincount(made, minlength=n_sectors)
            / max(len(generated_sectors), 1)}


def missed_sectors(shares: dict[str, np.ndarray], min_images: int = MIN_SECTOR_IMAGES,
                   factor: float = UNDER_FACTOR) -> np.ndarray:
    """Sectors holding at least `min_images` real images where the generator's share is below
    1/`factor` of the data's share (missing or far underrepresented), most crowded first."""
    judged = shares["real"] >= min_images
    missed = judged & (shares["generator_share"] * factor < shares["data_share"])
    order = np.argsort(-shares["real"], kind="stable")
    return order[missed[order]]


def ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted values, share of values <= each)."""
    x = np.sort(np.asarray(values, np.float64))
    return x, np.arange(1, len(x) + 1) / len(x)


def random_subset_means(errors: np.ndarray, size: int, draws: int, seed: int = 0) -> np.ndarray:
    """The mean of `errors` over each of `draws` random subsets of `size` rows, rows distinct
    within a subset (as a support set's are): the means that sets of that size, drawn with
    no regard to the latent space, show. One `choice` per draw (a partial shuffle) takes
    ~40 ms for 2000 draws of 10k rows at any size; exact vectorised samplers cost
    O(draws * size^2) time (Floyd's) or O(draws * len(errors)) memory (random keys)."""
    errors = np.asarray(errors, np.float64)
    if not 1 <= size <= len(errors):
        raise ValueError(f"subset size {size} outside 1..{len(errors)}")
    rng = np.random.default_rng(seed)
    return np.array([errors[rng.choice(len(errors), size, replace=False)].mean()
                     for _ in range(draws)])


def subset_test(support_errors: np.ndarray, real_errors: np.ndarray, draws: int = 2000,
                seed: int = 0) -> dict[str, float]:
    """Is the support set harder to regenerate than a random set of real images of its size?
    `lo`, `hi`: the 2.5th and 97.5th percentiles of the random sets' mean errors (where 95%
    of them fall); `p`: the share of random sets whose mean is >= the support set's (a tie
    counts, so constant errors give p = 1, never a false "outside"); `mean`: of their means.
    A support set above `hi` (p < 0.025) lies outside the range more than real images do."""
    means = random_subset_means(real_errors, len(support_errors), draws, seed)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"lo": float(lo), "hi": float(hi),
            "p": float((means >= np.mean(support_errors, dtype=np.float64)).mean()),
            "mean": float(means.mean())}
