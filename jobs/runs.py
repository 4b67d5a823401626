"""`latentatlas runs`: the newest MLflow runs, one table per kind of run (a training's by its
model family) with that kind's headline numbers, fitted to the terminal's width; `--format
json|csv` for scripts."""

from __future__ import annotations

import sys

from latentatlas.command import guarded, open_recorder, verb_parser
from latentatlas.report import print_rich_table

# What a table of each kind shows after the run's id, name and status; a training's columns
# are its model family's headline (latentatlas.families). Kinds not listed show those three.
KIND_COLUMNS = {
    "stats": ["latent/active_units", "latent/inactive", "variance_loss/delta_var_recon",
              "variance_loss/mse_recon"],
    "sectors": ["sectors/k", "sectors/nonempty"],
    "support-set": ["support/size", "support/pairwise_mse", "support/random_pairwise_mse"],
    "relocate": ["relocation/M", "relocation/M_target_own", "M / own", "relocation/R",
                 "relocation/L", "relocation/fit_rows"],
    "range": ["range/missed_sectors", "range/guess_mse_support", "range/guess_mse_generated"],
    "regularisation": ["regularity/prior_fid_sampling", "regularity/prior_fid_no_sampling"],
    "sparsity": ["sparsity/variable", "sparsity/collapsed", "sparsity/revived"],
    "translate-study": ["translate/pairs", "translate/cka_mean", "translate/svcca_mean"],
    "fid": ["scored", "fid", "fid space", "reference"],
    "sweep": ["sweep/trials", "sweep/finished", "sweep/stopped_early", "sweep/failed"],
}
IDENTITY = ["run_id", "name", "status"]


def run_row(r) -> dict:
    """Everything `runs` knows of a run, flat: identity, kind, the headline params, every
    latest metric, and the derived columns the tables show."""
    p, m, tags = r.data.params, r.data.metrics, r.data.tags
    family = tags.get("latentatlas.family", "vae")
    row = {"run_id": r.info.run_id, "name": r.info.run_name, "status": r.info.status,
           "kind": tags.get("latentatlas.kind", ""),
           "family": family if tags.get("latentatlas.kind") == "train" else "",
           "parent": tags.get("mlflow.parentRunId", ""),
           "model": p.get("model.name", ""),
           # the KL policy means something for VAEs only (a GAN's config has a default)
           "policy": p.get("kl.policy", "") if family == "vae" else "",
           "latent": p.get("model.latent_dim", ""), **m}
    # the prior's FID, in whichever feature space the run used (its name says which)
    prior_fid = sorted(k for k in m if k.startswith("fid/") and k.count("/") == 1)
    if prior_fid:
        row.update({"fid": m[prior_fid[0]], "fid space": prior_fid[0][len("fid/"):]})
    if row["kind"] == "fid":  # a model's samples, or images a user brought
        row |= {"scored": p.get("images") or p.get("model", ""),
                "reference": p.get("fid/reference", "")}
    if m.get("relocation/M_target_own"):
        row["M / own"] = m["relocation/M"] / m["relocation/M_target_own"]
    return row


def table_of(row: dict) -> str:
    """Which table a run goes to: its kind, a training's by family."""
    return f"train ({row['family']})" if row["kind"] == "train" else row["kind"] or "other"


def columns_of(table: str) -> list[str]:
    if table.startswith("train ("):
        from latentatlas.families import FAMILIES

        family = FAMILIES.get(table[len("train ("):-1])
        return IDENTITY + (list(family.headline) if family else [])
    return IDENTITY + KIND_COLUMNS.get(table, [])


def print_tables(rows: list[dict], title: str, wide: bool = False) -> None:
    """One table per kind, newest first, each with the columns its runs have."""
    print(title)
    if not rows:
        print("(no runs)")
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(table_of(row), []).append(row)
    for name, members in groups.items():
        columns = [c for c in columns_of(name)
                   if c in IDENTITY or any(r.get(c) not in (None, "") for r in members)]
        print(flush=True)
        print_rich_table(members, columns, f"{name}: {len(members)} "
                                           f"run{'s' * (len(members) > 1)}", wide=wide)


def write_records(rows: list[dict], form: str) -> None:
    """Every column of every run (not only the tables'), for scripts."""
    if form == "json":
        import json
        import math

        clean = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                  for k, v in r.items()} for r in rows]
        json.dump(clean, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return
    import csv

    columns = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(sys.stdout, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def newest(args) -> tuple[list, str, str]:
    """The newest runs (of --kind, children of --parent), the experiment and the store's URI.
    A SQLite store is read directly (no MLflow import); any other store, or a list holding a
    run of a killed process of this machine (the Recorder ends those first), goes through
    MLflow. Only the listed runs are checked: an older run of a killed process stays RUNNING
    until a command that opens the Recorder ends it."""
    from latentatlas.environment import experiment_name, resolve_tracking_uri
    from latentatlas.store_reader import newest_runs, owner_gone, sqlite_path

    uri, experiment = resolve_tracking_uri(args.tracking_uri), experiment_name(args.experiment)
    wanted = {k: v for k, v in (("latentatlas.kind", args.kind),
                                ("mlflow.parentRunId", args.parent)) if v}
    if path := sqlite_path(uri):
        runs = newest_runs(path, experiment, args.limit, tags=wanted)
        if runs is not None and not any(r.status == "RUNNING" and owner_gone(r.tags)
                                        for r in runs):
            return runs, experiment, uri

    recorder = open_recorder(args)  # ends runs of killed processes
    runs = recorder.client.search_runs(
        [recorder.experiment_id], " and ".join(f"tags.`{k}` = '{v}'" for k, v in wanted.items()),
        max_results=args.limit, order_by=["attributes.start_time DESC"])
    return runs, recorder.experiment, recorder.uri


def run(args) -> int:
    from latentatlas.errors import UserError

    if args.limit < 1:
        raise UserError(f"--limit {args.limit}: give a number of runs >= 1")
    runs, experiment, uri = newest(args)
    rows = [run_row(r) for r in runs]
    if args.format == "table":
        print_tables(rows, f"runs in experiment {experiment!r} ({uri}), newest first",
                     wide=args.wide)
    else:
        write_records(rows, args.format)
    return 0


def main(argv=None) -> int:
    p = verb_parser("latentatlas runs", __doc__)
    p.add_argument("--limit", type=int, default=50, help="newest N runs (after the filters)")
    p.add_argument("--kind", default=None,
                   help="runs of this kind only (train, stats, sectors, support-set, relocate, "
                        "range, fid, sweep, main, ...)")
    p.add_argument("--parent", default=None, metavar="RUN_ID",
                   help="children of this run only (a main job's steps, a sweep's trials)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table",
                   help="tables for reading; json or csv: every column of every run")
    p.add_argument("--wide", action="store_true",
                   help="one line per run even at a terminal (no folding to its width)")
    args = p.parse_args(argv)
    return guarded(lambda: run(args), args)


if __name__ == "__main__":
    sys.exit(main())
