"""Ray Tune sweeps: the spec and its arithmetic, then real sweeps on the shared local Ray."""

import json
import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest
import yaml
from conftest import REPO, make_idx_dataset, train_workers

from jobs.sweep import measure_trial
from latentatlas.errors import UserError
from latentatlas.tune.spec import (
    Domain,
    best_row,
    curves,
    driver_resources,
    fitting_trials,
    load_sweep,
    trial_config,
    trial_resources,
    trial_status,
)
from latentatlas.tune.tuner import child_runs, resume_sweep, sample_quality_rows, start_sweep

BASE = {"name": "tiny", "seed": 1,
        "data": {"name": "mnist", "limit": 64},
        "model": {"name": "dense_vae", "hidden": [16], "latent_dim": 4},
        "kl": {"policy": "balanced"},
        "train": {"epochs": 2, "batch_size": 16, "lr": 0.003, "cpus_per_worker": 0.5}}


def write_sweep(folder, data_path, **over):
    spec = {"name": "s", "base": {**BASE, "data": {**BASE["data"], "path": str(data_path)}},
            "space": {"kl.policy": {"grid": ["elbo", "balanced"]},
                      "model.latent_dim": {"grid": [2, 4]}},
            "max_concurrent": 2, "metric": "val/mse", "stats": {"enabled": False}, **over}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


# ---- the spec ----------------------------------------------------------------------------

def test_domain_needs_exactly_one_kind_and_sane_ranges():
    assert Domain(grid=[1, 2]).candidates() == [1, 2]
    assert Domain(randint=(2, 5)).candidates() == [2, 4]  # high is exclusive
    assert Domain(loguniform=(1e-4, 1e-2)).candidates() == [1e-4, 1e-2]
    for bad in ({}, {"grid": [1], "choice": [2]}, {"uniform": (2, 1)},
                {"loguniform": (0, 1)}, {"grid": []}):
        with pytest.raises(ValueError):
            Domain(**bad)


def test_trial_config_sets_shallow_keys_first():
    swap = {"name": "conv_vae", "channels": [4], "hidden": 8}
    cfg = trial_config(BASE, {"model.latent_dim": 3, "model": swap, "kl.policy": "elbo"})
    assert (cfg.model.name, cfg.model.latent_dim, cfg.model.channels) == ("conv_vae", 3, [4])
    assert cfg.kl.policy == "elbo" and BASE["model"]["latent_dim"] == 4  # base untouched


def test_load_sweep_reads_base_file_and_applies_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    path = write_sweep(tmp_path, tmp_path)
    raw = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**raw, "base": "base.yaml"}))
    sweep = load_sweep(path, ["base.train.epochs=5", "num_samples=3"])
    assert sweep.base["train"]["epochs"] == 5 and sweep.num_samples == 3
    assert sweep.base["model"]["hidden"] == [16]


@pytest.mark.parametrize("change, message", [
    ({"space": {"model.latent_dim": {"grid": [4, 0]}}},
     "space.model.latent_dim=0: model.latent_dim: Input should be greater than 0"),
    ({"space": {"model.latnt_dim": {"grid": [4]}}}, "model.latnt_dim: Extra inputs"),
    ({"space": {"train.num_workers": {"grid": [1, 2]}}}, "space.train.num_workers: cannot be"),
    ({"space": {"train.max_failures": {"grid": [0, 1]}}}, "space.train.max_failures: cannot"),
    ({"scheduler": "asha", "asha": {"grace_period": 2}}, "asha.grace_period (2) must be below"),
    ({"space": {"kl.policy": {"grid": ["elbo"], "choice": ["beta"]}}}, "space.kl.policy: give"),
    ({"metric": "val/acc"}, "metric: Input should be"),
    ({"metric": "gan/g_loss"}, "metric: a vae does not log 'gan/g_loss'; it logs val/loss"),
])
def test_bad_sweeps_fail_before_any_trial(tmp_path, change, message):
    path = write_sweep(tmp_path, tmp_path, **change)
    with pytest.raises(UserError) as e:
        load_sweep(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value), str(e.value)


