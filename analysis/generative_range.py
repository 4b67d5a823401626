"""The generative range (pure numpy): how well a generator regenerates images it made, real
images and a support set, and which sectors of a reference latent space it does not reach.

A generator "reaches" a real image when inverting and regenerating it costs no more than
the `quantile` (default 95th percentile) of the same error on the generator's own samples:
images it made are in its range by construction, so their errors set the bar."""

from __future__ import annotations

import numpy as np

__all__ = ["MIN_SECTOR_IMAGES", "UNDER_FACTOR", "reach_threshold", "sector_shares",
           "missed_sectors", "ecdf"]

MIN_SECTOR_IMAGES = 5  # sectors with fewer real images are not judged
UNDER_FACTOR = 10  # "missed": the generator's share below 1/10 of the data's share


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
