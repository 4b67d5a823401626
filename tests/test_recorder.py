"""The one writer of runs: a Record into a real sqlite store, and the run lifecycle."""

import json

import numpy as np
import pytest

from latentatlas.errors import UserError
from latentatlas.tracking import Record, Recorder


@pytest.fixture
def recorder(workdir):
    return Recorder(f"sqlite:///{workdir}/mlflow.db", "recorder-test")


def test_a_record_becomes_a_finished_run_with_everything_it_holds(recorder, tmp_path):
    import matplotlib.pyplot as plt

    def figure():
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        return fig

    parent = recorder.record(Record("main", "parent"))
    record = Record(
        "stats", "stats", params={"rows": 300}, metrics={"latent/inactive": 3},
        tags={"encoding": "enc"}, tables={"latent_stats.json": {"variable": [0, 1]}},
        dicts={"pairs.json": {"a": 1}}, figures={"bars.png": figure},
        images={"grid": np.zeros((4, 4, 3))},
        files={"maps/map_ols.npz": lambda p: np.savez(p, A=np.eye(2))})
    run_id = recorder.record(record, parent_run_id=parent)
    run = recorder.client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "stats"
    assert run.data.tags["latentatlas.kind"] == "stats"
    assert run.data.tags["mlflow.parentRunId"] == parent and run.data.tags["encoding"] == "enc"
    assert run.data.params == {"rows": "300"} and run.data.metrics == {"latent/inactive": 3.0}
    files = {a.path for a in recorder.client.list_artifacts(run_id)}
    assert {"latent_stats.json", "pairs.json", "bars.png", "grid.png", "maps"} <= files
    local = recorder.client.download_artifacts(run_id, "maps/map_ols.npz", str(tmp_path))
    assert np.array_equal(np.load(local)["A"], np.eye(2))
    table = json.loads(open(recorder.client.download_artifacts(
        run_id, "latent_stats.json", str(tmp_path))).read())
    assert table["data"] == [[0], [1]]
    assert not plt.get_fignums()  # drawn figures are closed


@pytest.mark.parametrize("error,status", [(ValueError, "FAILED"), (KeyboardInterrupt, "KILLED")])
def test_a_run_ends_failed_or_killed_when_its_block_raises(recorder, error, status):
    with pytest.raises(error):
        with recorder.run("doomed", "stats") as run_id:
            raise error()
    assert recorder.client.get_run(run_id).info.status == status


def test_the_store_is_read_from_the_environment_never_written_to_it(workdir, monkeypatch):
    """A Recorder given a store writes no MLFLOW_* variable itself (MLflow exports the URI
    and experiment id it is told); given none it takes the documented variables; given
    neither, sqlite:///mlflow.db in the working directory and the experiment latentatlas."""
    import os

    named = Recorder(f"sqlite:///{workdir}/named.db", "named")
    assert named.uri == f"sqlite:///{workdir}/named.db" and named.experiment == "named"
    # MLflow exports the URI it is told (for the processes it starts); LatentAtlas does not
    assert "MLFLOW_EXPERIMENT_NAME" not in os.environ
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    default = Recorder()
    assert (default.uri, default.experiment) == (f"sqlite:///{workdir}/mlflow.db", "latentatlas")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///from-env.db")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    chosen = Recorder()
    assert (chosen.uri, chosen.experiment) == (f"sqlite:///{workdir}/from-env.db", "from-env")
    assert chosen.client.get_experiment(chosen.experiment_id).name == "from-env"


