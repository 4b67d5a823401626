"""`latentatlas sectors ENCODING`: how unevenly codes fill the 2^k sectors of the k most
informative variables (ordered by information gain from the encoding's `stats` run, or by
var(mu) when there is none; the run says which)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np

from latentatlas.cli import common_parser, guarded
from latentatlas.report import print_table

DEFAULT_K, DEFAULT_THRESHOLD = 7, 0.5


@dataclass
class Sectors:
    encoding: object
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


def stats_gain(enc) -> np.ndarray | None:
    """The information gain of the latest `stats` run on this encoding, if any."""
    import mlflow

    runs = mlflow.search_runs(output_format="list", order_by=["attributes.start_time DESC"],
                              filter_string=f"tags.`latentatlas.kind` = 'stats' and "
                                            f"tags.encoding = '{enc.path}'")
    for run in runs:
        try:
            table = mlflow.load_table("information_gain.json", run_ids=[run.info.run_id])
        except Exception:  # a run without the table: look further back
            continue
        return table.sort_values("variable")["information_gain"].to_numpy()
    return None


def compute_sectors(encoding_path: str, k: int = DEFAULT_K,
                    threshold: float = DEFAULT_THRESHOLD) -> Sectors:
    from analysis.pipelines import latent_moments
    from analysis.sectors import (
        density_vs_gaussian,
        few_in_sectors_note,
        gaussian_sector_probabilities,
        sector_counts,
        sector_ids,
        sector_variables,
    )
    from latentatlas.encode import open_encoding

    enc = open_encoding(encoding_path)
    ds = enc.dataset()
    mu, sigma2_sum = latent_moments(ds)
    gain = stats_gain(enc)
    score, ordering = (gain, "information_gain") if gain is not None else (mu.var, "var_mu")
    variables = sector_variables(score, mu.var, sigma2_sum / mu.n, k)
    if not len(variables):
        from latentatlas.errors import UserError

        raise UserError(f"{enc.path}: no latent variable is active (var(mu) >= 0.05 and mean "
                        "sigma^2 <= 0.95), so no code can lie in a sector")
    # Only (index, sector) reaches the driver: 16 bytes per code, whatever the latent size.
    parts = list(ds.select_columns(["index", "mu"]).map_batches(
        lambda b: {"index": b["index"], "sector": sector_ids(b["mu"], variables, threshold)},
        batch_size=8192).iter_batches(batch_size=None, batch_format="numpy"))
    index = np.concatenate([p["index"] for p in parts])
    ids = np.concatenate([p["sector"] for p in parts])
    order = np.argsort(index, kind="stable")
    counts = sector_counts(ids, len(variables))
    sd = np.sqrt(mu.var[variables])
    density = density_vs_gaussian(counts, int((ids < 0).sum()), gaussian_sector_probabilities(
        mu.mean[variables], sd, threshold))
    return Sectors(enc, variables, ordering, k, threshold, index[order], ids[order], counts,
                   density, few_in_sectors_note(density["in_sectors"], threshold, sd))


def sectors(encoding_path: str, *, k: int = DEFAULT_K, threshold: float = DEFAULT_THRESHOLD,
            tracking_uri: str | None = None, experiment: str | None = None,
            parent_run_id: str | None = None, seed: int = 0):
    import mlflow

    from analysis import figures
    from analysis.sectors import sector_signs
    from latentatlas import tracking
    from latentatlas.images import image_grid

    tracking.setup(tracking_uri, experiment)
    s = compute_sectors(encoding_path, k, threshold)
    meta = s.encoding.meta
    metrics = {"sectors/k": s.k, "sectors/threshold": threshold,
               "sectors/nonempty": int((s.counts > 0).sum()),
               "sectors/outside": int((s.ids < 0).sum()),
               **{f"sectors/{k}": v for k, v in s.density.items()}}
    split = meta.load_split()
    rng = np.random.default_rng(seed)
    nonempty = np.flatnonzero(s.counts)
    shown = []  # a few members of the most and of the least crowded sector
    if len(nonempty):
        for sec in (nonempty[np.argmax(s.counts[nonempty])],
                    nonempty[np.argmin(s.counts[nonempty])]):
            shown.append(rng.choice(s.index[s.ids == sec], min(8, s.counts[sec]),
                                    replace=False))
    with mlflow.start_run(run_name="sectors", parent_run_id=parent_run_id
                          or meta.model_run_id) as run:
        mlflow.set_tags({"latentatlas.kind": "sectors", "encoding": str(s.encoding.path),
                         "note": s.note or ""})
        mlflow.log_params({"ordering": s.ordering, "k_requested": s.k_requested,
                           "variables": ",".join(map(str, s.variables)),
                           "k_reduced_to_active": s.k < s.k_requested})
        mlflow.log_metrics(metrics)
        mlflow.log_table({"sector": list(range(len(s.counts))),
                          "signs": [sector_signs(i, s.k) for i in range(len(s.counts))],
                          "count": s.counts.tolist()}, "sector_counts.json")
        tracking.log_figure(figures.sorted_bars(s.counts.astype(float),
                                                f"codes per sector (k={s.k}, t={threshold})",
                                                "codes"), "sector_counts.png")
        if shown:
            grid = np.concatenate([split.images[i] for i in shown]).astype(np.float32) / 255
            tracking.log_image(image_grid(grid, ncols=8), "sector_members_crowded_vs_sparse")
    return run.info.run_id, metrics, s


def add_sector_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("encoding", help="an encoding directory")
    p.add_argument("--k", type=int, default=DEFAULT_K, help="number of ordered variables")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help="|z_i| must exceed it (sectors are 2*threshold apart)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="latentatlas sectors", parents=[common_parser()],
                                description=__doc__)
    add_sector_args(p)
    args = p.parse_args(argv)

    def run():
        from latentatlas.runtime import init_ray

        init_ray(args.ray_address)
        run_id, metrics, s = sectors(args.encoding, k=args.k, threshold=args.threshold,
                                     tracking_uri=args.tracking_uri,
                                     experiment=args.experiment)
        if s.k < s.k_requested:
            print(f"note: k reduced from {s.k_requested} to {s.k}, the active variables")
        if s.note:
            print(f"warning: {s.note}")
        d = s.density
        print(f"density: KL to independent Gaussian codes {d['kl_to_gaussian']:.4f} (sampling "
              f"noise alone: <= {d['kl_gaussian_p99']:.4f} in 99% of draws)")
        print(f"ordering: {s.ordering}; variables {s.variables.tolist()}")
        print_table([metrics], title="sectors")
        print(f"MLflow run id: {run_id}")

    return guarded(run, args.debug)


if __name__ == "__main__":
    sys.exit(main())
