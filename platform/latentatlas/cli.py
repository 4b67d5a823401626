"""`latentatlas <verb> ...`: each verb is `jobs.<verb>.main(argv)`; this file only dispatches
and turns bad input into one line and a non-zero exit."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Callable

from latentatlas.errors import UserError

VERBS = {
    "run": "the main job: the whole pipeline on the embedded default",
    "train": "train a model with Ray Train (CONFIG)",
    "sweep": "a Ray Tune sweep over a base config (CONFIG), or --resume DIR",
    "encode": "a dataset's latent codes into Parquet (Ray Data)",
    "stats": "latent statistics, variance loss, information gain of an ENCODING",
    "sectors": "codes per sector of the k most informative variables of an ENCODING",
    "support-set": "one member per sector: the support set of an ENCODING",
    "relocate": "linear maps between latent spaces: --source ENC --target ENC, or --all",
    "regularisation": "the seed's pictures of sampling vs no sampling (3-D, 2-D latents)",
    "runs": "a table of MLflow runs and their headline metrics",
}


def common_parser() -> argparse.ArgumentParser:
    """Options every verb takes (DESIGN.md, 'The command line and its contract')."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--experiment", default=None, help="MLflow experiment (default: latentatlas)")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster to join (default: $RAY_ADDRESS, else start a local one)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def guarded(fn: Callable[[], int | None], debug: bool = False) -> int:
    """Run a verb: UserError -> one line on stderr and exit code 2; --debug shows tracebacks."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        return fn() or 0
    except UserError as e:
        if debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: latentatlas <verb> [options]\n\nverbs:")
        for verb, text in VERBS.items():
            print(f"  {verb:<12} {text}")
        print("\n`latentatlas <verb> --help` for a verb's options")
        return 0 if argv else 2
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"error: unknown verb {verb!r}; verbs: {', '.join(VERBS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"jobs.{verb.replace('-', '_')}")
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
