"""A study whose driver is killed (issue #44, part 2): `latentatlas run` is SIGKILLed once
its first step's output is recorded (at a step boundary: the next step may have begun),
resumed with `--resume`, killed
again inside its second step (a training midway), and resumed again. Finished steps are not
rerun, the half-finished one reruns, the dead runs end FAILED, and the claims and numbers
are those of an uninterrupted run with the same seeds. The killed drivers are real
processes connected to this session's Ray, as a laptop's driver is to a cluster."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import mlflow
import pytest
from conftest import REPO, make_idx_dataset

from jobs.run import main as run_job

STUDY = """
steps:
  first:
    kind: train
    config: fmnist_dense.yaml
    set: {{seed: 0, name: kill-first, train.epochs: 1, train.until_settled: false,
          model.latent_dim: 4, train.cpus_per_worker: 2, data.path: "{data}"}}
  second:
    kind: train
    config: fmnist_dense.yaml
    set: {{seed: 1, name: kill-second, train.epochs: 12, train.until_settled: false,
          model.latent_dim: 4, train.cpus_per_worker: 2, data.path: "{data}"}}
  encode-second:
    kind: encode
    inputs: {{model: second}}
    set: {{split: test}}
  stats-second:
    kind: stats
    inputs: {{encoding: encode-second}}
"""


# The second training's 12 epochs leave the kill a window of 11 after its first is logged,
# however fast the machine; each is a few steps of 256 images.


class Driver:
    """`latentatlas run` in its own process; its output lines as they come."""

    def __init__(self, args, cwd):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobs.run", *args], cwd=cwd, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        self.lines = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout))
        self.reader.start()

    def parent(self, deadline: float) -> str:
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if "; parent run " in line:
                    return line.rsplit("parent run ", 1)[1].split()[0]
            assert self.proc.poll() is None, "".join(self.lines)
            time.sleep(0.05)
        pytest.fail("the driver announced no parent run")

    def kill_when(self, ready, deadline: float) -> None:
        """SIGKILL the driver once `ready()` holds, as `kill -9` does."""
        while not ready():
            assert self.proc.poll() is None and time.monotonic() < deadline, \
                "".join(self.lines)[-3000:]
            time.sleep(0.05)
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.reader.join(timeout=30)


def steps_of(client, run_id) -> dict:
    path = client.download_artifacts(run_id, "steps.json")
    with open(path) as f:
        return json.load(f)


def recorded(client, run_id, step) -> bool:
    try:
        return step in steps_of(client, run_id)
    except Exception:  # not written yet (or being written): not yet
        return False


def claims_of(steps: dict) -> list:
    return sorted((c["key"], c["subject"], c["verdict"], c["rule_outcome"])
                  for out in steps.values() for c in out["claims"])


@pytest.mark.slow
def test_a_killed_driver_resumes_to_the_verdicts_of_an_uninterrupted_run(
        ray_session, workdir, capsys):
    data = make_idx_dataset(workdir / "idx", n_train=256, n_test=64)
    study = workdir / "study.yaml"
    study.write_text(STUDY.format(data=data))
    uri = f"sqlite:///{workdir}/mlflow.db"
    common = ["--config", str(study), "--dataset", "mnist", "--data-path", str(data),
              "--tracking-uri", uri, "--experiment", "killed",
              "--ray-address", ray_session.get_runtime_context().gcs_address]
    client = mlflow.MlflowClient(uri)
    deadline = time.monotonic() + 300

    # killed at a step boundary: once the first step's output is recorded
    driver = Driver(common, workdir)
    first_parent = driver.parent(deadline)
    driver.kill_when(lambda: recorded(client, first_parent, "first"), deadline)
    kept_first = steps_of(client, first_parent)["first"]

    # resumed, and killed inside the second step: its training midway (an epoch logged)
    driver = Driver([*common, "--resume", first_parent], workdir)
    second_parent = driver.parent(deadline)

    def training_midway():
        runs = client.search_runs([client.get_experiment_by_name("killed").experiment_id],
                                  f"tags.mlflow.parentRunId = '{second_parent}' and "
                                  "attributes.run_name = 'kill-second'")
        return bool(runs) and "val/mse" in runs[0].data.metrics
    driver.kill_when(training_midway, deadline)
    assert "resuming " in "".join(driver.lines) and "rerunning second, encode-second, " \
        "stats-second; 1 steps keep its outputs" in "".join(driver.lines)
    (dead_training,) = client.search_runs(
        [client.get_experiment_by_name("killed").experiment_id],
        f"tags.mlflow.parentRunId = '{second_parent}' and attributes.run_name = 'kill-second'")
    assert steps_of(client, second_parent)["first"] == kept_first  # not rerun
    assert "second" not in steps_of(client, second_parent)

    # resumed again, to the end, in this process
    capsys.readouterr()
    assert run_job([*common, "--resume", second_parent]) == 0
    out = capsys.readouterr().out
    final_parent = out.split("MLflow run id: ")[1].split()[0]
    final = steps_of(client, final_parent)
    assert list(final) == ["first", "second", "encode-second", "stats-second"]
    assert final["first"] == kept_first
    assert final["second"]["run_id"] != dead_training.info.run_id  # rerun from the start
    # the killed drivers' runs end FAILED once a run of the experiment finds them dead
    for run_id in (first_parent, second_parent, dead_training.info.run_id):
        run = client.get_run(run_id)
        assert run.info.status == "FAILED" and run.data.tags.get("latentatlas.stale"), run_id

    # an uninterrupted run with the same seeds: the same claims, verdicts and numbers
    assert run_job([*common, "--experiment", "straight"]) == 0
    straight_parent = capsys.readouterr().out.split("MLflow run id: ")[1].split()[0]
    straight = steps_of(client, straight_parent)
    assert claims_of(final) == claims_of(straight) and claims_of(final)
    resumed_numbers = client.get_run(final["stats-second"]["run_id"]).data.metrics
    straight_numbers = client.get_run(straight["stats-second"]["run_id"]).data.metrics
    assert resumed_numbers.keys() == straight_numbers.keys()
    for key, value in straight_numbers.items():
        assert resumed_numbers[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
