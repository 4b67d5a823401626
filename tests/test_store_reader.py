"""`latentatlas runs` reads a SQLite store without MLflow: what it reads must be what MLflow's
own search_runs returns on the same store (a schema that moves fails here)."""

import math
import os
import subprocess
import sys

import mlflow
from mlflow.entities import Metric, Param

from jobs import runs as runs_job
from latentatlas.store_reader import OWNER_TAG, newest_runs, sqlite_path


def test_the_reader_returns_what_mlflow_returns(workdir):
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    eid = client.create_experiment("listed")
    other = client.create_experiment("other")
    ids = []
    for i in range(7):
        run = client.create_run(eid, start_time=1_000_000 + 1000 * i, run_name=f"r{i}",
                                tags={"latentatlas.kind": "train" if i % 2 else "stats"})
        # the latest point is the highest step, not the largest value nor the last written
        client.log_batch(run.info.run_id, metrics=[
            Metric("val/mse", 0.5 - 0.01 * i, 10, 3), Metric("val/mse", 9.0, 20, 1),
            Metric("val/kl", float("nan") if i == 3 else 1.0 + i, 10, 0)])
        client.log_param(run.info.run_id, "model.latent_dim", str(8 * i))
        if i != 5:
            client.set_terminated(run.info.run_id, "FINISHED" if i % 3 else "FAILED")
        ids.append(run.info.run_id)
    client.delete_run(ids[2])
    client.create_run(other, start_time=9_000_000, run_name="elsewhere")

    read = newest_runs(sqlite_path(uri), "listed", 4)
    expected = client.search_runs([eid], max_results=4, order_by=["attributes.start_time DESC"])
    assert [r.info.run_id for r in read] == [r.info.run_id for r in expected] \
        == [ids[6], ids[5], ids[4], ids[3]]
    for mine, theirs in zip(read, expected, strict=True):
        assert (mine.info.run_name, mine.info.status) == (theirs.info.run_name,
                                                          theirs.info.status)
        assert mine.data.params == theirs.data.params
        assert mine.data.tags == theirs.data.tags
        assert mine.data.metrics.keys() == theirs.data.metrics.keys()
        for key, value in theirs.data.metrics.items():
            assert (math.isnan(value) and math.isnan(mine.data.metrics[key])) or \
                mine.data.metrics[key] == value
    assert read[0].metrics["val/mse"] == 0.44 and math.isnan(read[3].metrics["val/kl"])
    # a tag filter (`runs --kind`, `--parent`) is applied before the limit, as MLflow does
    kind = newest_runs(sqlite_path(uri), "listed", 2, tags={"latentatlas.kind": "train"})
    theirs = client.search_runs([eid], "tags.`latentatlas.kind` = 'train'", max_results=2,
                                order_by=["attributes.start_time DESC"])
    assert [r.run_id for r in kind] == [r.info.run_id for r in theirs] == [ids[5], ids[3]]
    assert newest_runs(sqlite_path(uri), "listed", 9, tags={"latentatlas.kind": "train",
                                                            "mlflow.parentRunId": "x"}) == []
    assert newest_runs(sqlite_path(uri), "nowhere", 4) is None
    assert sqlite_path(f"sqlite:///{workdir / 'absent.db'}") is None
    assert sqlite_path("http://127.0.0.1:5000") is None


def test_runs_ends_a_killed_processes_run_before_listing_it(workdir, capsys):
    """A RUNNING run whose owner (this machine, a pid that is gone) was killed: the fast
    read sees it and hands over to the Recorder, which ends it FAILED."""
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    eid = client.create_experiment("latentatlas")
    run = client.create_run(eid, run_name="killed",
                            tags={OWNER_TAG: f"{os.uname().nodename}:{gone}"})
    assert runs_job.main(["--tracking-uri", uri]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if run.info.run_id in line)
    assert "FAILED" in row and client.get_run(run.info.run_id).info.status == "FAILED"


def test_runs_prints_a_table_per_kind_and_records_for_scripts(workdir, capsys):
    """A relocation's table holds its M and M / own; a training's, its family's numbers;
    --parent keeps a parent's children; json and csv hold every column of every run."""
    import csv
    import io
    import json

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    eid = client.create_experiment("latentatlas")
    parent = client.create_run(eid, run_name="job", tags={"latentatlas.kind": "main"})
    pid = parent.info.run_id
    vae = client.create_run(eid, run_name="a-vae", tags={
        "latentatlas.kind": "train", "latentatlas.family": "vae", "mlflow.parentRunId": pid})
    client.log_batch(vae.info.run_id, metrics=[Metric("val/mse", 0.0234, 0, 1)])
    moved = client.create_run(eid, run_name="moved", tags={
        "latentatlas.kind": "relocate", "mlflow.parentRunId": pid})
    client.log_batch(moved.info.run_id, metrics=[Metric("relocation/M", 0.03, 0, 0),
                                                 Metric("relocation/M_target_own", 0.02, 0, 0)])
    client.create_run(eid, run_name="alone", tags={"latentatlas.kind": "stats"})
    scored = client.create_run(eid, run_name="fid", tags={
        "latentatlas.kind": "fid", "mlflow.parentRunId": pid})
    client.log_batch(scored.info.run_id, metrics=[Metric("fid/inception", 12.5, 0, 0)],
                     params=[Param("images", "samples/"), Param("fid/reference", "ref.npz")])
    assert runs_job.main(["--tracking-uri", uri, "--parent", pid]) == 0
    out = capsys.readouterr().out
    assert "train (vae): 1 run" in out and "relocate: 1 run" in out and "alone" not in out
    header = next(line for line in out.splitlines() if "relocation/M" in line)
    row = next(line for line in out.splitlines() if moved.info.run_id in line)
    cell = {name: row[header.index(name):].split()[0] for name in ("M / own", "relocation/M ")}
    assert cell == {"M / own": "1.5", "relocation/M ": "0.03"}  # columns start aligned
    assert "val/mse" in out and "0.0234" in out and "relocation/R" not in out  # no empty column
    row = next(line for line in out.splitlines() if scored.info.run_id in line)
    assert row.split()[3:] == ["samples/", "12.5", "inception", "ref.npz"]

    assert runs_job.main(["--tracking-uri", uri, "--kind", "relocate", "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in records] == [moved.info.run_id]
    assert records[0]["M / own"] == 1.5 and records[0]["parent"] == pid
    assert runs_job.main(["--tracking-uri", uri, "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["name"] for r in table} == {"job", "a-vae", "moved", "alone", "fid"}
    assert next(r for r in table if r["name"] == "a-vae")["val/mse"] == "0.0234"