def test_resources_per_trial_and_what_fits():
    # Through Ray Train: the trial's process drives, the workers are reserved beside it.
    for through in ({"train.num_workers": 2}, {"train.max_failures": 1}):
        cfg = trial_config(BASE, through)
        workers = cfg.train.num_workers
        assert driver_resources(cfg, 0.1) == {"CPU": 0.1}
        assert trial_resources(cfg, 0.1) == {"CPU": pytest.approx(0.1 + 0.5 * workers),
                                             "GPU": 0.0}
    # One worker without restarts trains in the trial's process, which holds its resources.
    alone = trial_config(BASE, {})
    assert driver_resources(alone, 0.1) == trial_resources(alone, 0.1) == {"CPU": 0.5}
    on_gpu = trial_config(BASE, {"train.use_gpu": True})
    assert driver_resources(on_gpu, 0.1) == {"CPU": 0.5, "GPU": 1.0}
    assert fitting_trials({"CPU": 0.6, "GPU": 0.0}, {"CPU": 2.0}) == 3
    assert fitting_trials({"CPU": 1.1, "GPU": 2.0}, {"CPU": 16.0, "GPU": 4.0}) == 2
    assert fitting_trials({"CPU": 4.0, "GPU": 0.0}, {"CPU": 2.0}) == 1  # at least one


def test_best_row_status_and_curves():
    rows = [{"trial": "a", "status": "finished", "val/mse": 0.2, "kl.policy": "elbo",
             "model.latent_dim": 8, "seed": 0},
            {"trial": "b", "status": "finished", "val/mse": float("nan"), "kl.policy": "elbo",
             "model.latent_dim": 16, "seed": 0},
            {"trial": "c", "status": "stopped_early", "val/mse": 0.01, "kl.policy": "beta",
             "model.latent_dim": 8, "seed": 0},
            {"trial": "d", "status": "finished", "val/mse": 0.4, "kl.policy": "elbo",
             "model.latent_dim": 8, "seed": 1}]
    assert best_row(rows, "val/mse", "min")["trial"] == "a"
    assert best_row(rows, "val/mse", "max")["trial"] == "d"
    assert best_row(rows[1:3], "val/mse", "min") is None
    assert curves(rows, "model.latent_dim", "val/mse", ["kl.policy"]) == {
        "policy=beta": ([8], [0.01]), "policy=elbo": ([8], [pytest.approx(0.3)])}
    assert trial_status("FINISHED", False) == "finished"
    assert trial_status("RUNNING", False) == "stopped_early"
    # a run a stopped driver ended FAILED while unwinding: Tune saw no error
    assert trial_status("FAILED", False) == "stopped_early"
    assert trial_status("FINISHED", True) == trial_status(None, False) == "failed"


def test_fid_table_has_a_row_per_trial_extractor_and_sampler():
    rows = [{"trial": "a", "kl.policy": "elbo", "val/mse": 0.2, "fid/classifier-x-v2": 30.0,
             "kid/classifier-x-v2": 0.5, "fid/classifier-x-v2/gmm": 20.0,
             "kid/classifier-x-v2/gmm": 0.25, "kid_std/classifier-x-v2": 0.1},
            {"trial": "b", "kl.policy": "balanced", "val/mse": 0.1, "fid/classifier-x-v2": None}]
    assert sample_quality_rows(rows, ["kl.policy"]) == [
        {"trial": "a", "kl.policy": "elbo", "extractor": "classifier-x-v2", "sampler": "prior",
         "fid": 30.0, "kid": 0.5},
        {"trial": "a", "kl.policy": "elbo", "extractor": "classifier-x-v2", "sampler": "gmm",
         "fid": 20.0, "kid": 0.25}]


def test_a_trial_resumed_after_its_last_epoch_reports_that_epochs_metrics(tmp_path,
                                                                          idx_folder):
    """The one-worker loop as a trial runs it (in this process, every epoch forwarded): a
    trial killed after its last checkpoint but before its run ended trains nothing when
    resumed, and still returns the last epoch's metrics, which the driver hands Tune (whose
    metric check would otherwise fail the trial)."""
    from latentatlas.train.families import FAMILIES
    from latentatlas.train.loop import run_single_worker

    cfg = trial_config({**BASE, "data": {**BASE["data"], "path": str(idx_folder)}}, {})
    cfg, inputs = FAMILIES[cfg.family].inputs(cfg)
    config = {"experiment": cfg.model_dump(), "mlflow": None, "data": inputs.data}
    forwarded = []
    first = run_single_worker(config, str(tmp_path), 2, False, forwarded.append)
    assert [m["epoch"] for m in forwarded] == [1, 2] and first["metrics"] == forwarded[-1]
    again = run_single_worker(config, str(tmp_path), 2, False, forwarded.append)
    assert len(forwarded) == 2 and again["return_value"]["history"] == []  # nothing trained
    assert again["metrics"] == first["metrics"] and again["checkpoint"] == first["checkpoint"]


