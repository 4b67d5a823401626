"""`latentatlas relocate --source ENC1 --target ENC2`: fit linear maps from one latent space
to another and measure what survives the move on held-out rows:
R = MSE(x, dec1(enc1 x)), L = MSE(enc2 x, A enc1 x), M = MSE(x, dec2(A enc1 x)),
M_target_own = MSE(x, dec2(enc2 x)). `--all ENC...` does every ordered pair."""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentatlas.cli import common_parser, guarded
from latentatlas.report import print_table

DEFAULT_ESTIMATORS = ["ols", "ols_nobias", "ridge", "ridge_authors", "procrustes", "lstsq_ortho"]


@dataclass
class RelocationOutcome:
    run_id: str
    metrics: dict
    errors: dict  # per-label mean errors (analysis.relocation.relocation_errors)
    maps: dict
    rank_deficient: list[str]  # maps whose fit rows did not determine every direction


def fit_on_rows(src, tgt, estimators, indices, params: dict, suffix: str = ""):
    """Closed-form fits on explicit rows (a support set, any index list), read directly."""
    from analysis.linear_maps import fit_linear_map
    from analysis.pairs import aligned
    from latentatlas.errors import UserError

    indices = np.unique(np.asarray(indices, dtype=np.int64))
    a, b = aligned(src.row_groups(), tgt.row_groups(), 0, src.meta.rows, ["mu"], ["mu"], indices)
    if len(a["index"]) != len(indices):
        raise UserError(f"--indices: {len(a['index'])} of {len(indices)} rows exist in both "
                        "encodings")
    return {f"{e}{suffix}": fit_linear_map(a["mu"], b["mu"], e, **params) for e in estimators}


def fit_on_all(src, tgt, estimators, params: dict, suffix: str = ""):
    """Streaming fits on every non-held-out row."""
    from analysis.linear_maps import fit_from_stats
    from analysis.pairs import streaming_stats

    stats = streaming_stats(src, tgt, part="fit")
    return {f"{e}{suffix}": fit_from_stats(stats, e, **params) for e in estimators}, stats.n