def test_runs_carry_mlflows_source_tags_and_the_experiment_opens_on_training(
        workdir, monkeypatch):
    """The UI's Source and User columns: MLflow's own context tags, the command as the CLI
    names it, this checkout's commit. MLflow 3's UI opens an experiment tagged
    custom_model_development on its runs table (untagged: the GenAI overview); a user's own
    experimentKind stays."""
    import subprocess

    from conftest import REPO

    from latentatlas import tracking_store
    from latentatlas.command import open_recorder, verb_parser

    # the command's edge names the command and what a run learns of its process; nothing is
    # read from the environment below it
    args = verb_parser("latentatlas stats", None).parse_args(
        ["--tracking-uri", f"sqlite:///{workdir}/tags.db", "--experiment", "tagged"])
    recorder = open_recorder(args)
    recorder.process_tags = lambda: {"latentatlas.ray_log": "/somewhere/ray.log"}
    tags = recorder.client.get_run(recorder.record(Record("stats", "s"))).data.tags
    assert tags["mlflow.source.name"] == "latentatlas stats"
    assert tags["latentatlas.ray_log"] == "/somewhere/ray.log"
    untold = Recorder(f"sqlite:///{workdir}/tags.db", "tagged")
    assert "latentatlas.ray_log" not in untold.client.get_run(
        untold.record(Record("stats", "s"))).data.tags
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.user"]
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    if head.returncode == 0:  # a git checkout (the suite's CI clone is one)
        assert tags["mlflow.source.git.commit"] == head.stdout.strip()
    experiment = recorder.client.get_experiment(recorder.experiment_id)
    assert experiment.tags[tracking_store.EXPERIMENT_KIND_TAG] == "custom_model_development"
    recorder.client.set_experiment_tag(recorder.experiment_id, tracking_store.EXPERIMENT_KIND_TAG,
                                       "genai_development")
    Recorder(f"sqlite:///{workdir}/tags.db", "tagged")
    assert recorder.client.get_experiment(recorder.experiment_id).tags[
        tracking_store.EXPERIMENT_KIND_TAG] == "genai_development"
    assert tracking_store.runs_url("http://10.0.0.5:5000/", "7") == \
        "http://10.0.0.5:5000/#/experiments/7/runs?workflowType=machine_learning"
    assert tracking_store.runs_url("sqlite:///x.db", "1") == \
        "http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning"


def test_runs_of_the_same_data_starting_together_all_log_it(recorder):
    """MLflow stores a dataset once per experiment; runs logging the same one at the same
    moment (a job's trainings in threads) collide on its unique key, and the losers retry."""
    import threading

    from latentatlas.record import DatasetRecord
    from latentatlas.tracking import dataset_input

    data = DatasetRecord("mnist:train", "0123456789abcdef", "/data/train.gz", "training", 64,
                         (1, 28, 28))
    runs = [recorder.create(f"r{i}", "train") for i in range(8)]
    start, errors = threading.Barrier(len(runs)), []

    def log(run_id):
        start.wait()
        try:
            recorder.log_inputs(run_id, [dataset_input(data)])
        except Exception as e:  # noqa: BLE001 - the assertion below names it
            errors.append(e)

    threads = [threading.Thread(target=log, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for run_id in runs:
        (logged,) = recorder.client.get_run(run_id).inputs.dataset_inputs
        assert (logged.dataset.name, logged.dataset.digest) == ("mnist:train", data.digest)


def test_an_epoch_logged_twice_is_read_back_once_as_last_logged(recorder):
    """A worker lost after logging an epoch whose checkpoint Ray Train had not registered:
    the restarted worker trains and logs that epoch again. What the claims read (the learning
    test's history) has one value per epoch, the later one."""
    from mlflow.entities import Metric

    from jobs.kinds.train import val_mse_history

    run_id = recorder.create("restarted", "train")
    # epochs 1-3 by the lost worker, 3-4 by its replacement (same steps, later timestamps;
    # logged out of step order, as a slow client's batches may arrive)
    logged = [(1, 0.9, 1000), (2, 0.5, 2000), (3, 0.41, 3000), (4, 0.30, 5000),
              (3, 0.40, 4000)]
    recorder.client.log_batch(run_id, metrics=[Metric("val/mse", v, t, s) for s, v, t in logged])
    assert val_mse_history(recorder, run_id) == [0.9, 0.5, 0.40, 0.30]
    # an epoch missing (never logged) would shift every later one: refused in one line
    gap = recorder.create("gap", "train")
    recorder.client.log_batch(gap, metrics=[Metric("val/mse", v, s * 1000, s)
                                            for s, v in ((1, 0.9), (2, 0.5), (4, 0.3))])
    with pytest.raises(UserError, match=r"epochs \[1, 2, 4\], with some missing"):
        val_mse_history(recorder, gap)