# ---- real sweeps -------------------------------------------------------------------------

def train_runs(parent_run_id):
    client = mlflow.MlflowClient()
    exp = mlflow.get_experiment_by_name("test").experiment_id
    return child_runs(client, exp, parent_run_id, "train")


@pytest.mark.slow
def test_interrupted_sweep_resumes_without_repeating_finished_trials(
        ray_session, mlflow_store, workdir, idx_folder):
    """A sweep of 2 policies x 2 latent sizes, its driver killed (SIGKILL) once two trials
    have finished, then resumed: four child runs under one parent, each combination once,
    the finished runs untouched, every epoch logged once."""
    path = write_sweep(workdir, idx_folder, name="killed")
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'platform'}:{REPO}", "RAY_AUTH_MODE": "token",
           "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address, "CI": "true"}
    proc = subprocess.Popen([sys.executable, "-m", "jobs.sweep", str(path),
                             "--tracking-uri", mlflow_store, "--experiment", "test"],
                            cwd=workdir, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = mlflow.MlflowClient()
    try:
        deadline = time.time() + 240
        parent = finished = None
        while time.time() < deadline and proc.poll() is None:
            time.sleep(1)
            sweeps = mlflow.search_runs(filter_string="tags.`latentatlas.kind` = 'sweep'",
                                        output_format="list")
            if sweeps:
                parent = sweeps[0].info.run_id
                finished = [r for r in train_runs(parent) if r.info.status == "FINISHED"]
                if len(finished) >= 2:
                    break
        assert parent and finished and len(finished) >= 2, proc.stdout.read()
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # read once the sweep is dead: a trial's end time was seen to move 29 ms after the poll
    # above saw its run FINISHED, before the kill (OMP_NUM_THREADS=1, 2026-12-02); what the
    # resume must not do is touch a finished run afterwards
    before = {r.info.run_id: client.get_run(r.info.run_id).info.end_time for r in finished}
    assert len(train_runs(parent)) < 4 or any(r.info.status == "RUNNING"
                                              for r in train_runs(parent))

    out = resume_sweep("killed", tracking_uri=mlflow_store, experiment="test")
    assert out.parent_run_id == parent and not out.interrupted
    runs = train_runs(parent)
    assert len(runs) == 4
    combos = sorted((r.data.params["kl.policy"], r.data.params["model.latent_dim"])
                    for r in runs)
    assert combos == [("balanced", "2"), ("balanced", "4"), ("elbo", "2"), ("elbo", "4")]
    assert all(r.info.status == "FINISHED" for r in runs)
    for run_id, end_time in before.items():  # not retrained: the same run, ended once
        assert client.get_run(run_id).info.end_time == end_time
    for r in runs:  # every epoch logged once, none repeated
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "val/loss")]
        assert sorted(steps) == [1, 2], (r.info.run_id, steps)
    assert client.get_run(parent).info.status == "FINISHED"
    rows = json.loads(mlflow.artifacts.load_text(f"runs:/{parent}/trials.json"))
    assert len(rows["data"]) == 4 and all(r == "finished" for r in
                                          [d[rows["columns"].index("status")]
                                           for d in rows["data"]])
    assert out.best["val/mse"] == min(r.data.metrics["val/mse"] for r in runs)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.slow
