"""Fault tolerance: a training worker killed (SIGKILL) mid-run; Ray Train restarts the worker
group from the last checkpoint (train.max_failures) and the run ends where an uninterrupted
run with the same seed ends."""

import os
import signal
import threading
import time

import mlflow
import pytest
from conftest import make_idx_dataset

from latentatlas.config import validate
from latentatlas.train.runner import train


def config(data, name):
    return validate({"name": name, "seed": 5,
                     "data": {"name": "mnist", "path": str(data), "limit": 2048},
                     "model": {"name": "dense_vae", "hidden": [64], "latent_dim": 4},
                     "kl": {"policy": "balanced"},
                     "train": {"epochs": 5, "batch_size": 16, "lr": 0.002, "num_workers": 2,
                               "cpus_per_worker": 0.5, "max_failures": 2}}, "test")


def train_workers(state: str = "ALIVE") -> list:
    from ray.util.state import list_actors

    return list_actors(filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", state)],
                       limit=1000)


def test_killed_worker_resumes_from_checkpoint_and_matches_uninterrupted_run(
        ray_session, mlflow_store, tmp_path):
    data = make_idx_dataset(tmp_path / "idx", n_train=2048, n_test=128)
    straight = train(config(data, "ft-straight"))

    dead_before = len(train_workers("DEAD"))
    outcome, errors = {}, []

    def interrupted():
        try:
            outcome["out"] = train(config(data, "ft-killed"))
        except BaseException as e:  # surfaced below
            errors.append(e)

    thread = threading.Thread(target=interrupted)
    thread.start()
    client = mlflow.MlflowClient()
    deadline, victim = time.time() + 180, None
    while time.time() < deadline and thread.is_alive() and victim is None:
        time.sleep(0.2)
        runs = mlflow.search_runs(filter_string="attributes.run_name = 'ft-killed'",
                                  output_format="list")
        # Two epochs reported: there is a checkpoint to come back to, and epochs left to run.
        if runs and len(client.get_metric_history(runs[0].info.run_id, "val/loss")) >= 2:
            workers = train_workers()
            if len(workers) == 2:
                victim = workers[1]
                os.kill(victim.pid, signal.SIGKILL)
    thread.join(timeout=300)
    assert victim is not None, "the run ended before a worker could be killed"
    assert not errors, errors
    out = outcome["out"]
    # The worker group really was replaced: the killed worker and its peer are dead.
    assert len(train_workers("DEAD")) >= dead_before + 2
    history = client.get_metric_history(out.run_id, "val/loss")
    assert max(m.step for m in history) == 5
    for key in ("train/loss", "val/loss", "val/mse"):
        assert out.metrics[key] == pytest.approx(straight.metrics[key], rel=0.01), key
