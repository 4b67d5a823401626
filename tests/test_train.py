"""Training through Ray Train on the shared local Ray, recorded in a real sqlite MLflow."""

import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from conftest import images_over_steps, make_idx_dataset, train_workers

from latentatlas import model_store
from latentatlas.config import validate
from latentatlas.errors import UserError
from latentatlas.train.common import epoch_batches
from latentatlas.train.loop import load_checkpoint
from latentatlas.train.runner import train


def tiny(folder, **over):
    raw = {"name": "tiny", "seed": 3,
           "data": {"name": "mnist", "path": str(folder), "limit": 64},
           "model": {"name": "dense_vae", "hidden": [32], "latent_dim": 4},
           "kl": {"policy": "balanced"},
           "train": {"epochs": 2, "batch_size": 16, "lr": 0.003}}
    for key, value in over.items():
        section, field = key.split("__")
        raw[section][field] = value
    return validate(raw, "test")


def test_epoch_batches_partition_the_data_equally_across_ranks():
    shards = [epoch_batches(103, 4, 0, r, 3, 8) for r in range(3)]
    assert {len(s) for s in shards} == {4}  # 34 per rank -> 4 full batches each
    seen = np.concatenate([np.concatenate(s) for s in shards])
    assert len(seen) == len(set(seen.tolist())) == 96
    again = epoch_batches(103, 4, 0, 1, 3, 8)
    assert all(np.array_equal(a, b) for a, b in zip(again, shards[1], strict=True))
    assert not np.array_equal(np.concatenate(epoch_batches(103, 5, 0, 1, 3, 8)),
                              np.concatenate(shards[1]))


def test_train_logs_metrics_model_and_pictures(ray_session, mlflow_store, idx_folder):
    out = train(tiny(idx_folder))
    run = mlflow.get_run(out.run_id)
    assert run.info.status == "FINISHED"
    # the data it read, as MLflow dataset inputs (the UI's Dataset column): name, role, the
    # digest of the images and labels as read, the file they came from
    import hashlib

    from latentatlas.data import load_split

    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"mnist:train", "mnist:test"}
    for name, context in (("mnist:train", "training"), ("mnist:test", "validation")):
        split = load_split("mnist", name.split(":")[1], idx_folder, 64)
        digest = hashlib.sha256(split.images.tobytes() + split.labels.tobytes()).hexdigest()
        got = inputs[name]
        assert got.dataset.digest == digest[:16] and got.dataset.source_type == "local"
        assert [(t.key, t.value) for t in got.tags] == [("mlflow.data.context", context)]
        assert json.loads(got.dataset.source)["uri"] == split.source
        assert split.source.endswith("-images-idx3-ubyte.gz")
    assert run.data.params["model.hidden"] == "[32]" and run.data.params["kl.policy"] == "balanced"
    client = mlflow.MlflowClient()
    for key in ("train/loss", "train/mse", "train/kl", "train/gamma", "val/loss", "val/mse",
                "val/kl"):
        history = client.get_metric_history(out.run_id, key)
        assert [m.step for m in history] == [1, 2], key
        assert all(math.isfinite(m.value) for m in history)
    # gamma follows the running-MSE rule: sqrt(mse) <= 1 and shrinking as the model learns
    gammas = [m.value for m in client.get_metric_history(out.run_id, "train/gamma")]
    assert 0 < gammas[1] < gammas[0] < 1
    artifacts = {a.path for a in client.list_artifacts(out.run_id)}
    assert {"reconstructions.png", "samples.png", "config.yaml"} <= artifacts
    # its reconstructions and samples over epochs; the machine's use beside each epoch, and
    # the Ray node it ran on
    assert images_over_steps(client, out.run_id) == {"reconstructions": [1, 2],
                                                     "samples": [1, 2]}
    for key in ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes",
                "system/process_memory_rss_megabytes"):
        history = client.get_metric_history(out.run_id, key)
        assert [m.step for m in history] == [1, 2] and all(m.value >= 0 for m in history), key
    assert client.get_metric_history(out.run_id, "system/process_memory_rss_megabytes")[
        0].value > 10  # the training process holds torch at least
    assert len(run.data.tags["latentatlas.node_id"]) == 56  # a Ray node id (hex)
    # The logged model is the final checkpoint's weights, rebuilt by name, weights_only.
    model, spec = model_store.load_vae(out.model_uri)
    state = load_checkpoint(out.checkpoint_path)["model"]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key])
    assert spec["input_shape"] == [1, 28, 28] and spec["model"]["latent_dim"] == 4
    assert out.metrics["val/mse"] == pytest.approx(
        client.get_metric_history(out.run_id, "val/mse")[-1].value)


