"""One shared local Ray instance per test session; MLflow stores are real sqlite files."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


# The suite depends on nothing in the user's home: every test process sees a new, empty HOME
# (so a file some earlier work left there cannot make a test pass here and fail on a fresh
# machine), and the session fails if anything wrote Ray's token folder into it.
SESSION_HOME = Path(tempfile.mkdtemp(prefix="la-home-"))
os.environ["HOME"] = str(SESSION_HOME)


def pytest_sessionfinish(session, exitstatus):
    if (SESSION_HOME / ".ray").exists():
        print(f"\nerror: the test session wrote {SESSION_HOME / '.ray'} (a home folder)",
              file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# `make test-fast` leaves out tests marked `slow` or `cluster`; a test that takes this long
# unmarked is named at the end of the session, so the fast tier stays fast.
SLOW_S = 10.0
unmarked_slow: list[tuple[str, float]] = []


def pytest_runtest_logreport(report):
    # the call alone: a session fixture's setup would name whichever test first uses it
    if report.when == "call" and report.duration >= SLOW_S and not (
            {"slow", "cluster"} & set(report.keywords)):
        unmarked_slow.append((report.nodeid, report.duration))


def pytest_terminal_summary(terminalreporter):
    for nodeid, seconds in unmarked_slow:
        terminalreporter.write_line(f"note: {nodeid} took {seconds:.0f} s and is not marked "
                                    "slow (make test-fast runs it)")


def run_cli_module(args, cwd, timeout=120, extra_path: str | None = None):
    """`python -m <args>` from `cwd`, as a user runs a verb (`extra_path`: the user's own
    code on the Python path)."""
    path = os.pathsep.join([str(REPO), *([extra_path] if extra_path else [])])
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": path})


STORE_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID")


@contextmanager
def mlflow_state_restored():
    """For fixtures that choose a store (`use_store`): MLflow's tracking URI, its active
    runs and the store's variables are as they were before, for the tests after (MLflow
    exports the URI and experiment id it is told, for the processes it starts)."""
    import mlflow

    saved = {k: os.environ.get(k) for k in STORE_VARIABLES}
    try:
        yield
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def use_store(uri: str, experiment: str) -> str:
    """What a user does to make the library's calls without a store use one: export
    MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_NAME (the platform only reads them)."""
    from latentatlas import tracking_store

    os.environ["MLFLOW_TRACKING_URI"], os.environ["MLFLOW_EXPERIMENT_NAME"] = uri, experiment
    return tracking_store.setup(uri, experiment)


@pytest.fixture(scope="session")
def ray_session():
    import ray

    from latentatlas.runtime import init_ray

    os.environ.pop("RAY_ADDRESS", None)
    init_ray()
    yield ray
    ray.shutdown()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A clean working directory: mlflow.db, mlartifacts/ and ray_results/ land here; no
    store is chosen before the test, none is left chosen after it."""
    monkeypatch.chdir(tmp_path)
    for key in STORE_VARIABLES:  # recorded as they were, however the test changes them
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    with mlflow_state_restored():
        yield tmp_path


@pytest.fixture
def mlflow_store(workdir):
    return use_store(f"sqlite:///{workdir}/mlflow.db", "test")


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """A real IDX file: magic (0, 0, 0x08, ndim), big-endian dims, uint8 body."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        data = gzip.compress(data)
        path = path.with_name(path.name + ".gz")
    path.write_bytes(data)
    return path


def make_idx_dataset(folder: Path, n_train=64, n_test=32, size=28, gz=True, seed=0) -> Path:
    """A small MNIST-format folder with class-dependent blobs (learnable, not noise)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        yy, xx = np.mgrid[:size, :size]
        centers = (labels[:, None, None] * 2 + 4) % (size - 4) + 2
        images = 255 * np.exp(-((yy - centers) ** 2 + (xx - size / 2) ** 2) / 20.0)
        images = np.clip(images + rng.normal(0, 10, images.shape), 0, 255).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz)
    return folder


@pytest.fixture
def idx_folder(tmp_path):
    return make_idx_dataset(tmp_path / "idx")


def train_workers(state: str = "ALIVE") -> list:
    import ray
    from ray.util.state import list_actors

    # This process's Ray, by its address: other Ray instances on the machine are not ours.
    return list_actors(address=ray.get_runtime_context().gcs_address,
                       filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", state)],
                       limit=1000)


def images_over_steps(client, run_id: str) -> dict[str, list[int]]:
    """The images a run logged over steps (MLflow's `log_image(key=, step=)`), key -> steps,
    read from the file names MLflow 3.17 gives them: images/<key>+step+<n>+timestamp+..."""
    out: dict[str, list[int]] = {}
    for f in client.list_artifacts(run_id, "images"):
        name = f.path.removeprefix("images/")
        if name.endswith(".png"):
            key, _, step, *_ = name.split("+")
            out.setdefault(key.replace("~", "/"), []).append(int(step))
    return {k: sorted(v) for k, v in out.items()}


@contextmanager
def mlflow_server(backend_uri: str, log: Path):
    """A real `mlflow server` on a free loopback port over `backend_uri`; its base URL. The
    REST API it answers is what MLflow's UI reads."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(mlflow_cli), "server", "--host", "127.0.0.1", "--port",
                                 str(port), "--workers", "1", "--backend-store-uri",
                                 backend_uri], stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server did not start: "
                                       f"{log.read_text()[-2000:]}") from None
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def linearly_related(model, m):
    """A copy of a dense VAE whose codes are m @ mu and whose decoder's first layer undoes m:
    the same images through a latent space exactly m times the model's."""
    import copy

    import torch

    planted = copy.deepcopy(model)
    t = torch.tensor(m, dtype=torch.float32)
    with torch.no_grad():
        planted.mu.weight.copy_(t @ model.mu.weight)
        planted.mu.bias.copy_(t @ model.mu.bias)
        planted.decoder[0].weight.copy_(model.decoder[0].weight @ torch.linalg.inv(t))
    return planted
