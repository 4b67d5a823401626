"""A local Ray instance that outlives one command (`latentatlas up` / `down`): a session of
commands in one folder pays Ray's start (5-10 s here) once. Its state lives in the folder,
not in the user's home: `.latentatlas/ray.json` (addresses, the head's process group, its
temp dir) and `.latentatlas/auth_token` (0600; token authentication stays on)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from latentatlas.environment import process_alive
from latentatlas.errors import UserError
from latentatlas.runtime import API_SERVER

STATE_DIR = ".latentatlas"
STATE_FILE = "ray.json"


@dataclass(frozen=True)
class Session:
    gcs: str  # host:port that `ray.init(address=...)` joins
    dashboard: str  # http://127.0.0.1:port (job API and dashboard, loopback only)
    pid: int  # `ray start --block`, leader of the head's process group
    token_path: str
    temp_dir: str
    cpus: int

    def alive(self) -> bool:
        return process_alive(self.pid)


def state_path(folder: Path | None = None) -> Path:
    return (folder or Path.cwd()) / STATE_DIR / STATE_FILE


def current(folder: Path | None = None) -> Session | None:
    """The folder's running session, or None (a dead one's state is removed)."""
    path = state_path(folder)
    if not path.exists():
        return None
    try:
        session = Session(**json.loads(path.read_text()))
    except (ValueError, TypeError) as e:
        raise UserError(f"{path}: not a LatentAtlas session file ({e}); remove it") from None
    if not session.alive():
        path.unlink(missing_ok=True)
        return None
    return session


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_token(path: Path) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return path


def start(cpus: int | None = None, gpus: int | None = None, wait_s: float = 90) -> Session:
    """Start the folder's head (`ray start --head --block` in its own process group) and
    wait until its dashboard answers; idempotent while one runs."""
    running = current()
    if running:
        return running
    state_dir = Path.cwd() / STATE_DIR
    state_dir.mkdir(exist_ok=True)
    token = write_token(state_dir / "auth_token")
    # Short: Ray's socket paths must fit 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="la-up-", dir="/tmp")
    gcs, dashboard = free_port(), free_port()
    cpus = cpus or os.cpu_count() or 1
    ray_bin = Path(sys.executable).parent / "ray"
    args = [str(ray_bin), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
            f"--port={gcs}", f"--num-cpus={cpus}", "--include-dashboard=true",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
            f"--ray-client-server-port={free_port()}", f"--temp-dir={temp_dir}",
            "--disable-usage-stats", *(["--num-gpus", str(gpus)] if gpus is not None else []),
            # Agents on free ports: another instance on this machine may hold the defaults.
            f"--metrics-export-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
           "RAY_USAGE_STATS_ENABLED": "0",
           API_SERVER: f"http://127.0.0.1:{dashboard}"}  # as runtime.own_api_server says
    env.pop("RAY_AUTH_TOKEN", None)
    with (state_dir / "ray-head.log").open("w") as log:
        head = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    session = Session(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}", head.pid,
                      str(token), temp_dir, cpus)
    deadline = time.monotonic() + wait_s
    while not answers(session):
        if head.poll() is not None or time.monotonic() > deadline:
            stop_processes(session)
            raise UserError(f"latentatlas up: Ray's head did not start (see "
                            f"{state_dir / 'ray-head.log'})")
        time.sleep(0.5)
    tmp = state_dir / f".{STATE_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(asdict(session), indent=2))
    tmp.rename(state_path())
    return session


def answers(session: Session) -> bool:
    req = urllib.request.Request(f"{session.dashboard}/api/version")
    req.add_header("Authorization", f"Bearer {Path(session.token_path).read_text().strip()}")
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def stop_processes(session: Session) -> None:
    """SIGTERM the head's process group (raylet, GCS, workers), SIGKILL what outlives a short
    grace: `ray start --block` itself stays up after its children stopped (measured: a
    15 s wait for it was the whole cost of `down`)."""
    for sig, grace_s in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(session.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace_s
        while session.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
    shutil.rmtree(session.temp_dir, ignore_errors=True)


def stop() -> Session | None:
    """Stop the folder's session; the stopped session, or None if none ran."""
    session = current()
    if session:
        stop_processes(session)
    state_path().unlink(missing_ok=True)
    return session
