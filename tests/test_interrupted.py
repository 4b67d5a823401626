"""Interrupted work loses nothing: a SIGKILLed process leaves no run RUNNING forever and no
half-written encoding behind."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import mlflow
import pytest
import torch
from conftest import REPO, make_idx_dataset, mlflow_state_restored, use_store

from latentatlas.encode import open_encoding
from latentatlas.encode.store import remove_dead_temps, temp_sibling
from latentatlas.tracking import OWNER_TAG, STALE_TAG, Recorder

HOLD_A_RUN = """
import os, sys, time
from latentatlas.tracking import Recorder
recorder = Recorder(sys.argv[1], "interrupted")
with recorder.run("parent", "relocate-all") as run_id:
    print(run_id, os.getpid(), flush=True)
    time.sleep(600)
"""

WRITE_A_TEMP = """
import os, sys, time
from pathlib import Path
from latentatlas.encode.store import temp_sibling
tmp = temp_sibling(Path(sys.argv[1]))
tmp.mkdir()
(tmp / "part.parquet").write_text("half")
print(os.getpid(), flush=True)
time.sleep(600)
"""


def killed_midway(code: str, *args) -> str:
    """Start `code` in its own process, read the first line it prints, SIGKILL it."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                            start_new_session=True)
    line = proc.stdout.readline().strip()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return line


def test_a_killed_processs_runs_end_failed_at_the_next_command(workdir):
    uri = f"sqlite:///{workdir}/mlflow.db"
    recorder = Recorder(uri, "interrupted")
    with recorder.run("alive", "stats") as mine:  # this process's own run stays RUNNING
        run_id, pid = killed_midway(HOLD_A_RUN, uri).split()
        assert recorder.client.get_run(run_id).info.status == "RUNNING"  # nothing ended it
        Recorder(uri, "interrupted")  # the next command, whatever it is
        killed = recorder.client.get_run(run_id)
        assert killed.info.status == "FAILED" and killed.data.tags[STALE_TAG]
        assert killed.data.tags[OWNER_TAG] == f"{socket.gethostname()}:{pid}"
        assert recorder.client.get_run(mine).info.status == "RUNNING"
    assert recorder.client.get_run(mine).info.status == "FINISHED"


def test_what_a_killed_encode_was_writing_is_removed_and_never_visible(tmp_path):
    out = tmp_path / "enc"
    pid = killed_midway(WRITE_A_TEMP, str(out))
    leftovers = list(tmp_path.glob(".enc.tmp-*"))
    assert [p.name.split("-")[1] for p in leftovers] == [pid]  # hidden, and names its writer
    assert not out.exists()
    mine = temp_sibling(out)  # the rerun's own temp folder; the dead writer's is gone
    mine.mkdir()
    assert list(tmp_path.glob(".enc.tmp-*")) == [mine]
    assert remove_dead_temps(out) == []  # a live writer's folder is left alone


# The real commands, killed midway and rerun as a user would.

@pytest.fixture(scope="module")
def model_store(tmp_path_factory, ray_session):
    """A small dense VAE logged to a sqlite store, a dataset for it, and two encodings.
    MLflow's tracking URI and the store's two variables are restored afterwards for
    the modules that run after this one."""
    with mlflow_state_restored():
        yield made_store(tmp_path_factory.mktemp("killed"))


def made_store(root):
    from latentatlas import model_store
    from latentatlas.config import DenseVAEConfig
    from latentatlas.encode.pipeline import encode
    from latentatlas.models import build_model

    uri = use_store(f"sqlite:///{root}/mlflow.db", "killed")
    data = make_idx_dataset(root / "idx", n_train=40, n_test=1500)
    cfg = DenseVAEConfig(hidden=[16], latent_dim=4)
    uris = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        with mlflow.start_run(run_name=f"model-{seed}") as run:
            model_store.log_model(build_model(cfg, (1, 28, 28)), cfg.model_dump(), (1, 28, 28))
        uris.append(f"runs:/{run.info.run_id}/model")
    encodings = [str(encode(u, "mnist", "test", root / f"enc{i}", data_path=str(data)).path)
                 for i, u in enumerate(uris)]
    return {"root": root, "uri": uri, "data": data, "models": uris, "encodings": encodings}


