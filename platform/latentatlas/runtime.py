"""Starting or joining Ray, the same way for every verb."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import ray

STARTED_HERE = False  # this process started the (fixed-size) local instance it uses


def init_ray(address: str | None = None) -> None:
    """Join `address` (or RAY_ADDRESS, set by `ray job submit`), else start a local instance.

    Reuses an instance already started in this process (the test session's)."""
    if ray.is_initialized():
        return
    quiet_environment()
    configure_data()
    address = address or os.environ.get("RAY_ADDRESS")
    # Worker processes log at WARNING too: Ray Train's per-checkpoint INFO lines are noise.
    quiet = dict(logging_level=logging.WARNING, log_to_driver=True,
                 logging_config=ray.LoggingConfig(encoding="TEXT", log_level="WARNING"))
    global STARTED_HERE
    STARTED_HERE = not address
    if address:
        ray.init(address=address, **quiet)
    else:
        # "local" always starts a fresh instance: a stale /tmp/ray/ray_current_cluster left
        # by a killed head must not be joined by accident.
        # Node preemption is a cloud matter; its watcher only logs noise on one machine.
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
        use_local_token()
        # The dashboard (loopback only) serves the State API that Ray Train's placement-group
        # cleaner polls; without it stopped runs can leave their placement groups behind.
        ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1", **quiet)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def check_resources(needed: dict[str, float], what: str) -> None:
    """Fail at once, naming what is missing and what the cluster has, when the local instance
    this process started (it never grows) lacks what a request needs; on a joined cluster,
    which an autoscaler may grow, say that the request waits."""
    have = ray.cluster_resources()
    missing = {k: v for k, v in needed.items() if have.get(k, 0) < v}
    if not missing:
        return
    want = ", ".join(f"{v:g} {k}" for k, v in missing.items())
    has = ", ".join(f"{have.get(k, 0):g} {k}" for k in ("CPU", "GPU"))
    if STARTED_HERE:
        from latentatlas.errors import UserError

        raise UserError(f"{what}: needs {want} but this machine's Ray instance has {has}; "
                        "drop the GPU request or pass --ray-address of a cluster with GPUs")
    print(f"note: {what} waits for {want} (the cluster has {has} now; an autoscaler may add "
          "nodes)", flush=True)


def local_token_env(environ, home: Path) -> dict[str, str]:
    """What a local instance adds to the environment for token authentication.

    Left alone, `ray.init()` generates `~/.ray/auth_token` (mode 0644) on first use. A local
    instance lives and dies with this process, so unless the user configured a token
    (RAY_AUTH_MODE, RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or an existing ~/.ray/auth_token,
    used as they are), it gets a fresh one that only this process and its Ray workers (which
    inherit the environment) know."""
    configured = {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & set(environ)
    if configured or (home / ".ray" / "auth_token").exists():
        return {}
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def use_local_token() -> None:
    added = local_token_env(os.environ, Path.home())
    if not added:
        return
    from ray._raylet import AuthenticationTokenLoader, Config

    os.environ.update(added)
    # Ray read RAY_AUTH_MODE and looked for a token when it was imported: refresh both, as
    # Ray's own _enable_token_auth does (private API; Ray is pinned in constraints.txt).
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def quiet_environment() -> None:
    """Environment shared by the driver and (through Ray) its workers: no telemetry, one copy
    of each worker print, no pickle-format warnings or download bars from MLflow."""
    for key, value in {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
                       # Train's per-report INFO lines ignore LoggingConfig on workers.
                       "RAY_TRAIN_ENABLE_WORKER_STRUCTURED_LOGGING": "0",
                       # The Train controller notices a finished run at its next poll
                       # (default every 2 s); short fits waited seconds per fit for it.
                       "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
                       "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}.items():
        os.environ.setdefault(key, value)
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)


def configure_data() -> None:
    """Ray Data as this platform uses it: the classic Parquet reader, progress bars for people
    at a terminal only."""
    import sys

    from ray.data import DataContext

    context = DataContext.get_current()
    # Ray 2.60's DataSourceV2 reader starts 32 short-lived actors to read Parquet footers on
    # every read_parquet: ~2 s per pipeline on a small node, for encodings of a few shards.
    context.use_datasource_v2 = False
    interactive = sys.stderr.isatty() and not os.environ.get("CI")
    context.enable_progress_bars = interactive
    if not interactive:  # per-operator INFO progress lines flood logs
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    # "Progress bars disabled" on every pipeline: we disabled them, on purpose
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
