"""Sectors of an encoding's latent space and the support set chosen from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis import figures
from analysis.defaults import DEFAULT_K, DEFAULT_THRESHOLD
from analysis.pairs import split_mask
from analysis.passes import latent_moments
from analysis.sectors import (
    density_vs_gaussian,
    density_vs_prior,
    few_in_sectors_note,
    gaussian_sector_probabilities,
    random_pairs_mse,
    sector_counts,
    sector_ids,
    sector_signs,
    sector_variables,
    select_support,
)
from latentatlas.batches import encoding_batches, map_concat, runs_here
from latentatlas.encode import Encoding
from latentatlas.errors import UserError
from latentatlas.images import mean_pairwise_mse, readable_grid
from latentatlas.record import Record

AMONG = ("all", "fit")  # the rows a support set is chosen among

__all__ = ["AMONG", "DEFAULT_K", "DEFAULT_THRESHOLD", "SectorCounts", "SupportSet", "count_sectors",
           "choose_support_set", "exclusion_mask"]


@dataclass
class SectorCounts:
    encoding: Encoding
    variables: np.ndarray  # the k ordered variables
    ordering: str  # "information_gain" or "var_mu"
    k_requested: int
    threshold: float
    index: np.ndarray  # row index of every code
    ids: np.ndarray  # its sector (-1: none)
    counts: np.ndarray  # all 2^k sectors
    density: dict  # counts against independent Gaussian codes (analysis.sectors)
    note: str | None  # why almost no code lies in any sector, when that is so

    @property
    def k(self) -> int:
        return len(self.variables)

    @property
    def metrics(self) -> dict:
        return {"sectors/k": self.k, "sectors/threshold": self.threshold,
                "sectors/nonempty": int((self.counts > 0).sum()),
                "sectors/outside": int((self.ids < 0).sum()),
                **{f"sectors/{k}": v for k, v in self.density.items()}}

    def record(self, seed: int = 0) -> Record:
        """With a few members of the most and of the least crowded sector."""
        images = {}
        nonempty = np.flatnonzero(self.counts)
        if len(nonempty):
            rng = np.random.default_rng(seed)
            crowded = nonempty[np.argmax(self.counts[nonempty])]
            sparse = nonempty[np.argmin(self.counts[nonempty])]
            split = self.encoding.meta.load_split()
            rows = []
            for sec in (crowded, sparse):  # a row each, padded white to 8
                chosen = rng.choice(self.index[self.ids == sec], min(8, self.counts[sec]),
                                    replace=False)
                row = np.ones((8, *split.shape), np.float32)
                row[:len(chosen)] = split.images[chosen] / 255
                rows.append(row)
            images["sector_members_crowded_vs_sparse"] = readable_grid(
                np.concatenate(rows), ncols=8, rows=[f"crowded: sector {crowded}",
                                                     f"sparse: sector {sparse}"])
        n = len(self.counts)
        return Record(
            "sectors", "sectors",
            params={"ordering": self.ordering, "k_requested": self.k_requested,
                    "variables": ",".join(map(str, self.variables)),
                    "k_reduced_to_active": self.k < self.k_requested},
            metrics=self.metrics,
            tags={"encoding": str(self.encoding.path), "note": self.note or ""},
            tables={"sector_counts.json": {"sector": list(range(n)),
                                           "signs": [sector_signs(i, self.k) for i in range(n)],
                                           "count": self.counts.tolist()}},
            figures={"sector_counts.png": lambda: figures.sorted_bars(
                self.counts.astype(float), f"codes per sector (k={self.k}, "
                f"t={self.threshold})", "codes")},
            images=images)


def sectors_of(batch: dict, variables, threshold: float) -> dict[str, np.ndarray]:
    return {"index": batch["index"], "sector": sector_ids(batch["mu"], variables, threshold)}


def count_sectors(enc: Encoding, score: np.ndarray | None = None, k: int = DEFAULT_K,
                  threshold: float = DEFAULT_THRESHOLD,
                  here: bool | None = None) -> SectorCounts:
    """Sectors of the k highest-`score` active variables (e.g. the information gain of a
    `stats` run); by var(mu) when no score is given."""
    here = runs_here(enc.meta.rows) if here is None else here
    mu, sigma2_sum = latent_moments(encoding_batches(enc, enc.code_columns, here=here))
    ordering = "information_gain" if score is not None else "var_mu"
    variables = sector_variables(mu.var if score is None else score, mu.var,
                                 sigma2_sum / mu.n, k)
    if not len(variables):
        raise UserError(f"{enc.path}: no latent variable is active (var(mu) >= 0.05 and mean "
                        "sigma^2 <= 0.95), so no code can lie in a sector")
    # Only (index, sector) reaches the driver: 16 bytes per code, whatever the latent size.
    parts = map_concat(encoding_batches(enc, ["index", "mu"], here=here), sectors_of,
                       batch_size=8192, variables=variables, threshold=threshold)
    index, ids = parts["index"], parts["sector"]
    order = np.argsort(index, kind="stable")
    counts = sector_counts(ids, len(variables))
    sd = np.sqrt(mu.var[variables])
    outside = int((ids < 0).sum())
    density = {**density_vs_gaussian(counts, outside, gaussian_sector_probabilities(
        mu.mean[variables], sd, threshold)),
        **density_vs_prior(counts, outside, len(variables), threshold)}
    return SectorCounts(enc, variables, ordering, k, threshold, index[order], ids[order],
                        counts, density, few_in_sectors_note(density["in_sectors"], threshold,
                                                             sd))


def exclusion_mask(enc: Encoding, index: np.ndarray, exclude: str | None) -> np.ndarray | None:
    """True where a row may be selected; `exclude` is `attr=value` over a column of the
    encoding (an attribute such as Wearing_Hat, or label)."""
    if not exclude:
        return None
    name, sep, raw = exclude.partition("=")
    if not sep:
        raise UserError(f"--exclude {exclude!r}: expected attr=value, e.g. Wearing_Hat=1")
    columns = ["label", *enc.meta.attributes]
    if name not in columns:
        raise UserError(f"--exclude {name}: the encoding {enc.path} has no such column; "
                        f"columns: {', '.join(columns)}")
    values = enc.arrays(["index", name])
    by_index = dict(zip(values["index"].tolist(), values[name].tolist(), strict=True))
    return np.array([str(by_index[i]) != raw for i in index.tolist()])


def support_rows(s: SectorCounts, size: int | None = None, exclude: str | None = None,
                 seed: int = 0, eligible_index=None):
    """Row indices of a support set of the sectors `s`, their sectors, and the mask of rows
    that could be chosen (`eligible_index(index) -> bool mask` restricts it)."""
    eligible = exclusion_mask(s.encoding, s.index, exclude)
    if eligible_index is not None:
        keep = eligible_index(s.index)
        eligible = keep if eligible is None else eligible & keep
    pos = select_support(s.ids, size or s.encoding.latent_dim, seed, eligible)
    return s.index[pos], s.ids[pos], eligible


@dataclass
class SupportSet:
    sectors: SectorCounts
    index: np.ndarray  # the chosen rows
    sector_of: np.ndarray  # their sectors
    images: np.ndarray  # their images in [0, 1]
    metrics: dict  # support/*
    exclude: str | None
    seed: int
    among: str = "all"  # the rows it was chosen among: all, or a relocation's fit rows

    def record(self) -> Record:
        s, raw = self.sectors, (self.images * 255).round().astype(np.uint8)

        def write_parquet(path: Path) -> None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({"index": self.index, "sector": self.sector_of,
                                     "image": list(raw.reshape(len(raw), -1))}), path)

        return Record(
            "support-set", "support-set",
            params={"ordering": s.ordering, "k": s.k, "threshold": s.threshold,
                    "exclude": self.exclude or "", "seed": self.seed, "among": self.among},
            metrics=self.metrics, tags={"encoding": str(s.encoding.path)},
            files={"support_set.parquet": write_parquet},
            images={"support_set": readable_grid(self.images, ncols=16)})


def choose_support_set(s: SectorCounts, size: int | None = None, exclude: str | None = None,
                       seed: int = 0, among: str = "all") -> SupportSet:
    """One random member of each non-empty sector, filled up to `size` (default: the latent
    dimension) from the most crowded sectors; how far apart its images are against random
    pairs of the eligible rows. `among="fit"`: only rows a relocation fits on (not the
    held-out rows, index % 5 == 0, where its maps are scored)."""
    if among not in AMONG:
        raise UserError(f"--among {among}: expected one of {', '.join(AMONG)}")
    index, sector_of, eligible = support_rows(
        s, size, exclude, seed, (lambda i: split_mask(i, "fit")) if among == "fit" else None)
    if len(index) < 2:
        raise UserError(f"{s.encoding.path}: only {len(index)} eligible code(s) lie in any "
                        f"sector at threshold {s.threshold}; lower --threshold or --k")
    split = s.encoding.meta.load_split()
    images = split.images[index].astype(np.float32) / 255
    pool = split.images[s.index if eligible is None else s.index[eligible]]
    pairs = len(index) * (len(index) - 1) // 2
    metrics = {"support/size": len(index), "support/pairwise_mse": mean_pairwise_mse(images),
               "support/random_pairwise_mse": random_pairs_mse(
                   pool.astype(np.float32) / 255, max(pairs, 1), seed)}
    return SupportSet(s, index, sector_of, images, metrics, exclude, seed, among)
