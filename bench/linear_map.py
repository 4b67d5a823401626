"""Streaming linear-map fit (Ray Data, sufficient statistics over Parquet) against
(a) numpy sufficient statistics on in-memory arrays and (b) numpy.linalg.lstsq, on
N x d float32 codes per side; times are medians of repeated runs, peak memory per path.

    python bench/linear_map.py [--rows 1000000] [--dim 150] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from common import append_section, median  # noqa: E402

from analysis.linear_maps import SufficientStats, fit_from_stats  # noqa: E402
from analysis.pairs import streaming_stats  # noqa: E402
from latentatlas.encode.store import EncodingMeta, publish, temp_sibling  # noqa: E402

SHARD_ROWS = 100_000


def write_encoding(out: Path, codes: np.ndarray, name: str) -> None:
    """An encoding as `encode` writes it: index-ordered Parquet shards + metadata."""
    from ray.data.extensions import ArrowTensorArray

    tmp = temp_sibling(out)
    tmp.mkdir()
    for start in range(0, len(codes), SHARD_ROWS):
        part = codes[start:start + SHARD_ROWS]
        table = pa.table({"index": np.arange(start, start + len(part)),
                          "mu": ArrowTensorArray.from_numpy(part)})
        pq.write_table(table, tmp / f"{start:09d}.parquet")
    publish(tmp, out, EncodingMeta(model_uri=name, model_run_id=None, dataset="synthetic",
                                   split="all", data_path=None, limit=None, rows=len(codes),
                                   latent_dim=codes.shape[1], version="bench"))


class RayMemory:
    """Peak summed RSS of the Ray worker processes above their idle baseline."""

    def __init__(self):
        self.stop, self.peak = threading.Event(), 0

    def rss(self) -> int:
        total = 0
        for p in psutil.process_iter(["name", "cmdline"]):
            try:
                if "ray::" in " ".join(p.info["cmdline"] or []):
                    total += p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

    def __enter__(self):
        self.base = self.rss()
        self.thread = threading.Thread(target=self.poll, daemon=True)
        self.thread.start()
        return self

    def poll(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.rss() - self.base)
            time.sleep(0.05)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return median(times), out


def traced_peak(fn) -> int:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=150)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--lstsq-repeats", type=int, default=2)
    args = p.parse_args()

    from latentatlas.encode import open_encoding
    from latentatlas.runtime import init_ray

    init_ray()
    rng = np.random.default_rng(0)
    n, d = args.rows, args.dim
    x = rng.standard_normal((n, d), dtype=np.float32)
    a_true = rng.standard_normal((d, d)).astype(np.float32) / np.sqrt(d)
    y = x @ a_true + 0.5 + 0.01 * rng.standard_normal((n, d), dtype=np.float32)
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        write_encoding(Path(tmp) / "src", x, "bench-src")
        write_encoding(Path(tmp) / "tgt", y, "bench-tgt")
        src, tgt = open_encoding(Path(tmp) / "src"), open_encoding(Path(tmp) / "tgt")

        def streaming():
            return fit_from_stats(streaming_stats(src, tgt, part="all",
                                                  per_task=SHARD_ROWS), "ols")

        def in_memory():  # plain numpy on whole arrays, not our chunked SufficientStats.of
            xx, yy = x.astype(np.float64), y.astype(np.float64)
            return fit_from_stats(SufficientStats(n, xx.sum(0), yy.sum(0), xx.T @ xx,
                                                  xx.T @ yy, yy.T @ yy), "ols")

        def lstsq():
            return np.linalg.lstsq(np.hstack([x, np.ones((n, 1), np.float32)]), y, rcond=None)

        streaming()  # warm the worker pool
        t_ray, m_ray = timed(streaming, args.repeats)
        with RayMemory() as mem:  # its own run: the poller's CPU must not slow the timed ones
            streaming()
        t_np, m_np = timed(in_memory, args.repeats)
        t_ls, ref = timed(lstsq, args.lstsq_repeats)
        err = max(np.abs(m_ray.A - m_np.A).max(), np.abs(m_ray.A - ref[0][:-1]).max())
        peak_np, peak_ls = traced_peak(in_memory), traced_peak(lstsq)
        # Peak worker memory at a quarter of the rows: flat if it does not grow with N.
        quarter = Path(tmp) / "q"
        write_encoding(quarter / "src", x[: n // 4], "q-src")
        write_encoding(quarter / "tgt", y[: n // 4], "q-tgt")
        qs, qt = open_encoding(quarter / "src"), open_encoding(quarter / "tgt")
        with RayMemory() as mem_q:
            streaming_stats(qs, qt, part="all", per_task=SHARD_ROWS)
    mib = 1 << 20
    append_section("Linear map fit: Ray Data streaming vs numpy", [
        f"{n:,} x {d} float32 codes per side (Parquet, {SHARD_ROWS:,}-row shards), OLS with "
        f"bias; medians of {args.repeats} runs ({args.lstsq_repeats} for lstsq). Targets: "
        "streaming <= 2x (a), >= 15x faster than (b), memory independent of N. Peak memory "
        "in a separate run.",
        "",
        "| path | median s | ratio | peak memory |",
        "|---|---|---|---|",
        f"| Ray Data streaming (reads Parquet) | {t_ray:.2f} | 1 | {mem.peak / mib:.0f} MiB "
        f"in workers at N={n:,}, {mem_q.peak / mib:.0f} MiB at N={n // 4:,} |",
        f"| (a) numpy sufficient stats, in memory | {t_np:.2f} | streaming/(a) = "
        f"{t_ray / t_np:.2f}x | {peak_np / mib:.0f} MiB (+ the arrays themselves) |",
        f"| (b) numpy.linalg.lstsq, in memory | {t_ls:.2f} | (b)/streaming = "
        f"{t_ls / t_ray:.1f}x | {peak_ls / mib:.0f} MiB |",
        "",
        f"Max |A_streaming - A_reference| = {err:.2e}."])


if __name__ == "__main__":
    main()
