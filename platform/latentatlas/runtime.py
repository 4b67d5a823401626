"""Starting or joining Ray, the same way for every verb."""

from __future__ import annotations

import logging
import os
import secrets
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from latentatlas import environment
from latentatlas.environment import DEFAULT_WAIT_S


class Runtime:
    """Ray as one command uses it, made once per command from its options (`configure`):
    where to start or join Ray, whether the instance is this machine's own (one it started,
    or the folder's from `latentatlas up`: of fixed size, unlike a cluster an autoscaler may
    grow), how long a GPU request waits on a cluster, and where Ray's own lines go."""

    def __init__(self, address: str | None = None, verbose: bool = False,
                 resource_timeout_s: float = DEFAULT_WAIT_S):
        self.address, self.verbose = address, verbose
        self.resource_timeout_s = resource_timeout_s
        self.local = False
        # Ray's own messages unless verbose: the workers' stderr, the raylet's and the
        # autoscaler's lines, the driver's `ray` loggers; absolute, wherever the command goes.
        self.log_path = (Path("logs") / f"ray-{time.strftime('%Y%m%d-%H%M%S')}-"
                         f"{os.getpid()}.log").resolve()
        self._starting = threading.Lock()  # steps of one command may run in threads

    def need(self) -> None:
        """Start or join Ray at the first step that needs it: a command whose inputs are
        small enough to run in this process (latentatlas.batches) never pays for it."""
        with self._starting:
            self.start()

    def start(self, address: str | None = None) -> None:
        """Join `address` (else this runtime's, else RAY_ADDRESS, set by `ray job submit`),
        else start a local instance. Reuses an instance already running in this process
        (the test session's, a notebook's)."""
        import ray

        if ray.is_initialized():
            # Ray started before us (a notebook's or a script's ray.init()): a head this
            # process started is this machine's own instance; a joined cluster may grow.
            self.local = self.local or started_in_this_process()
            return
        quiet_environment()
        configure_data()
        address = address or self.address or environment.ray_address()
        # Worker processes log at WARNING too: Ray Train's per-checkpoint INFO lines are noise.
        quiet = dict(logging_level=logging.WARNING, log_to_driver=True,
                     logging_config=ray.LoggingConfig(encoding="TEXT", log_level="WARNING"))
        session = None if address else folder_session()
        self.local = not address or session is not None
        if session:
            use_auth({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": session.token_path})
            print(f"note: using this folder's Ray from `latentatlas up` ({session.gcs})",
                  flush=True)
            address = session.gcs
        if address:
            ray.init(address=address, **quiet)
        else:
            # "local" always starts a fresh instance: a stale /tmp/ray/ray_current_cluster
            # left by a killed head must not be joined by accident. Node preemption is a
            # cloud matter; its watcher only logs noise on one machine (Ray reads it from
            # the environment of the processes it starts).
            os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
            use_local_token()
            # The dashboard (loopback only) serves the State API that Ray Train's
            # placement-group cleaner polls; without it stopped runs can leave their
            # placement groups behind.
            from latentatlas.session import free_port

            port = free_port()
            with own_api_server(f"http://127.0.0.1:{port}"):
                ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1",
                         dashboard_port=port, **quiet)
        if not self.verbose:
            divert_ray_lines(self.log_path)

    def check_resources(self, needed: dict[str, float], what: str) -> None:
        """Fail at once, naming what is missing and what the cluster has, when this machine's
        instance (it never grows) lacks what a request needs. A joined cluster may grow: ask
        its autoscaler for the resources, say that the request waits, and fail with one line
        if they have not come after the resource timeout."""
        from latentatlas.errors import UserError

        missing = missing_resources(needed)
        if not missing:
            return
        if self.local:
            raise UserError(f"{what}: needs {describe(missing)} but this machine's Ray "
                            f"instance has {describe(cluster_has())}; drop the GPU request or "
                            "pass --ray-address of a cluster with GPUs")
        from ray.autoscaler.sdk import request_resources

        timeout = self.resource_timeout_s
        print(f"note: {what} waits up to {timeout:g} s for {describe(missing)} (the cluster "
              f"has {describe(cluster_has())} now; an autoscaler may add nodes)", flush=True)
        request_resources(bundles=[dict(needed)])
        deadline = time.monotonic() + timeout
        while missing_resources(needed):
            if time.monotonic() > deadline:
                request_resources(bundles=[])  # withdraw the request
                raise UserError(f"{what}: no {describe(missing)} arrived within {timeout:g} s "
                                f"(the cluster has {describe(cluster_has())}); raise "
                                "--resource-timeout or add such nodes")
            time.sleep(min(2.0, timeout / 10))

    def run_tags(self) -> dict[str, str]:
        """What a run started now learns of this process: the file holding Ray's own lines
        (none when they are printed, or before Ray started)."""
        ray = sys.modules.get("ray")  # a process that never imported Ray runs none
        if self.verbose or ray is None or not ray.is_initialized():
            return {}
        return {RAY_LOG_TAG: str(self.log_path)}

    def log_note(self) -> str | None:
        """Where Ray's messages of this process went, when any did."""
        return f"Ray's own messages: {self.log_path}" if self.log_path.exists() else None


RAY_LOG_TAG = "latentatlas.ray_log"
# One per process, as Ray's own instance is: the command configures it at its edge
# (latentatlas.command.guarded) and every step of the command shares it.
_current = Runtime()


def current() -> Runtime:
    """This command's runtime (a default one until the command configures it)."""
    return _current


def configure(address: str | None = None, verbose: bool = False,
              resource_timeout_s: float = DEFAULT_WAIT_S) -> Runtime:
    """The command's runtime, from its options; an instance already running in this process
    is kept (the test session's, a notebook's)."""
    global _current
    before = _current
    _current = Runtime(address, verbose, resource_timeout_s)
    # a process that never imported Ray has no instance running (and need not import it)
    _current.local = before.local and "ray" in sys.modules and sys.modules["ray"].is_initialized()
    _current.log_path = before.log_path  # one file per process: its handler is installed once
    return _current


def machine() -> str:
    """The machine a result ran on, as its reader needs it: CPUs and their model, GPUs,
    the system, Python and torch (this process's: the driver's, on a cluster)."""
    import platform

    import torch

    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), "")
    except OSError:  # not Linux
        model = ""
    cpu = model or platform.processor() or platform.machine()
    gpus = torch.cuda.device_count()
    return (f"{os.cpu_count()} CPUs ({cpu}), {gpus} GPU{'s' * (gpus != 1)}, "
            f"{platform.system()} {platform.machine()}, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def init_ray(address: str | None = None) -> None:
    current().start(address)


def need_ray() -> None:
    current().need()


def check_resources(needed: dict[str, float], what: str) -> None:
    current().check_resources(needed, what)


def started_in_this_process() -> bool:
    """Whether this process's ray.init() started the head it is connected to (private Ray
    API: Ray is pinned in constraints.txt)."""
    import ray

    return bool(getattr(ray._private.worker._global_node, "head", False))


def ray_log(path: Path) -> logging.Logger:
    """The logger whose file (`path`, created on its first line) holds Ray's own messages."""
    log = logging.getLogger("latentatlas.ray")
    if not log.handlers:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, delay=True)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
        log.propagate = False
    return log


