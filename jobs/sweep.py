"""`latentatlas sweep CONFIG`: a Ray Tune sweep over a base experiment config (KL policy,
latent size, learning rate, ...), one MLflow child run per trial under a parent run, then
the latent statistics of every finished trial. `--resume DIR|NAME` continues an
interrupted sweep without rerunning finished trials."""

from __future__ import annotations

import sys
from pathlib import Path

from latentatlas.command import add_overrides, guarded, verb_parser
from latentatlas.errors import UserError
from latentatlas.report import print_table

LATENT_KEYS = ("latent/active_units", "latent/inactive", "latent/stationary_mean",
               "variance_loss/delta_var_recon")


def parse(argv):
    p = verb_parser("latentatlas sweep", __doc__)
    p.add_argument("config", nargs="?", help="sweep YAML (see jobs/configs/sweep_*.yaml)")
    p.add_argument("--resume", metavar="DIR|NAME",
                   help="continue an interrupted sweep: its directory, or its name under "
                        "--storage-path")
    p.add_argument("--storage-path", default=None,
                   help="where sweeps live, for --resume NAME (default ./ray_results)")
    add_overrides(p)
    return p.parse_args(argv)


def measure_trial(config, context: dict, row: dict) -> dict:
    """Encode a finished trial's validation split and measure its latent space; a resumed
    sweep reuses the stats run it already made."""
    from jobs import steps
    from latentatlas.config import validate
    from latentatlas.encode.pipeline import encode
    from latentatlas.tracking import Recorder
    from latentatlas.tune.tuner import child_runs

    recorder = Recorder(context["tracking_uri"], context["experiment"], context["command"])
    done = [r for r in child_runs(recorder.client, recorder.experiment_id, row["run_id"], "stats")
            if r.info.status == "FINISHED"]
    if done:
        return {k: done[0].data.metrics.get(k) for k in LATENT_KEYS}
    data = validate(context["base"], "base").data
    enc = encode(f"runs:/{row['run_id']}/model", data.name, data.val_split,
                 Path("encodings") / f"sweep-{config.name}" / row["trial"],
                 data_path=data.path, limit=config.stats.limit,
                 tracking_uri=context["tracking_uri"], actors=1)
    # One actor each: a validation split is small, and Ray Data's start-up dominates.
    _, measured = steps.stats(recorder, str(enc.path), actors=1, gain_rows=512)
    return {k: measured.metrics.get(k) for k in LATENT_KEYS}


def run(args) -> int:
    from latentatlas.tune.spec import load_sweep
    from latentatlas.tune.tuner import resume_sweep, sample_quality_rows, start_sweep

    common = dict(tracking_uri=args.tracking_uri, experiment=args.experiment,
                  ray_address=args.ray_address, command=args.command, measure=measure_trial)
    if args.resume:
        if args.config or args.overrides:
            raise UserError("--resume continues a sweep as it was started: give no CONFIG "
                            "and no --set")
        out = resume_sweep(args.resume, storage_path=args.storage_path, **common)
    elif args.config:
        out = start_sweep(load_sweep(args.config, args.overrides), **common)
    else:
        raise UserError("sweep: give a sweep CONFIG (e.g. jobs/configs/sweep_fmnist.yaml) "
                        "or --resume DIR")
    if out.interrupted:
        print(f"sweep interrupted; continue it with: latentatlas sweep --resume {out.path}",
              file=sys.stderr)
        return 130
    shown = [{k: v for k, v in r.items() if k not in ("run_id", "latent/stationary_mean")
              and not k.startswith(("fid/", "kid/"))} for r in out.rows]
    print_table(shown, title="sweep")
    quality = sample_quality_rows(out.rows, out.space)
    if quality:
        print_table(quality, title="FID by sampler (fid_by_sampler.json)")
    if out.best:
        print(f"best trial: {out.best['trial']} (run {out.best['run_id']})")
    print(f"MLflow run id: {out.parent_run_id}  sweep directory: {out.path}")
    return 0


def main(argv=None) -> int:
    args = parse(argv)
    return guarded(lambda: run(args), args)


if __name__ == "__main__":
    sys.exit(main())
