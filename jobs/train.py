"""`latentatlas train CONFIG`: train a VAE with Ray Train and record it in MLflow."""

from __future__ import annotations

import sys

from latentatlas.command import add_overrides, guarded, verb_parser
from latentatlas.errors import UserError
from latentatlas.report import print_trained


def parse(argv):
    p = verb_parser("latentatlas train", __doc__)
    p.add_argument("config", nargs="?", help="experiment YAML (see jobs/configs/)")
    p.add_argument("--config", dest="config_flag", help="same as the positional CONFIG")
    p.add_argument("--resume", metavar="RUN_ID",
                   help="continue an interrupted train run from its last checkpoint")
    add_overrides(p)
    return p.parse_args(argv)


def resumed_config(run_id: str, overrides: list[str]):
    import mlflow

    from latentatlas.config import apply_overrides, validate

    try:
        raw = mlflow.artifacts.load_dict(f"runs:/{run_id}/config.yaml")
    except Exception as e:
        raise UserError(f"--resume {run_id}: cannot read its config.yaml ({e})") from None
    return validate(apply_overrides(raw, overrides), f"runs:/{run_id}/config.yaml")


def run(args) -> int:
    from latentatlas import tracking_store
    from latentatlas.config import load_config
    from latentatlas.train.runner import train

    path = args.config or args.config_flag
    if args.resume:
        tracking_store.setup(args.tracking_uri, args.experiment)
        cfg = resumed_config(args.resume, args.overrides)
    elif path:
        cfg = load_config(path, args.overrides)
    else:
        raise UserError("train: give a CONFIG file (e.g. jobs/configs/fmnist_dense.yaml) "
                        "or --resume RUN_ID")
    out = train(cfg, tracking_uri=args.tracking_uri, experiment=args.experiment,
                command=args.command,
                ray_address=args.ray_address, resume_run_id=args.resume)
    print_trained(out, cfg.name, "train")
    return 0


def main(argv=None) -> int:
    args = parse(argv)
    return guarded(lambda: run(args), args)


if __name__ == "__main__":
    sys.exit(main())
