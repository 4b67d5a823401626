"""Relocation errors of linear maps between two encodings, measured by Ray Data actors
holding both decoders."""

from __future__ import annotations

import numpy as np
import torch

from analysis.bootstrap import resample_means, resample_sums
from analysis.information import per_item_mse
from analysis.pairs import HOLDOUT_EVERY, aligned, check_joinable, split_mask
from latentatlas.batches import map_with_actors, range_batches, runs_here
from latentatlas.encode.pipeline import SplitModel, shared_model
from latentatlas.encode.store import Encoding, RowGroup

__all__ = ["RESAMPLED", "RelocationPartial", "generated_errors", "relocation_errors"]

# Keys of the Poisson bootstrap's replicate means over all items (analysis.bootstrap).
RESAMPLED = "resampled/"

class RelocationPartial(SplitModel):
    """Per index range of held-out rows: summed errors R, L, M (per map) and the target's
    own reconstruction error, overall and per label."""

    def __init__(self, target, maps: dict, src: list[RowGroup], tgt: list[RowGroup],
                 part: str, every: int, labels: int, **kwargs):
        super().__init__(**kwargs)
        self.target = shared_model(target, self.device)
        self.maps = maps  # each a function of the source codes (a LinearMap, a RelativeMap)
        self.src, self.tgt, self.part, self.every, self.labels = src, tgt, part, every, labels

    @torch.no_grad()
    def __call__(self, batch):
        sums = None
        for start, stop in zip(batch["start"], batch["stop"], strict=True):
            a, b = aligned(self.src, self.tgt, int(start), int(stop), ["mu", "label"], ["mu"])
            keep = split_mask(a["index"], self.part, self.every)
            part = self.errors(a["index"][keep], a["label"][keep], a["mu"][keep],
                               b["mu"][keep])
            sums = part if sums is None else {k: sums[k] + part[k] for k in sums}
        return {k: v[None] for k, v in sums.items()}

    def errors(self, index, label, mu1, mu2) -> dict[str, np.ndarray]:
        """Per-label sums (last slot: all labels) of each error, and the counts."""
        x = self.images(index)
        dev = self.device
        per_item = {"R": per_item_mse(self.model.decode(torch.from_numpy(mu1).to(dev)), x),
                    "M_target_own": per_item_mse(
                        self.target.decode(torch.from_numpy(mu2).to(dev)), x)}
        for name, m in self.maps.items():
            moved = torch.from_numpy(m(mu1).astype(np.float32)).to(dev)
            per_item[f"M_{name}"] = per_item_mse(self.target.decode(moved), x)
            per_item[f"L_{name}"] = torch.from_numpy(
                ((mu2 - m(mu1)) ** 2).mean(axis=1)).to(dev)
        slot = np.where((label >= 0) & (label < self.labels), label, self.labels)
        out = {"count": np.bincount(slot, minlength=self.labels + 1).astype(np.float64)}
        for key, v in per_item.items():
            out[key] = np.bincount(slot, weights=v.double().cpu().numpy(),
                                   minlength=self.labels + 1)
        out = {k: np.append(v[:-1], v.sum()) for k, v in out.items()}  # last = all items
        sums = resample_sums(index, {k: v.double().cpu().numpy() for k, v in per_item.items()})
        return out | {f"{RESAMPLED}{k}": v for k, v in sums.items()}


def generated_errors(generator, vae, maps: dict, n: int, seed: int, gan_is_source: bool,
                     batch: int = 500) -> dict[str, np.ndarray]:
    """The authors' scoring of a style generator's maps (We_love_latent_space `comparison.py`,
    `compute_error_on_W`): on `n` fresh images x = G(w) (w drawn with `seed`, clamped to
    [0, 1]), with the VAE's means mu(x): R through the source's decoder, M_target_own through
    the target's, per map M = MSE(x, target decode(map(source code))) and L = the map's error
    on the target's codes. As `relocation_errors` returns them, with no labels (one slot)."""
    draw = torch.Generator().manual_seed(seed)
    totals: dict[str, np.ndarray] = {}
    source, target = (generator, vae) if gan_is_source else (vae, generator)
    with torch.no_grad():
        for start in range(0, n, batch):
            w = generator.sample_codes(min(batch, n - start), draw)
            x = generator.decode(w).clamp(0, 1)
            mu = vae.encode(x)[0]
            src, tgt = (w, mu) if gan_is_source else (mu, w)
            items = {"R": per_item_mse(source.decode(src), x),
                     "M_target_own": per_item_mse(target.decode(tgt), x)}
            for name, m in maps.items():
                moved = m(src.numpy()).astype(np.float32)
                items[f"M_{name}"] = per_item_mse(target.decode(torch.from_numpy(moved)), x)
                items[f"L_{name}"] = torch.from_numpy(((tgt.numpy() - moved) ** 2).mean(axis=1))
            values = {k: v.double().numpy() for k, v in items.items()}
            part = {k: v.sum() for k, v in values.items()}
            part |= {f"{RESAMPLED}{k}": v for k, v in resample_sums(
                np.arange(start, start + len(x)), values).items()}
            totals = part if not totals else {k: totals[k] + part[k] for k in totals}
    resampled = resample_means({k.removeprefix(RESAMPLED): totals.pop(k)
                                for k in [k for k in totals if k.startswith(RESAMPLED)]})
    return {"count": np.array([float(n)]),
            **{k: np.array([v / n]) for k, v in totals.items()},
            **{f"{RESAMPLED}{k}": v for k, v in resampled.items()}}


def relocation_errors(src: Encoding, tgt: Encoding, maps: dict, split,
                      source_model, target_model, part: str = "eval",
                      every: int = HOLDOUT_EVERY, actors: int = 1, use_gpu: bool = False,
                      labels: int = 10, per_task: int = 4096, stop: int | None = None,
                      here: bool | None = None) -> dict[str, np.ndarray]:
    """Mean errors per label (index 0..labels-1) and overall (index labels), over the rows
    with index below `stop` (default: all), and `resampled/<error>`: the overall mean in each
    of the Poisson bootstrap's replicates (analysis.bootstrap); the models are `share_model`
    values."""
    check_joinable(src, tgt)
    rows = src.meta.rows if stop is None else min(stop, src.meta.rows)
    here = runs_here(rows, use_gpu) if here is None else here
    parts = map_with_actors(
        range_batches(rows, per_task, here=here), RelocationPartial, batch_size=1,
        actors=actors, use_gpu=use_gpu,
        shared={"model": source_model, "target": target_model, "split": split},
        maps=maps, src=src.row_groups(),
        tgt=tgt.row_groups(), part=part, every=every, labels=labels)
    sums = {k: v.sum(axis=0) for k, v in parts.items()}
    resampled = resample_means({k.removeprefix(RESAMPLED): sums.pop(k)
                                for k in [k for k in sums if k.startswith(RESAMPLED)]})
    count = sums.pop("count")
    return {"count": count, **{k: v / np.maximum(count, 1) for k, v in sums.items()},
            **{f"{RESAMPLED}{k}": v for k, v in resampled.items()}}
