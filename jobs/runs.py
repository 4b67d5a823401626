"""`latentatlas runs`: a terminal table of MLflow runs and their headline metrics."""

from __future__ import annotations

import argparse
import sys

from latentatlas.command import common_parser, guarded
from latentatlas.report import print_table

HEADLINE = ["val/mse", "val/kl", "val/accuracy", "gan/d_real", "gan/d_fake", "inversion/latent_mse",
            "inversion/pixel_mse", "latent/active_units", "latent/inactive",
            "variance_loss/delta_var_recon", "variance_loss/mse_recon", "sectors/nonempty",
            "support/pairwise_mse", "relocation/M", "relocation/M_target_own",
            "range/ratio_support", "range/missed_sectors"]


def run_rows(runs) -> list[dict]:
    rows = []
    for r in runs:
        p, m = r.data.params, r.data.metrics
        row = {"run_id": r.info.run_id, "name": r.info.run_name,
               "kind": r.data.tags.get("latentatlas.kind", ""), "status": r.info.status,
               "model": p.get("model.name", ""),
               # the KL policy means something for VAEs only (a GAN's config has a default)
               "policy": p.get("kl.policy", "") if r.data.tags.get(
                   "latentatlas.family", "vae") == "vae" else "",
               "latent": p.get("model.latent_dim", "")}
        row.update({k: m[k] for k in HEADLINE if k in m})
        # the prior's FID, in whichever feature space the run used (its name says which)
        prior_fid = sorted(k for k in m if k.startswith("fid/") and k.count("/") == 1)
        if prior_fid:
            row.update({"fid": m[prior_fid[0]], "fid space": prior_fid[0][len("fid/"):]})
        rows.append(row)
    return rows


def newest(args) -> tuple[list, str, str]:
    """The newest runs, the experiment and the store's URI. A SQLite store is read directly
    (no MLflow import); any other store, or one holding a run of a killed process of this
    machine (the Recorder ends those first), goes through MLflow."""
    from latentatlas.environment import experiment_name, resolve_tracking_uri
    from latentatlas.store_reader import newest_runs, owner_gone, sqlite_path

    uri, experiment = resolve_tracking_uri(args.tracking_uri), experiment_name(args.experiment)
    if path := sqlite_path(uri):
        runs = newest_runs(path, experiment, args.limit)
        if runs is not None and not any(r.status == "RUNNING" and owner_gone(r.tags)
                                        for r in runs):
            return runs, experiment, uri
    from latentatlas.tracking import Recorder

    recorder = Recorder(args.tracking_uri, args.experiment)  # ends runs of killed processes
    runs = recorder.client.search_runs([recorder.experiment_id], max_results=args.limit,
                                       order_by=["attributes.start_time DESC"])
    return runs, recorder.experiment, recorder.uri


def run(args) -> int:
    runs, experiment, uri = newest(args)
    rows = run_rows(runs)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    print_table(rows, title=f"runs in experiment {experiment!r} ({uri})", columns=columns)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="latentatlas runs", parents=[common_parser()],
                                description=__doc__)
    p.add_argument("--limit", type=int, default=50, help="newest N runs")
    args = p.parse_args(argv)
    return guarded(lambda: run(args), args)


if __name__ == "__main__":
    sys.exit(main())
