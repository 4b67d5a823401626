"""`latentatlas run`: the main job, declared in jobs/configs/main.yaml. On the embedded
default (local Ray, sqlite MLflow, Fashion-MNIST) it trains the models and runs every
analysis the platform has, then prints what it measured beside the seed's claims.
`--config FILE` runs another job declared the same way (e.g. jobs/configs/support150.yaml).
`--resume RUN_ID` with `--only STEP` or `--from STEP` reruns part of it against that run's
earlier outputs."""

from __future__ import annotations

import sys

from latentatlas.command import add_overrides, guarded, verb_parser


def main(argv=None) -> int:
    p = verb_parser("latentatlas run", __doc__,
                    epilog="--set STEP.key=value overrides a step's config in the job file, "
                           "e.g. --set dense-s0.train.epochs=2")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="a declared job file (a path, or a name in jobs/configs, e.g. "
                        "support150.yaml); default: jobs/configs/main.yaml, the main job")
    p.add_argument("--dataset", default=None,
                   help="dataset name (default: fashion-mnist, else digits)")
    p.add_argument("--data-path", default=None,
                   help="folder of the dataset's files (default: the dataset's own)")
    p.add_argument("--limit", type=int, default=None,
                   help="use the first N images of each split (smoke runs)")
    p.add_argument("--epochs", type=int, default=None, help="epochs for every training")
    p.add_argument("--replicates", type=int, default=None, metavar="N",
                   help="run every seeded step and what reads it N times, seeds apart, and "
                        "judge the claims on intervals over them (default: the study's "
                        "`replicates:`, else 1)")
    add_overrides(p)
    p.add_argument("--steps", action="store_true",
                   help="list the job's steps (name, kind, inputs) and exit")
    p.add_argument("--resume", metavar="RUN_ID", default=None,
                   help="a main run whose step outputs this run keeps; alone: rerun the steps "
                        "it has no output of (a failed run)")
    p.add_argument("--only", metavar="STEP", action="append", default=[],
                   help="with --resume: rerun only this step (repeatable)")
    p.add_argument("--from", dest="start", metavar="STEP", default=None,
                   help="with --resume: rerun this step and every step after it that reads it")
    args = p.parse_args(argv)
    from jobs.study import run

    return guarded(lambda: run(args), args)


if __name__ == "__main__":
    sys.exit(main())
