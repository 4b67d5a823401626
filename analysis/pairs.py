"""Rows of two encodings paired on `index`, read range by range (Parquet min/max statistics
on `index` let each read open only the row groups it needs), and the streaming sufficient
statistics over them. Free of torch: the Ray tasks that run it start without importing it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.linear_maps import SufficientStats
from latentatlas.batches import map_concat, range_batches, runs_here
from latentatlas.encode.manifest import non_finite_problem
from latentatlas.encode.store import Encoding, RowGroup, table_to_numpy
from latentatlas.errors import UserError

__all__ = ["ROWS_PER_TASK", "HOLDOUT_EVERY", "check_joinable", "read_rows", "aligned", "split_mask",
           "stats_partial", "streaming_stats"]

ROWS_PER_TASK = 65536
HOLDOUT_EVERY = 5  # rows with index % 5 == 0 are held out for evaluation (20%)


def check_joinable(src: Encoding, tgt: Encoding) -> None:
    for key in ("dataset", "split", "rows", "limit"):
        a, b = getattr(src.meta, key), getattr(tgt.meta, key)
        if a != b:
            raise UserError(f"{src.path} and {tgt.path} encode different data: {key} is "
                            f"{a!r} vs {b!r}")


def read_rows(groups: list[RowGroup], columns: list[str], start: int, stop: int,
              indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The rows with start <= index < stop (and index in `indices`), ordered by index;
    only the row groups whose statistics overlap the range are read."""
    names = ["index", *columns]
    tables = [pq.ParquetFile(g.path).read_row_group(g.group, columns=names)
              for g in groups if g.overlaps(start, stop)]
    table = (pa.concat_tables(tables) if tables else
             pq.ParquetFile(groups[0].path).schema_arrow.empty_table().select(names))
    arrays = table_to_numpy(table)
    if problem := non_finite_problem(str(Path(groups[0].path).parent), arrays):
        raise UserError(f"{problem}; encode it again from a model whose codes are finite")
    index = arrays["index"]
    keep = (index >= start) & (index < stop)
    if indices is not None:
        keep &= np.isin(index, indices)
    if not keep.all():
        arrays = {k: v[keep] for k, v in arrays.items()}
    if np.any(np.diff(arrays["index"]) < 0):  # shards are index-ordered: usually a no-op
        order = np.argsort(arrays["index"], kind="stable")
        arrays = {k: v[order] for k, v in arrays.items()}
    return arrays


def aligned(src: list[RowGroup], tgt: list[RowGroup], start: int, stop: int, src_cols, tgt_cols,
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


def stats_partial(batch, src, tgt, part, every, indices=None):
    rows = []
    for start, stop in zip(batch["start"], batch["stop"], strict=True):
        a, b = aligned(src, tgt, int(start), int(stop), ["mu"], ["mu"], indices)
        keep = split_mask(a["index"], part, every)
        rows.append(SufficientStats.of(a["mu"], b["mu"], keep))
    s = sum(rows[1:], rows[0])
    return {"n": np.array([s.n]), "sx": s.sx[None], "sy": s.sy[None], "sxx": s.sxx[None],
            "sxy": s.sxy[None], "syy": s.syy[None]}


def streaming_stats(src: Encoding, tgt: Encoding, part: str = "fit",
                    every: int = HOLDOUT_EVERY, per_task: int = ROWS_PER_TASK,
                    indices: np.ndarray | None = None,
                    here: bool | None = None) -> SufficientStats:
    """X^T X, X^T Y, ... summed over index ranges (in parallel on Ray for large encodings),
    in float64: memory O(d^2)."""
    check_joinable(src, tgt)
    here = runs_here(src.meta.rows) if here is None else here
    out = map_concat(range_batches(src.meta.rows, per_task, here=here), stats_partial,
                     batch_size=1, src=src.row_groups(), tgt=tgt.row_groups(), part=part,
                     every=every, indices=indices)
    return SufficientStats(int(out["n"].sum()), *(out[k].sum(axis=0)
                                                  for k in ("sx", "sy", "sxx", "sxy", "syy")))
