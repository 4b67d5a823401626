"""The environment variables LatentAtlas reads, read here alone, when they are needed (the
README's "Environment variables"). Ray's own variables (RAY_AUTH_*, set by `ray start`) are
Ray's business in runtime.py. The platform writes the environment only where a library can
be told no other way; each such line says why."""

from __future__ import annotations

import os
from pathlib import Path

from latentatlas.errors import UserError

DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "latentatlas"

# How long a GPU request waits for a node on a cluster that may grow (--resource-timeout).
DEFAULT_WAIT_S = 600.0


def ray_address() -> str | None:
    """The cluster to join (set by `ray start` / `ray job submit`); unset: a local instance."""
    return os.environ.get("RAY_ADDRESS") or None


def tracking_uri() -> str | None:
    return os.environ.get("MLFLOW_TRACKING_URI") or None


def experiment() -> str | None:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or None


def fashion_mnist_dir() -> Path | None:
    value = os.environ.get("LATENTATLAS_FASHION_MNIST")
    return Path(value) if value else None


def local_rows(default: int = 100_000) -> int:
    """Up to this many rows a pass runs in the command's own process (0: always Ray Data)."""
    return whole_number("LATENTATLAS_LOCAL_ROWS", default, least=0)


def shard_rows(default: int = 1 << 20) -> int:
    """Rows per Parquet shard of an encoding written in the command's own process."""
    return whole_number("LATENTATLAS_SHARD_ROWS", default, least=1)


def at_terminal(stream) -> bool:
    """Whether a person watches `stream` (progress bars): a TTY, and not under CI."""
    return stream.isatty() and not os.environ.get("CI")


def whole_number(name: str, default: int, least: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        number = least - 1
    if number < least:
        raise UserError(f"{name}={value}: expected a whole number >= {least}")
    return number


def process_alive(pid: int) -> bool:
    """Whether process `pid` of this machine is alive (a zombie is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    # A process that exited but was not reaped (its parent gone, and an init that does not
    # reap, as in some containers) still answers kill(pid, 0): a zombie is dead.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """Absolute form of the tracking URI (Ray workers and Tune trials change directory)."""
    uri = uri or tracking_uri() or DEFAULT_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    return uri


def experiment_name(given: str | None = None) -> str:
    """The experiment a command named, else $MLFLOW_EXPERIMENT_NAME, else the default."""
    return given or experiment() or DEFAULT_EXPERIMENT
