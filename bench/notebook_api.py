"""The notebook API's warm calls against plain numpy on the same data (issue #43, part 1):
`la.latent_statistics`, `la.sector_ids` and `la.fit_linear_map` on codes of 10,000 and
1,000,000 rows, and `la.sectors` on an encoding `make run` wrote (its first call opens the
encoding; later calls cost the pass over its codes) against reading the same Parquet codes
with pyarrow and counting sectors in numpy. Medians of REPEATS; target: at most 1.1x.

    .venv/bin/python bench/notebook_api.py [--encoding encodings/main-<id>/dense-s0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import append_section, median  # noqa: E402

import latentatlas as la  # noqa: E402

REPEATS = 5


def timed(fn, repeats: int = REPEATS) -> float:
    fn()  # warm: imports, caches, first-touch of the arrays
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times)


def plain_statistics(mu, logvar):
    var_mu, mean_sigma2 = mu.astype(np.float64).var(0), np.exp(logvar.astype(np.float64)).mean(0)
    return var_mu, mean_sigma2, (var_mu < 0.05) | (mean_sigma2 > 0.95), var_mu > 0.01


def plain_sector_ids(z, variables, threshold):
    v = z[:, variables]
    ids = ((v > 0) * (1 << np.arange(len(variables)))).sum(1)
    ids[(np.abs(v) <= threshold).any(1)] = -1
    return ids


def plain_ols(x, y):
    design = np.hstack([x.astype(np.float64), np.ones((len(x), 1))])
    return np.linalg.lstsq(design, y.astype(np.float64), rcond=None)[0]


def calls(n: int, rng) -> list[tuple]:
    """(call, la's, plain numpy's) on n random codes of 16 variables."""
    mu = rng.standard_normal((n, 16)).astype(np.float32)
    logvar = rng.standard_normal((n, 16)).astype(np.float32) - 1
    y = (mu @ rng.standard_normal((16, 16))).astype(np.float32)
    variables = [0, 3, 5, 7, 9, 11, 13]
    return [("latent_statistics(mu, logvar)", lambda: la.latent_statistics(mu, logvar),
             lambda: plain_statistics(mu, logvar)),
            ("sector_ids(mu, 7 variables, 0.5)", lambda: la.sector_ids(mu, variables, 0.5),
             lambda: plain_sector_ids(mu, variables, 0.5)),
            ("fit_linear_map(x, y, 'ols')", lambda: la.fit_linear_map(mu, y, "ols"),
             lambda: plain_ols(mu, y))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--encoding", default=None, help="an encoding directory for la.sectors")
    args = p.parse_args()
    rows = ["| call | rows | plain numpy s | la s | la / plain |",
            "| --- | --- | --- | --- | --- |"]
    rng = np.random.default_rng(0)
    for n in (10_000, 1_000_000):
        for what, ours, plain in calls(n, rng):
            a, b = timed(plain), timed(ours)
            rows.append(f"| `la.{what}` | {n:,} | {a:.4f} | {b:.4f} | {b / a:.2f}x |")
            print(rows[-1], flush=True)
    if args.encoding:
        import pyarrow.parquet as pq

        enc = la.open_encoding(args.encoding)
        gain = np.arange(enc.latent_dim, 0, -1, dtype=np.float64)  # a fixed ranking

        def plain_sectors():
            mu = np.stack(pq.read_table(str(enc.path), columns=["mu"]).column("mu")
                          .to_numpy(zero_copy_only=False))
            ids = plain_sector_ids(mu, list(range(7)), 0.5)
            return np.bincount(ids[ids >= 0], minlength=2 ** 7)

        a = timed(plain_sectors)
        b = timed(lambda: la.sectors(enc, gain, k=7, threshold=0.5))
        rows.append(f"| `la.sectors(encoding, gain)` (reads the codes) | {enc.meta.rows:,} | "
                    f"{a:.4f} | {b:.4f} | {b / a:.2f}x |")
        print(rows[-1], flush=True)
    append_section("The notebook API against plain numpy (bench/notebook_api.py)", [
        f"Warm calls (a first call made and left out), medians of {REPEATS}, 16 variables. "
        "Target: at most 1.1x.", "", *rows])


if __name__ == "__main__":
    main()