def divert_ray_lines(path: Path) -> None:
    """Ray's own lines look like failures to a user ("(raylet) WARNING: 8 PYTHON worker
    processes", warnings of its loggers) and are routine: unless --verbose they go to
    `path`. What our workers print to stdout (epoch lines) still reaches the terminal;
    their stderr goes to the file (a failing task's error reaches the driver anyway)."""
    import ray._private.worker as ray_worker
    from ray._private.ray_logging import global_worker_stdstream_dispatcher

    log = ray_log(path)

    def route(batch: dict, ignore_prefix: bool = True) -> None:
        lines = batch.get("lines", [])
        ours = not batch.get("is_err") and str(batch.get("pid", "")).isdigit()
        if ours:
            for line in lines:
                print(line, flush=True)
        else:
            if batch.get("pid") == "autoscaler":  # its status table every 5 s: events only
                lines = ray_worker.filter_autoscaler_events(lines)
            who = batch.get("actor_name") or batch.get("task_name") or batch.get("pid")
            for line in lines:
                log.info("(%s) %s", who, line)

    # Private API (Ray is pinned in constraints.txt): workers' lines reach the printer
    # ray.init installed in the dispatcher; the raylet's warnings (pushed as errors) reach
    # the module's print_to_stdstream directly. Both go through `route`.
    global_worker_stdstream_dispatcher.remove_handler("ray_print_logs")
    global_worker_stdstream_dispatcher.add_handler("latentatlas", route)
    ray_worker.print_to_stdstream = route
    file_handler = log.handlers[0]
    for name in ("ray", "ray.data", "ray.train", "ray.tune"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                    handler, logging.FileHandler):
                logger.removeHandler(handler)
        if file_handler not in logger.handlers:
            logger.addHandler(file_handler)


def missing_resources(needed: dict[str, float]) -> dict[str, float]:
    import ray

    have = ray.cluster_resources()
    return {k: v for k, v in needed.items() if have.get(k, 0) < v}


def cluster_has() -> dict[str, float]:
    import ray

    have = ray.cluster_resources()
    return {k: have.get(k, 0) for k in ("CPU", "GPU")}


def describe(resources: dict[str, float]) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in resources.items())


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


def folder_session():
    from latentatlas.session import current

    return current()


def use_local_token() -> None:
    use_auth(local_token_env(os.environ, Path.home()))


def use_auth(added: dict[str, str]) -> None:
    """Token settings for this process and the Ray workers it starts."""
    if not added:
        return
    from ray._raylet import AuthenticationTokenLoader, Config

    if "RAY_AUTH_TOKEN_PATH" in added:
        os.environ.pop("RAY_AUTH_TOKEN", None)  # it would win over the file
    os.environ.update(added)
    # Ray read RAY_AUTH_MODE and looked for a token when it was imported: refresh both, as
    # Ray's own _enable_token_auth does (private API; Ray is pinned in constraints.txt).
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


# Ray's State API reads this before any address it is given.
API_SERVER = "RAY_API_SERVER_ADDRESS"


@contextmanager
def own_api_server(url: str):
    """While a local instance starts, name its API server in the environment its raylet, and
    so every worker, inherits: Ray's State API, which Ray Train's placement-group cleaner
    calls without an address, fails where another instance runs on this machine (two
    studies, `latentatlas up` beside a notebook), and a stopped multi-worker training's CPUs
    then stay reserved for good. The driver passes addresses itself (a value the user set
    would override them: Ray reads the variable first), and what it starts later must not
    inherit this instance: the variable is as it was afterwards."""
    saved = os.environ.get(API_SERVER)
    os.environ[API_SERVER] = url
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(API_SERVER, None)
        else:
            os.environ[API_SERVER] = saved


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
    from ray.data import DataContext

    context = DataContext.get_current()
    # Ray 2.60's DataSourceV2 reader starts 32 short-lived actors to read Parquet footers on
    # every read_parquet: ~2 s per pipeline on a small node, for encodings of a few shards.
    context.use_datasource_v2 = False
    interactive = environment.at_terminal(sys.stderr)
    context.enable_progress_bars = interactive
    if not interactive:  # per-operator INFO progress lines flood logs
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    # "Progress bars disabled" on every pipeline: we disabled them, on purpose
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