@pytest.mark.slow
def test_a_single_worker_training_skips_ray_train_and_ends_where_ray_train_ends(
        ray_session, mlflow_store, idx_folder):
    """One worker, no restarts: the loop runs as one Ray task, without Ray Train's controller
    or worker group. Same loop and seeds, so the same losses and weights as through Ray
    Train (max_failures 1 keeps that path); checkpoints named and kept as Ray Train's."""
    from latentatlas.train.runner import with_worker_cpus

    alone_cfg = tiny(idx_folder, train__epochs=3)
    through_cfg = tiny(idx_folder, train__epochs=3, train__max_failures=1)
    assert alone_cfg.train.single_worker and not through_cfg.train.single_worker
    largest = max(n["Resources"].get("CPU", 0) for n in ray_session.nodes() if n["Alive"])
    assert with_worker_cpus(alone_cfg).train.cpus_per_worker == max(1, largest)  # a node
    workers = len(train_workers("ALIVE")) + len(train_workers("DEAD"))
    alone = train(alone_cfg)
    assert len(train_workers("ALIVE")) + len(train_workers("DEAD")) == workers
    through = train(through_cfg)
    assert len(train_workers("ALIVE")) + len(train_workers("DEAD")) > workers
    assert alone.metrics.keys() == through.metrics.keys()
    for key, value in alone.metrics.items():
        assert value == pytest.approx(through.metrics[key], rel=1e-6), key
    mine, theirs = (load_checkpoint(out.checkpoint_path) for out in (alone, through))
    assert mine["epoch"] == theirs["epoch"] == 2
    for key, value in mine["model"].items():
        torch.testing.assert_close(value, theirs["model"][key])
    kept = sorted(Path(alone.checkpoint_path).parent.glob("checkpoint_*"))
    assert len(kept) == 2 and kept[-1] == Path(alone.checkpoint_path)  # checkpoints_to_keep
    assert load_checkpoint(kept[0])["epoch"] == 1
    # Ray Train restores only from its own snapshot: continuing this run there would
    # silently start again, so it is refused.
    with pytest.raises(UserError, match="written by a one-worker training without restarts"):
        train(tiny(idx_folder, train__epochs=4, train__max_failures=1),
              resume_run_id=alone.run_id)


def test_a_one_worker_training_whose_worker_dies_is_one_line_and_its_run_failed(
        ray_session, mlflow_store, tmp_path):
    """One worker, no restarts (the default): its process SIGKILLed mid-run (the OOM killer,
    a kill; a lost node ends the task the same way) ends the training in one line naming
    the run, the worker's pid and node and what continues it; the run ends FAILED."""
    from ray.util.state import list_tasks

    data = make_idx_dataset(tmp_path / "idx", n_train=2048, n_test=64)
    cfg = tiny(data, train__epochs=30, data__limit=2048)
    raised: list[BaseException] = []

    def fit():
        try:
            train(cfg)
        except BaseException as e:  # asserted below
            raised.append(e)

    fitting = threading.Thread(target=fit)
    fitting.start()
    victim, deadline = None, time.time() + 120
    while victim is None and fitting.is_alive() and time.time() < deadline:
        time.sleep(0.1)
        running = list_tasks(address=ray_session.get_runtime_context().gcs_address, filters=[
            ("func_or_class_name", "=", "run_single_worker"), ("state", "=", "RUNNING")])
        if running and running[0].worker_pid:
            victim = running[0].worker_pid
            os.kill(victim, signal.SIGKILL)
    fitting.join(timeout=120)
    assert victim is not None, "the training ended before its worker could be killed"
    (error,) = raised
    assert isinstance(error, UserError), repr(error)
    client = mlflow.MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("test").experiment_id],
                                "attributes.run_name = 'tiny'")
    assert run.info.status == "FAILED"
    node = ray_session.util.get_node_ip_address()
    assert str(error) == (
        f"training run 'tiny-{run.info.run_id[:8]}': its worker (pid {victim} on node {node}) "
        "died (killed, or out of memory); rerun it (a study's step: latentatlas run --resume "
        "RUN_ID), or set train.max_failures: 1 for Ray Train to continue it from its last "
        "checkpoint on the nodes that remain")


def two_workers(data, name: str, epochs: int = 5):
    """Two workers, max_failures 2, five epochs of 64 steps each: a worker killed once the
    first checkpoint is registered still has four epochs to be restarted into, on any
    machine."""
    return validate({"name": name, "seed": 5,
                     "data": {"name": "mnist", "path": str(data), "limit": 2048},
                     "model": {"name": "dense_vae", "hidden": [64], "latent_dim": 4},
                     "kl": {"policy": "balanced"},
                     "train": {"epochs": epochs, "batch_size": 16, "lr": 0.002,
                               "num_workers": 2, "cpus_per_worker": 0.5,
                               "max_failures": 2}}, "test")


