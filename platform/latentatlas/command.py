"""What every verb shares: the common options and the guard that turns bad input into one
line and a non-zero exit. The dispatcher (`latentatlas <verb>`) is jobs/cli.py."""

from __future__ import annotations

import argparse
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, fields

from latentatlas.environment import DEFAULT_WAIT_S
from latentatlas.errors import UserError


def verb_parser(prog: str, description: str | None, **kwargs) -> argparse.ArgumentParser:
    """A verb's parser with the common options; `args.command` is the verb, as its runs'
    source says."""
    p = argparse.ArgumentParser(prog=prog, parents=[common_parser()], description=description,
                                **kwargs)
    p.set_defaults(command=prog)
    return p


def open_recorder(args: argparse.Namespace):
    """The command's Recorder: its store and experiment, the command its runs came from,
    and what each run learns of the command's Ray runtime."""
    from latentatlas import runtime
    from latentatlas.tracking import Recorder

    runtime.quiet_environment()  # a verb that never starts Ray still downloads artifacts
    return Recorder(args.tracking_uri, args.experiment, command=getattr(args, "command", None),
                    process_tags=runtime.current().run_tags)


def common_parser() -> argparse.ArgumentParser:
    """Options every verb takes (DESIGN.md, 'The command line and its contract')."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--experiment", default=None, help="MLflow experiment (default: latentatlas)")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster to join (default: $RAY_ADDRESS, else start a local one)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's own log lines (by default they go to logs/ray-*.log)")
    p.add_argument("--resource-timeout", type=seconds, default=DEFAULT_WAIT_S, metavar="S",
                   help="on a cluster that may grow, how long a GPU request waits for a node "
                        f"(default {DEFAULT_WAIT_S:g} s)")
    return p


def add_overrides(p: argparse.ArgumentParser) -> None:
    """`--set`, for the verbs that read a config (train, sweep, invert-train, run)."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set train.epochs=3 (repeatable)")


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """A command's common options, built once at its edge (`settings`) and passed down: the
    one place they are read, instead of environment variables read deep in the engine."""

    tracking_uri: str | None = None
    experiment: str | None = None
    ray_address: str | None = None
    debug: bool = False
    verbose: bool = False
    resource_timeout_s: float = DEFAULT_WAIT_S


def settings(args: argparse.Namespace) -> Settings:
    return Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)
                       if hasattr(args, f.name)},
                    resource_timeout_s=getattr(args, "resource_timeout", DEFAULT_WAIT_S))


def guarded(fn: Callable[[], int | None], args: argparse.Namespace) -> int:
    """Run a verb: its settings configure the command's Ray runtime; UserError -> one line on
    stderr and exit code 2; --debug shows tracebacks."""
    from latentatlas import runtime

    options = settings(args)
    ray = runtime.configure(options.ray_address, options.verbose, options.resource_timeout_s)
    try:
        return fn() or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        bad_input = (user_error_in(e) or machine_fault_in(e, options.tracking_uri)
                     or tracking_refusal_in(e, options.tracking_uri))
        if bad_input is None:
            raise
        if options.debug:
            traceback.print_exc()
        print(f"error: {bad_input}", file=sys.stderr)
        if note := ray.log_note():
            print(note, file=sys.stderr)
        return 2


def machine_fault_in(error: BaseException, tracking_uri: str | None) -> UserError | None:
    """A full, quota-bound or read-only disk that a write outside the platform's writers met
    (MLflow's own files, a worker's per-epoch records) as one line naming the file (or the
    tracking store's database, which SQLite does not name)."""
    import errno

    from latentatlas.environment import resolve_tracking_uri
    from latentatlas.outputs import SQLITE_DATABASE, fault_line, os_fault_in

    fault = os_fault_in(error)
    if fault is None or fault[0] not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return None
    code, filename = fault
    uri = resolve_tracking_uri(tracking_uri)
    if filename == SQLITE_DATABASE and uri.startswith("sqlite:///"):
        filename = uri.removeprefix("sqlite:///")
    return UserError(fault_line(filename or "a file the error does not name", code,
                                cleaned=False))


def tracking_refusal_in(error: BaseException, tracking_uri: str | None) -> UserError | None:
    """A tracking server's refusal met after the store was set up (a login that may read an
    experiment but not write a run in it: HTTP 403 at the run's creation) as its one line."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        # MLflow's names of HTTP 401 and 403: only then is MLflow's client imported
        if getattr(error, "error_code", None) in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
            from latentatlas.environment import resolve_tracking_uri
            from latentatlas.tracking_store import refusal

            return UserError(refusal(resolve_tracking_uri(tracking_uri), error))
        error = error.__cause__ or error.__context__
    return None


USER_ERROR_LINE = re.compile(r"^latentatlas\.errors\.UserError: (.+)$", re.MULTILINE)


def user_error_in(error: BaseException) -> UserError | None:
    """The UserError behind `error`: itself, its cause, or one raised in a Ray task. Ray
    Data wraps a step's exception in UserCodeException and keeps the original only in the
    remote traceback's text, whose last `UserError:` line is the message."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            # a Ray task's error is also of its cause's type, its text the traceback: the
            # cause (of a task in a task, the cause's cause) is the user's line
            while isinstance(getattr(error, "cause", None), UserError):
                error = error.cause
            return error
        seen.add(id(error))
        if found := USER_ERROR_LINE.findall(str(error)):
            return UserError(found[-1])
        error = getattr(error, "cause", None) or error.__cause__ or error.__context__
    return None
