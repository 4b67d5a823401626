"""`latentatlas up` / `down`: a Ray that outlives one command, joined by the commands of its
folder, stopped with everything it started; its state stays in the folder."""

import json
import os
import stat
import subprocess
import sys

import pytest
from conftest import REPO

from latentatlas.environment import process_alive

pytestmark = pytest.mark.cluster  # starts its own Ray head


def verb(folder, *args, timeout=180):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for key in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(key, None)  # as in a user's fresh shell, not the test session's instance
    done = subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def test_up_is_joined_by_the_folders_commands_and_down_stops_it(tmp_path):
    started = verb(tmp_path, "up", "--cpus", "2")
    state = json.loads((tmp_path / ".latentatlas" / "ray.json").read_text())
    try:
        assert "started: Ray at 127.0.0.1:" in started and process_alive(state["pid"])
        token = tmp_path / ".latentatlas" / "auth_token"
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
        assert "already running" in verb(tmp_path, "up")  # idempotent

        out = verb(tmp_path, "train", str(REPO / "jobs/configs/fmnist_dense.yaml"),
                   "--set", "data.name=digits", "--set", "model.hidden=[32]",
                   "--set", "model.latent_dim=2", "--set", "train.epochs=1",
                   "--set", "name=in-session")
        assert f"using this folder's Ray from `latentatlas up` ({state['gcs']})" in out
        assert "MLflow run id:" in out
        assert process_alive(state["pid"])  # the command ended; its Ray did not
        # its raylet, whose environment every worker inherits, knows its own API server
        # (own_api_server); a worker's own /proc environ is overwritten by its new title
        group = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "-g",
                                str(os.getpgid(state["pid"]))],
                               capture_output=True, text=True).stdout.splitlines()
        raylets = [line.split()[0] for line in group if "/raylet/raylet " in line]
        assert len(raylets) == 1, group
        (raylet,) = raylets
        environ = open(f"/proc/{raylet}/environ", "rb").read().split(b"\0")
        assert f"RAY_API_SERVER_ADDRESS={state['dashboard']}".encode() in environ
    finally:
        stopped = verb(tmp_path, "down")
    assert f"stopped Ray at {state['gcs']}" in stopped
    assert not process_alive(state["pid"])
    assert not (tmp_path / ".latentatlas" / "ray.json").exists()
    assert not os.path.exists(state["temp_dir"])
    assert "no Ray of `latentatlas up`" in verb(tmp_path, "down")