def command(verb: str, *args: str, store) -> list[str]:
    return [sys.executable, "-m", f"jobs.{verb}", *args, "--tracking-uri", store["uri"],
            "--experiment", "killed"]


def start(cmd, store) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=store["root"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def sigkill(proc: subprocess.Popen) -> None:
    """SIGKILL the command's process, as `kill -9` does; then whatever of its local Ray
    instance the reaper has not ended yet."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(1)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def rerun(cmd, store) -> str:
    done = subprocess.run(cmd, cwd=store["root"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    return output


# Ray's own lines, which look like failures to a user (they go to logs/ray-*.log)
RAY_NOISE = re.compile(r"\(raylet\)|core_worker\.cc|PYTHON worker processes|Traceback|"
                       r"RayDeprecationWarning|Progress bars disabled")


@pytest.mark.slow
def test_a_killed_encode_leaves_nothing_and_its_rerun_completes(model_store):
    root, out = model_store["root"], model_store["root"] / "killed-enc"
    # 20000 rows in batches of 16 through one actor: 1250 batches between the temporary
    # folder's creation and the publishing rename, a window the 20 ms poll below cannot
    # miss on any machine.
    rows = 20000
    data = make_idx_dataset(root / "idx-large", n_train=16, n_test=rows, seed=1)

    def cmd(*how):
        return command("encode", "--model", model_store["models"][0], "--data", "mnist:test",
                       "--data-path", str(data), "--out", str(out), *how, store=model_store)

    proc = start(cmd("--batch-size", "16", "--actors", "1"), model_store)  # Ray Data
    deadline = time.monotonic() + 120
    while not list(root.glob(".killed-enc.tmp-*")):  # Ray Data has begun writing
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
        time.sleep(0.02)
    sigkill(proc)
    assert not out.exists()  # never visible half-written
    # the same encode again, as a user reruns it: its own choice of path (20,000 rows: in
    # its process, no Ray to start) and batch size; the dead writer's folder goes either way
    output = rerun(cmd(), model_store)
    assert open_encoding(out).meta.rows == rows
    assert list(root.glob(".killed-enc.tmp-*")) == []  # the killed writer's folder is gone
    assert not RAY_NOISE.search(output), output


@pytest.mark.slow
def test_a_killed_relocate_all_ends_failed_and_its_rerun_finishes(model_store):
    cmd = command("relocate", "--all", *model_store["encodings"], "--fit", "all",
                  store=model_store)
    proc = start(cmd, model_store)
    for line in proc.stdout:  # the parent run exists once the pairs are announced
        if "ordered pairs" in line:
            killed_parent = re.search(r"MLflow run ([0-9a-f]{32})", line).group(1)
            break
    else:
        pytest.fail(f"relocate --all ended before its pairs: exit {proc.wait()}")
    sigkill(proc)
    client = mlflow.MlflowClient(model_store["uri"])
    assert client.get_run(killed_parent).info.status == "RUNNING"  # nothing ended it
    output = rerun(cmd, model_store)
    assert "pair 2/2" in output and not RAY_NOISE.search(output), output
    killed = client.get_run(killed_parent)
    assert killed.info.status == "FAILED" and killed.data.tags[STALE_TAG]
    experiment = client.get_experiment_by_name("killed").experiment_id
    parents = client.search_runs([experiment], "tags.`latentatlas.kind` = 'relocate-all'")
    assert sorted(r.info.status for r in parents) == ["FAILED", "FINISHED"]
    assert not client.search_runs([experiment], "attributes.status = 'RUNNING'")
