"""Rows of two encodings paired on `index`, read range by range (Parquet min/max statistics
on `index` let each read skip unrelated shards), and the Ray Data pipelines over them:
streaming sufficient statistics and relocation errors."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pads
import ray
import torch

from analysis.information import per_item_mse
from analysis.linear_maps import LinearMap, SufficientStats
from latentatlas.encode.pipeline import SplitModel, actor_resources, shared_model
from latentatlas.encode.store import Encoding, column_to_numpy
from latentatlas.errors import UserError

ROWS_PER_TASK = 65536
HOLDOUT_EVERY = 5  # rows with index % 5 == 0 are held out for evaluation (20%)


def check_joinable(src: Encoding, tgt: Encoding) -> None:
    for key in ("dataset", "split", "rows", "limit"):
        if src.meta.get(key) != tgt.meta.get(key):
            raise UserError(f"{src.path} and {tgt.path} encode different data: {key} is "
                            f"{src.meta.get(key)!r} vs {tgt.meta.get(key)!r}")


def read_rows(path_list: list[str], columns: list[str], start: int, stop: int,
              indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
    import ray.data  # noqa: F401  (registers the tensor extension type)

    field = pc.field("index")
    cond = (field >= start) & (field < stop)
    if indices is not None:
        cond = cond & field.isin(indices)
    table = pads.dataset(path_list, format="parquet").to_table(
        columns=["index", *columns], filter=cond)
    arrays = {name: column_to_numpy(table.column(name)) for name in table.column_names}
    order = np.argsort(arrays["index"], kind="stable")
    return {k: v[order] for k, v in arrays.items()}


def aligned(src: list[str], tgt: list[str], start: int, stop: int, src_cols, tgt_cols,
            indices=None):
    a = read_rows(src, src_cols, start, stop, indices)
    b = read_rows(tgt, tgt_cols, start, stop, indices)
    if not np.array_equal(a["index"], b["index"]):
        raise UserError(f"encodings disagree on which rows exist in index range "
                        f"[{start}, {stop}): {len(a['index'])} vs {len(b['index'])} rows")
    return a, b


def split_mask(index: np.ndarray, part: str, every: int = HOLDOUT_EVERY) -> np.ndarray:
    """'fit' rows, 'eval' (held-out) rows, or 'all'."""
    held = index % every == 0
    return {"fit": ~held, "eval": held, "all": np.ones_like(held)}[part]


def ranges(rows: int, per_task: int = ROWS_PER_TASK):
    return ray.data.from_items([{"start": a, "stop": min(a + per_task, rows)}
                                for a in range(0, rows, per_task)],
                               override_num_blocks=max(1, -(-rows // per_task)))


def stats_partial(batch, src, tgt, part, every, indices=None):
    rows = []
    for start, stop in zip(batch["start"], batch["stop"], strict=True):
        a, b = aligned(src, tgt, int(start), int(stop), ["mu"], ["mu"], indices)
        keep = split_mask(a["index"], part, every)
        rows.append(SufficientStats.of(a["mu"][keep], b["mu"][keep]))
    s = sum(rows[1:], rows[0])
    return {"n": np.array([s.n]), "sx": s.sx[None], "sy": s.sy[None], "sxx": s.sxx[None],
            "sxy": s.sxy[None], "syy": s.syy[None]}


def streaming_stats(src: Encoding, tgt: Encoding, part: str = "fit",
                    every: int = HOLDOUT_EVERY, per_task: int = ROWS_PER_TASK,
                    indices: np.ndarray | None = None) -> SufficientStats:
    """X^T X, X^T Y, ... summed over index ranges in parallel, in float64: memory O(d^2)."""
    check_joinable(src, tgt)
    out = ranges(src.meta["rows"], per_task).map_batches(
        stats_partial, batch_size=1, fn_kwargs={
            "src": src.shards(), "tgt": tgt.shards(), "part": part, "every": every,
            "indices": indices}).take_all()
    total = None
    for r in out:
        s = SufficientStats(int(r["n"]), r["sx"], r["sy"], r["sxx"], r["sxy"], r["syy"])
        total = s if total is None else total + s
    return total


class RelocationPartial(SplitModel):
    """Per index range of held-out rows: summed errors R, L, M (per map) and the target's
    own reconstruction error, overall and per label."""

    def __init__(self, target_ref, maps: dict[str, tuple], src: list[str],
                 tgt: list[str], part: str, every: int, labels: int, **kwargs):
        super().__init__(**kwargs)
        self.target = shared_model(target_ref, self.device)
        self.maps = {k: LinearMap(k, *v) for k, v in maps.items()}
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
        return out


def relocation_errors(src: Encoding, tgt: Encoding, maps: dict[str, LinearMap], split,
                      source_ref, target_ref, part: str = "eval", every: int = HOLDOUT_EVERY,
                      actors: int = 1, use_gpu: bool = False, labels: int = 10,
                      per_task: int = 4096) -> dict[str, np.ndarray]:
    """Mean errors per label (index 0..labels-1) and overall (index labels)."""
    check_joinable(src, tgt)
    rows = ranges(src.meta["rows"], per_task).map_batches(
        RelocationPartial, batch_size=1, **actor_resources(use_gpu),
        fn_constructor_kwargs={
            "model_ref": source_ref, "target_ref": target_ref, "split_ref": ray.put(split),
            "use_gpu": use_gpu,
            "maps": {k: (m.A, m.b) for k, m in maps.items()}, "src": src.shards(),
            "tgt": tgt.shards(), "part": part, "every": every, "labels": labels},
        compute=ray.data.ActorPoolStrategy(size=actors)).take_all()
    sums = {k: np.sum([r[k] for r in rows], axis=0) for k in rows[0]}
    count = sums.pop("count")
    return {"count": count, **{k: v / np.maximum(count, 1) for k, v in sums.items()}}