def test_asha_stops_a_bad_trial_and_releases_its_resources(ray_session, mlflow_store,
                                                           workdir, workers):
    """Trials training in their own process (one worker) or through Ray Train (two). One
    with a learning rate too small to learn anything runs after a good one; ASHA stops it at
    its first rung. The good trial's latent statistics and the active-units figure land in
    the parent run."""
    from ray.util import placement_group_table

    # Eight epochs, rungs at 1, 2 and 4 (grace period 1): the bad trial is stopped at its
    # first rung; it may log an epoch or two more while Tune tears it down, however fast
    # this machine, but not all eight.
    data = make_idx_dataset(workdir / "asha-idx", n_train=1024, n_test=64)
    ray_train_workers = len(train_workers("ALIVE")) + len(train_workers("DEAD"))
    path = write_sweep(workdir, data, name="asha", scheduler="asha", max_concurrent=1,
                       metric="val/mse", base={**BASE, "data": {"name": "mnist", "limit": 1024,
                                                                "path": str(data)},
                                               "train": {**BASE["train"], "epochs": 8,
                                                         "num_workers": workers}},
                       asha={"grace_period": 1, "reduction_factor": 2},
                       space={"train.lr": {"grid": [0.003, 1e-9]},
                              "model.latent_dim": {"grid": [4]}},
                       stats={"enabled": True, "limit": 32})
    out = start_sweep(load_sweep(path), tracking_uri=mlflow_store, experiment="test",
                      measure=measure_trial)
    by_lr = {r["train.lr"]: r for r in out.rows}
    good, bad = by_lr[0.003], by_lr[1e-9]
    assert good["status"] == "finished" and good["epochs"] == 8
    started = len(train_workers("ALIVE")) + len(train_workers("DEAD")) - ray_train_workers
    assert started == 0 if workers == 1 else started >= 2 * workers  # Ray Train's, if any
    assert bad["status"] == "stopped_early" and 1 <= bad["epochs"] < 8
    client = mlflow.MlflowClient()
    run = client.get_run(bad["run_id"])
    assert run.info.status == "KILLED" and run.data.tags["latentatlas.stopped_early"] == "asha"
    # (the run may log an epoch or two more while Tune tears the trial down)
    assert 1 <= len(client.get_metric_history(bad["run_id"], "val/mse")) < 8
    # Latent statistics of the finished trial: the same numbers as its own stats run.
    stats_runs = child_runs(client, mlflow.get_experiment_by_name("test").experiment_id,
                            good["run_id"], "stats")
    assert len(stats_runs) == 1
    assert good["latent/active_units"] == stats_runs[0].data.metrics["latent/active_units"]
    parent = {a.path for a in client.list_artifacts(out.parent_run_id)}
    assert {"trials.json", "active_units_vs_latent_dim.png", "search_space.json"} <= parent
    assert client.get_run(out.parent_run_id).data.tags["best_trial"] == good["trial"]
    # Nothing left behind by the stopped trial: no live placement group, every CPU free.
    deadline = time.time() + 30
    while time.time() < deadline:
        live = [p for p in placement_group_table().values() if p["state"] != "REMOVED"]
        free = ray_session.available_resources().get("CPU", 0)
        if not live and free == ray_session.cluster_resources()["CPU"]:
            break
        time.sleep(1)
    assert not live and free == ray_session.cluster_resources()["CPU"]


def test_a_gan_sweep_ranks_trials_by_a_gan_metric(ray_session, mlflow_store, workdir):
    """The sweep verb takes a GAN config: trials train DCGANs, the table holds the GAN's
    metrics, the best trial is the one with the lowest final gan/d_loss."""
    data = make_idx_dataset(workdir / "gan-idx", n_train=128, n_test=32)
    base = {"name": "g", "seed": 0, "data": {"name": "mnist", "limit": 128, "path": str(data)},
            "model": {"name": "dcgan", "latent_dim": 4, "channels": [16, 8]},
            "train": {"epochs": 1, "batch_size": 32, "cpus_per_worker": 0.5}}
    path = write_sweep(workdir, data, name="gan", base=base, metric="gan/d_loss",
                       space={"train.lr": {"grid": [1e-4, 1e-3]}})
    ray_train_workers = len(train_workers("ALIVE")) + len(train_workers("DEAD"))
    out = start_sweep(load_sweep(path), tracking_uri=mlflow_store, experiment="test")
    assert [r["status"] for r in out.rows] == ["finished", "finished"]
    # one worker each: trained in the trials' own processes, neither by Ray Train workers
    # nor by the Ray task a lone `train` runs its loop in
    assert len(train_workers("ALIVE")) + len(train_workers("DEAD")) == ray_train_workers
    from ray.util.state import list_tasks

    address = ray_session.get_runtime_context().gcs_address
    for row in out.rows:
        name = mlflow.MlflowClient().get_run(row["run_id"]).data.tags[
            "latentatlas.ray_train_name"]
        assert not list_tasks(address=address, filters=[("name", "=", f"train {name}")])
    client = mlflow.MlflowClient()
    for row in out.rows:
        assert row["gan/d_loss"] == client.get_run(row["run_id"]).data.metrics["gan/d_loss"]
        assert "val/mse" not in row and row["val/d_real"] is not None
    best = min(out.rows, key=lambda r: r["gan/d_loss"])
    assert client.get_run(out.parent_run_id).data.tags["best_trial"] == best["trial"]