def support_sizes(d: int) -> list[int]:
    return sorted({max(2, d // 4), max(2, d // 2), d, 2 * d, 4 * d})


def fit_maps(src, tgt, estimators, fit: str, indices=None, params: dict | None = None,
             seed: int = 0):
    """Maps by name, the number of fit rows, and (for support fits) the sweep sizes.
    `support`: a support set selected in the source space among the fit rows; the
    full-data fits are added as `<estimator>_full`, and the first estimator refitted on
    support sets of d/4 ... 4d rows as `<estimator>_support<size>`."""
    from analysis.pairs import split_mask
    from jobs.sectors import compute_sectors
    from jobs.support_set import select

    params = params or {}
    if fit == "all":
        maps, n = fit_on_all(src, tgt, estimators, params)
        return maps, n, []
    if fit == "indices":
        maps = fit_on_rows(src, tgt, estimators, indices, params)
        return maps, len(np.unique(indices)), []
    d = src.latent_dim
    fit_rows = lambda index: split_mask(index, "fit")  # noqa: E731
    sectors = compute_sectors(str(src.path))
    support, _, _ = select(sectors, d, seed=seed, eligible_index=fit_rows)
    maps = fit_on_rows(src, tgt, estimators, support, params)
    full, _ = fit_on_all(src, tgt, estimators, params, suffix="_full")
    maps.update(full)
    sizes = support_sizes(d)
    for size in sizes:
        rows, _, _ = select(sectors, size, seed=seed, eligible_index=fit_rows)
        maps.update(fit_on_rows(src, tgt, estimators[:1], rows, params,
                                suffix=f"_support{size}"))
    return maps, len(support), sizes


def relocate(source: str, target: str, *, estimators=DEFAULT_ESTIMATORS, fit: str = "all",
             indices=None, lam: float = 1e-4, l2: float = 1e-4,
             tracking_uri: str | None = None,
             experiment: str | None = None, parent_run_id: str | None = None,
             actors: int = 1, use_gpu: bool = False, extra_maps: dict | None = None,
             run_name: str | None = None) -> RelocationOutcome:
    """Fit on the non-held-out rows (or on `indices`), evaluate on held-out rows.
    `extra_maps` (name -> LinearMap) are evaluated beside the fitted ones. `lam` is
    `ridge`'s penalty, `l2` the authors' Keras regulariser of `ridge_authors`."""
    import mlflow
    import torch

    from analysis.linear_maps import ESTIMATORS
    from analysis.pairs import check_joinable, read_rows
    from analysis.relocation import relocation_errors
    from latentatlas import tracking
    from latentatlas.encode import open_encoding
    from latentatlas.encode.pipeline import share_model
    from latentatlas.errors import UserError
    from latentatlas.images import stacked_rows

    unknown = set(estimators) - set(ESTIMATORS)
    if unknown:
        raise UserError(f"--estimator: unknown {sorted(unknown)}; known: {', '.join(ESTIMATORS)}")
    tracking.setup(tracking_uri, experiment)
    src, tgt = open_encoding(source), open_encoding(target)
    check_joinable(src, tgt)
    maps, fit_rows, sweep = fit_maps(src, tgt, estimators, fit, indices, {"lam": lam, "l2": l2})
    maps.update(extra_maps or {})
    meta = src.meta
    split = meta.load_split()
    labels = int(split.labels.max()) + 1 if (split.labels >= 0).any() else 0
    src_model, src_spec = tracking.load_vae(meta.model_uri)
    tgt_model, tgt_spec = tracking.load_vae(tgt.meta.model_uri)
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
    deficient = [name for name, m in maps.items() if m.rank_deficient]

    # The seed's picture: originals / source reconstructions / relocated reconstructions.
    shown = np.arange(0, 8 * 5, 5)  # the first eight held-out rows
    rows = read_rows(src.row_groups(), ["mu"], 0, int(shown.max()) + 1, shown)
    x = split.images[rows["index"]].astype(np.float32) / 255
    with torch.no_grad():
        recon = src_model.decode(torch.from_numpy(rows["mu"])).numpy()
        moved = tgt_model.decode(torch.from_numpy(
            maps[primary](rows["mu"]).astype(np.float32))).numpy()

    with mlflow.start_run(run_name=run_name or "relocate", parent_run_id=parent_run_id) as run:
        mlflow.set_tags({"latentatlas.kind": "relocate", "source": str(src.path),
                         "target": str(tgt.path), "source_model": meta.model_uri,
                         "target_model": tgt.meta.model_uri})
        mlflow.set_tag("latentatlas.rank_deficient", ",".join(deficient) or "none")
        mlflow.log_params({"fit": fit, "estimators": ",".join(estimators), "ridge_lambda": lam,
                           "ridge_authors_l2": l2,
                           "primary_estimator": primary, "dataset": meta.dataset,
                           "split": meta.split})
        mlflow.log_metrics(metrics)
        tracking.log_image(stacked_rows([x, recon, moved]), "relocation_rows")
        if sweep:
            from analysis.figures import support_sweep

            m_sweep = [every[f"M_{primary}_support{n}"] for n in sweep]
            tracking.log_figure(support_sweep(sweep, m_sweep, every[f"M_{primary}_full"],
                                              every["M_target_own"], primary),
                                "support_size_sweep.png")
            mlflow.log_table({"estimator": list(estimators),
                              "M_support": [every[f"M_{e}"] for e in estimators],
                              "M_full": [every[f"M_{e}_full"] for e in estimators]},
                             "support_vs_full.json")
        per_class = {"label": [*range(labels), "all"], "count": errors["count"].tolist()}
        per_class.update({k: v.tolist() for k, v in errors.items() if k != "count"})
        mlflow.log_table(per_class, "relocation_per_class.json")
        with tempfile.TemporaryDirectory() as tmp:
            for name, m in maps.items():
                m.save(Path(tmp) / f"map_{name}.npz")
            mlflow.log_artifacts(tmp, "maps")
    return RelocationOutcome(run.info.run_id, metrics, errors, maps, deficient)


def relocate_all(paths: list[str], **kwargs) -> tuple[str, np.ndarray, list]:
    """Every ordered pair, in parallel; a heatmap of M / M_target_own in a parent run."""
    from concurrent.futures import ThreadPoolExecutor

    import mlflow

    from analysis.figures import heatmap
    from latentatlas import tracking

    tracking.setup(kwargs.get("tracking_uri"), kwargs.get("experiment"))
    parent = mlflow.MlflowClient().create_run(
        tracking.current_experiment().experiment_id, run_name="relocate all pairs",
        tags={"latentatlas.kind": "relocate-all"})
    pid = parent.info.run_id
    pairs = [(i, j) for i in range(len(paths)) for j in range(len(paths)) if i != j]

    def one(pair):
        i, j = pair
        return pair, relocate(paths[i], paths[j], parent_run_id=pid,
                              run_name=f"relocate {i}->{j}", **kwargs)

    ratio = np.ones((len(paths), len(paths)))
    rows = []
    try:
        with ThreadPoolExecutor(min(4, len(pairs))) as pool:
            for (i, j), out in pool.map(one, pairs):
                m = out.metrics
                ratio[i, j] = m["relocation/M"] / m["relocation/M_target_own"]
                rows.append({"source": i, "target": j, "R": m["relocation/R"],
                             "L": m["relocation/L"], "M": m["relocation/M"],
                             "M_target_own": m["relocation/M_target_own"],
                             "M/M_target_own": ratio[i, j], "run_id": out.run_id})
        labels = [str(i) for i in range(len(paths))]
        client = mlflow.MlflowClient()
        tracking.log_figure(heatmap(ratio, labels, "M / M_target_own (rows: source)"),
                            "relocation_heatmap.png", run_id=pid)
        client.log_dict(pid, {"encodings": paths, "pairs": rows}, "relocation_pairs.json")
        client.set_terminated(pid, "FINISHED")
    except BaseException:
        mlflow.MlflowClient().set_terminated(pid, "FAILED")
        raise
    return pid, ratio, rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="latentatlas relocate", parents=[common_parser()],
                                description=__doc__)
    p.add_argument("--source", help="source encoding directory")
    p.add_argument("--target", help="target encoding directory (same dataset and split)")
    p.add_argument("--all", nargs="+", metavar="ENC", help="every ordered pair of these")
    p.add_argument("--fit", choices=["all", "support", "indices"], default="all",
                   help="all: every non-held-out row (streamed); support: a support set "
                        "selected in the source space, beside full-data fits and a size "
                        "sweep; indices: the rows of --indices")
    p.add_argument("--indices", help="file of row indices (one per line) for --fit indices")
    p.add_argument("--estimator", action="append", default=None,
                   help=f"repeatable; the first is the headline (default: "
                        f"{', '.join(DEFAULT_ESTIMATORS)})")
    p.add_argument("--lam", type=float, default=1e-4,
                   help="ridge: penalty on the sum-of-squares scale, |Y - XA|^2 + lam |A|^2")
    p.add_argument("--l2", type=float, default=1e-4,
                   help="ridge_authors: the authors' Keras L2 on weights and outputs (1e-4; "
                        "0.0015 when one side is a GAN)")
    p.add_argument("--actors", type=int, default=1)
    p.add_argument("--use-gpu", action="store_true")
    args = p.parse_args(argv)

    def run():
        from latentatlas.errors import UserError
        from latentatlas.runtime import init_ray

        common = dict(estimators=args.estimator or DEFAULT_ESTIMATORS, lam=args.lam, l2=args.l2,
                      tracking_uri=args.tracking_uri, experiment=args.experiment,
                      actors=args.actors, use_gpu=args.use_gpu)
        if args.all:
            if len(args.all) < 2:
                raise UserError("--all needs at least two encodings")
            init_ray(args.ray_address)
            pid, _, rows = relocate_all(args.all, **common)
            print_table(rows, title="relocation, every ordered pair")
            print(f"MLflow run id: {pid}")
            return
        if not (args.source and args.target):
            raise UserError("relocate: give --source and --target, or --all ENC ENC ...")
        indices = None
        if args.fit == "indices":
            if not args.indices:
                raise UserError("--fit indices needs --indices FILE")
            indices = np.loadtxt(args.indices, dtype=np.int64, ndmin=1)
        init_ray(args.ray_address)
        out = relocate(args.source, args.target, fit=args.fit, indices=indices, **common)
        print_table([out.metrics], title="relocation")
        for name in out.rank_deficient:
            m = out.maps[name]
            print(f"note: {name} was fitted on rows that determine {m.rank} of {m.dims} "
                  "directions; the others were left out (minimum-norm fit)")
        print(f"MLflow run id: {out.run_id}")

    return guarded(run, args.debug)


if __name__ == "__main__":
    sys.exit(main())