@pytest.mark.slow
def test_resumed_and_killed_runs_end_where_a_straight_run_ends(ray_session, mlflow_store,
                                                                tmp_path):
    """One straight run of 5 epochs, and two that are interrupted: one stopped after epoch 1
    and continued with --resume, one whose worker is killed (SIGKILL) once Ray Train has
    registered its first checkpoint, and restarted by Ray Train from it (train.max_failures).
    Both end where the straight run ends (resume is exact; the fault-tolerance bar is 1%).
    Two fits at a time (two workers of half a CPU each): Ray Train's start-up, not the
    epochs, is what these runs cost."""
    from concurrent.futures import ThreadPoolExecutor

    data = make_idx_dataset(tmp_path / "idx", n_train=2048, n_test=128)
    with ThreadPoolExecutor(2) as pool:  # one CPU each: the two fits run side by side
        straight_future = pool.submit(train, two_workers(data, "straight"))
        first = train(two_workers(data, "resumed", epochs=1))
        straight = straight_future.result()
    client = mlflow.MlflowClient()

    # The rest of the resumed run and the run to be killed, side by side too: the kill takes
    # a worker of the second, told apart from the first's by the workers alive before it.
    outcome, errors = {}, []

    def fit(key, cfg, **kwargs):
        try:
            outcome[key] = train(cfg, **kwargs)
        except BaseException as e:  # surfaced below
            errors.append(e)

    def pids(state):
        return {w.pid for w in train_workers(state)}

    known = pids("DEAD") | pids("ALIVE")  # the first two runs' (whatever state shows yet)
    resuming = threading.Thread(target=fit, args=("resumed", two_workers(data, "resumed")),
                                kwargs={"resume_run_id": first.run_id})
    resuming.start()
    deadline = time.time() + 180
    while resuming.is_alive() and len(pids("ALIVE") - known) < 2 and time.time() < deadline:
        time.sleep(0.05)
    resumed_workers = (pids("ALIVE") | pids("DEAD")) - known
    killing = threading.Thread(target=fit, args=("killed", two_workers(data, "killed")))
    killing.start()
    victim = None
    while time.time() < deadline and killing.is_alive() and victim is None:
        time.sleep(0.05)
        # Ray Train writes its snapshot when it registers a checkpoint: from then on there
        # is a checkpoint to come back to, and four epochs left to run.
        if any(Path("ray_results").glob("killed-*/checkpoint_manager_snapshot.json")):
            workers = [w for w in train_workers() if w.pid not in resumed_workers | known]
            if len(workers) == 2:
                victim = workers[1]
                os.kill(victim.pid, signal.SIGKILL)
    resuming.join(timeout=300)
    killing.join(timeout=300)
    assert victim is not None, "the run ended before a worker could be killed"
    assert not errors, errors

    resumed = outcome["resumed"]
    assert resumed.run_id == first.run_id
    steps = [m.step for m in client.get_metric_history(first.run_id, "val/mse")]
    assert steps == list(range(1, 6))
    assert load_checkpoint(resumed.checkpoint_path)["epoch"] == 4
    for key in ("train/loss", "val/mse", "train/gamma"):
        assert resumed.metrics[key] == pytest.approx(straight.metrics[key], rel=1e-6), key

    killed = outcome["killed"]
    # the killed run's group (the victim, and the survivor Ray Train stops) and the group
    # that replaced it, ended with the run: four workers, where one group would leave two
    dead = pids("DEAD") - known - resumed_workers
    assert len(dead) >= 4, dead
    assert max(m.step for m in client.get_metric_history(killed.run_id, "val/loss")) == 5
    for key in ("train/loss", "val/loss", "val/mse"):
        assert killed.metrics[key] == pytest.approx(straight.metrics[key], rel=0.01), key


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_good_checkpoint(
        ray_session, mlflow_store, idx_folder):
    good = train(tiny(idx_folder, train__epochs=1))
    with pytest.raises(UserError, match=r"non-finite loss in epoch 2.*last good checkpoint: "
                                        + good.checkpoint_path):
        # An absurd learning rate for the second epoch drives the weights to inf/NaN.
        train(tiny(idx_folder, train__epochs=2, train__lr=1e30), resume_run_id=good.run_id)
    assert mlflow.get_run(good.run_id).info.status == "FAILED"


def test_a_training_until_settled_stops_at_the_claims_rule_and_no_later(
        ray_session, mlflow_store, idx_folder):
    """`train.until_settled`: the training stops after the first epoch whose val/mse history
    passes the rule the claims judge it by (latentatlas.settling), else at train.epochs. At
    a learning rate of 1e-7 val/mse cannot move: settled after exactly 3 epochs of 12; at
    the ordinary rate, wherever its logged history first passes the rule."""
    from latentatlas.settling import SETTLED_EPOCHS, has_settled

    client = mlflow.MlflowClient()
    still = train(tiny(idx_folder, train__epochs=12, train__lr=1e-7, train__until_settled=True))
    logged = [m.value for m in sorted(client.get_metric_history(still.run_id, "val/mse"),
                                      key=lambda m: m.step)]
    assert len(logged) == SETTLED_EPOCHS and has_settled(logged)
    moving = train(tiny(idx_folder, train__epochs=6, train__until_settled=True))
    logged = [m.value for m in sorted(client.get_metric_history(moving.run_id, "val/mse"),
                                      key=lambda m: m.step)]
    first = next((n for n in range(1, 7) if has_settled(logged[:n])), 6)
    assert len(logged) == first
