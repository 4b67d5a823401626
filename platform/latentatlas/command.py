"""What every verb shares: the common options and the guard that turns bad input into one
line and a non-zero exit. The dispatcher (`latentatlas <verb>`) is jobs/cli.py."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable

from latentatlas.errors import UserError
from latentatlas.runtime import DEFAULT_WAIT_S, VERBOSE_ENV, WAIT_ENV, ray_log_note


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
    p.add_argument("--verbose", action=SetEnvironment, nargs=0, env=VERBOSE_ENV,
                   help="show Ray's own log lines (by default they go to logs/ray-*.log)")
    p.add_argument("--resource-timeout", action=SetEnvironment, env=WAIT_ENV, metavar="S",
                   help="on a cluster that may grow, how long a GPU request waits for a node "
                        f"(default {DEFAULT_WAIT_S:g} s)")
    return p


class SetEnvironment(argparse.Action):
    """An option read deep in the engine (runtime.init_ray, check_resources) travels there
    through the environment instead of through every call in between."""

    def __init__(self, *args, env: str, **kwargs):
        self.env = env
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if self.nargs == 0:
            values = "1"
        else:
            try:
                float(values)
            except ValueError:
                parser.error(f"{option_string}: expected a number of seconds, got {values!r}")
        os.environ[self.env] = values
        setattr(namespace, self.dest, values)


def guarded(fn: Callable[[], int | None], debug: bool = False) -> int:
    """Run a verb: UserError -> one line on stderr and exit code 2; --debug shows tracebacks."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        return fn() or 0
    except UserError as e:
        if debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        if note := ray_log_note():
            print(note, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
