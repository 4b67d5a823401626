"""Linear maps from one latent space to another, fitted and scored on held-out rows:
R = MSE(x, dec1(enc1 x)), L = MSE(enc2 x, A enc1 x), M = MSE(x, dec2(A enc1 x)),
M_target_own = MSE(x, dec2(enc2 x))."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from analysis import figures
from analysis.linear_maps import ESTIMATORS, LinearMap, fit_from_stats, fit_linear_map
from analysis.pairs import aligned, check_joinable, read_rows, split_mask, streaming_stats
from analysis.relocation import relocation_errors
from analysis.studies.sectors import count_sectors, support_rows
from latentatlas.encode import Encoding
from latentatlas.errors import UserError
from latentatlas.images import stacked_rows
from latentatlas.models import share_model
from latentatlas.record import Record
from latentatlas.report import quiet

__all__ = ["DEFAULT_ESTIMATORS", "FITS", "Relocation", "relocate_codes", "support_sizes"]

# The closed forms; `sgd_authors` (2000 optimiser steps per fit) is asked for by name.
DEFAULT_ESTIMATORS = [e for e in ESTIMATORS if e != "sgd_authors"]
FITS = ("all", "support", "indices")


def fit_on_rows(src, tgt, estimators, indices, params: dict, suffix: str = ""):
    """Closed-form fits on explicit rows (a support set, any index list), read directly."""
    indices = np.unique(np.asarray(indices, dtype=np.int64))
    a, b = aligned(src.row_groups(), tgt.row_groups(), 0, src.meta.rows, ["mu"], ["mu"], indices)
    if len(a["index"]) != len(indices):
        raise UserError(f"--indices: {len(a['index'])} of {len(indices)} rows exist in both "
                        "encodings")
    return {f"{e}{suffix}": fit_linear_map(a["mu"], b["mu"], e, **params) for e in estimators}


def fit_on_all(src, tgt, estimators, params: dict, suffix: str = ""):
    """Streaming fits on every non-held-out row."""
    stats = streaming_stats(src, tgt, part="fit")
    return {f"{e}{suffix}": fit_from_stats(stats, e, **params) for e in estimators}, stats.n


def support_sizes(d: int) -> list[int]:
    return sorted({max(2, d // 4), max(2, d // 2), d, 2 * d, 4 * d})


def fit_maps(src, tgt, estimators, fit: str, indices=None, params: dict | None = None,
             score: np.ndarray | None = None, seed: int = 0):
    """Maps by name, the number of fit rows, and (for support fits) the sweep sizes.
    `support`: a support set selected in the source space among the fit rows (sectors of the
    `score`-ranked variables); the full-data fits are added as `<estimator>_full`, and the
    first estimator refitted on support sets of d/4 ... 4d rows as `<estimator>_support<n>`."""
    params = params or {}
    if fit == "all":
        maps, n = fit_on_all(src, tgt, estimators, params)
        return maps, n, []
    if fit == "indices":
        maps = fit_on_rows(src, tgt, estimators, indices, params)
        return maps, len(np.unique(indices)), []
    d = src.latent_dim
    fit_rows = lambda index: split_mask(index, "fit")  # noqa: E731
    sectors = count_sectors(src, score)
    support, _, _ = support_rows(sectors, d, seed=seed, eligible_index=fit_rows)
    maps = fit_on_rows(src, tgt, estimators, support, params)
    full, _ = fit_on_all(src, tgt, estimators, params, suffix="_full")
    maps.update(full)
    sizes = support_sizes(d)
    for size in sizes:
        rows, _, _ = support_rows(sectors, size, seed=seed, eligible_index=fit_rows)
        maps.update(fit_on_rows(src, tgt, estimators[:1], rows, params,
                                suffix=f"_support{size}"))
    return maps, len(support), sizes


@dataclass
class Relocation:
    source: Encoding
    target: Encoding
    fit: str
    estimators: list[str]
    params: dict  # every estimator's parameters (lam, l2)
    metrics: dict  # relocation/*
    errors: dict  # per-label mean errors (analysis.relocation.relocation_errors)
    maps: dict[str, LinearMap]
    sweep: list[int]  # support sizes refitted (support fits only)
    pictures: np.ndarray  # originals / source reconstructions / relocated reconstructions

    @property
    def rank_deficient(self) -> list[str]:
        """Maps whose fit rows did not determine every direction."""
        return [name for name, m in self.maps.items() if m.rank_deficient]

    def record(self, name: str = "relocate") -> Record:
        primary, every = self.estimators[0], self.metrics
        labels = len(self.errors["count"]) - 1
        per_class = {"label": [*range(labels), "all"], "count": self.errors["count"].tolist()}
        per_class.update({k: v.tolist() for k, v in self.errors.items() if k != "count"})
        tables = {"relocation_per_class.json": per_class}
        figs = {}
        if self.sweep:
            m = lambda key: every[f"relocation/M_{key}"]  # noqa: E731
            figs["support_size_sweep.png"] = lambda: figures.support_sweep(
                self.sweep, [m(f"{primary}_support{n}") for n in self.sweep],
                m(f"{primary}_full"), every["relocation/M_target_own"], primary)
            tables["support_vs_full.json"] = {
                "estimator": list(self.estimators),
                "M_support": [m(e) for e in self.estimators],
                "M_full": [m(f"{e}_full") for e in self.estimators]}
        src, tgt = self.source, self.target
        return Record(
            "relocate", name,
            params={"fit": self.fit, "estimators": ",".join(self.estimators),
                    "ridge_lambda": self.params.get("lam"),
                    "ridge_authors_l2": self.params.get("l2"), "primary_estimator": primary,
                    "dataset": src.meta.dataset, "split": src.meta.split},
            metrics=self.metrics,
            tags={"source": str(src.path), "target": str(tgt.path),
                  "source_model": src.meta.model_uri, "target_model": tgt.meta.model_uri,
                  "latentatlas.rank_deficient": ",".join(self.rank_deficient) or "none"},
            tables=tables, figures=figs, images={"relocation_rows": self.pictures},
            files={f"maps/map_{key}.npz": (lambda path, m=m: m.save(path))
                   for key, m in self.maps.items()})


def relocate_codes(src: Encoding, tgt: Encoding, source_model, target_model, *,
                   estimators=DEFAULT_ESTIMATORS, fit: str = "all", indices=None,
                   lam: float = 1e-4, l2: float = 1e-4, score: np.ndarray | None = None,
                   actors: int = 1, use_gpu: bool = False, extra_maps: dict | None = None,
                   progress: Callable[[str], None] = quiet) -> Relocation:
    """Fit on the non-held-out rows (or on `indices`, or on a support set chosen by the
    sectors of the `score`-ranked source variables), evaluate on the held-out rows.
    `source_model` / `target_model` are (model, spec) pairs; `lam` is `ridge`'s penalty, `l2`
    the authors' Keras regulariser of `ridge_authors`; `extra_maps` (name -> LinearMap) are
    evaluated beside the fitted ones."""
    unknown = set(estimators) - set(ESTIMATORS)
    if unknown:
        raise UserError(f"--estimator: unknown {sorted(unknown)}; known: {', '.join(ESTIMATORS)}")
    if fit not in FITS:
        raise UserError(f"--fit {fit}: expected one of {', '.join(FITS)}")
    check_joinable(src, tgt)
    params = {"lam": lam, "l2": l2}
    progress(f"fitting {', '.join(estimators)} on {fit} rows of {src.meta.rows}")
    maps, fit_rows, sweep = fit_maps(src, tgt, estimators, fit, indices, params, score)
    maps.update(extra_maps or {})
    split = src.meta.load_split()
    labels = int(split.labels.max()) + 1 if (split.labels >= 0).any() else 0
    (src_model, src_spec), (tgt_model, tgt_spec) = source_model, target_model
    progress(f"scoring {len(maps)} maps on the held-out rows through both decoders "
             "(Ray Data)")
    errors = relocation_errors(src, tgt, maps, split, share_model(src_model, src_spec),
                               share_model(tgt_model, tgt_spec), actors=actors,
                               use_gpu=use_gpu, labels=labels)
    primary = estimators[0]
    every = {k: float(v[-1]) for k, v in errors.items() if k != "count"}
    metrics = {"relocation/R": every["R"], "relocation/M_target_own": every["M_target_own"],
               "relocation/M": every[f"M_{primary}"], "relocation/L": every[f"L_{primary}"],
               "relocation/fit_rows": fit_rows, "relocation/eval_rows": float(errors["count"][-1])}
    for name, m in maps.items():
        metrics[f"relocation/M_{name}"] = every[f"M_{name}"]
        metrics[f"relocation/L_{name}"] = every[f"L_{name}"]
        if m.rank >= 0:  # the rank of the system each fit solved (< dims: rank-deficient)
            metrics[f"relocation/rank_{name}"] = m.rank

    # The seed's picture: originals / source reconstructions / relocated reconstructions.
    shown = np.arange(0, 8 * 5, 5)  # the first eight held-out rows
    rows = read_rows(src.row_groups(), ["mu"], 0, int(shown.max()) + 1, shown)
    x = split.images[rows["index"]].astype(np.float32) / 255
    with torch.no_grad():
        recon = src_model.decode(torch.from_numpy(rows["mu"])).numpy()
        moved = tgt_model.decode(torch.from_numpy(
            maps[primary](rows["mu"]).astype(np.float32))).numpy()
    return Relocation(src, tgt, fit, list(estimators), params, metrics, errors, maps, sweep,
                      stacked_rows([x, recon, moved]))
