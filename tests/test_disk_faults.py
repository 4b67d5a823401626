"""Faults of the machine while an output is written (issue #44, part 3), on real file systems:
a small tmpfs mounted by the test (full, or read-only), and a folder removed while an encode
writes into it. Each writer ends in one `error:` line naming its output and the bytes it
needed, exit 2, and nothing half-written is left there. Where the test may not mount (not
root, no tmpfs), it skips and says why."""

import os
import re
import subprocess
import threading
import time
import uuid

import mlflow
import numpy as np
import pytest
import torch
from conftest import make_idx_dataset, use_store

from jobs import encode as encode_verb
from jobs import train as train_verb
from jobs.report import write_atomically
from latentatlas.errors import UserError


@pytest.fixture
def disk(tmp_path):
    """mount(size, read_only=False) -> a fresh tmpfs of `size` under tmp_path; unmounted
    after the test."""
    mounted = []

    def mount(size: str, read_only: bool = False):
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root")
        point = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.fixture
def logged_vae(workdir):
    """An untrained dense VAE (4 variables) logged to a SQLite store off the small disks,
    and a 1,500-image MNIST-format split for it."""
    from latentatlas import model_store
    from latentatlas.config import DenseVAEConfig
    from latentatlas.models import build_model

    uri = use_store(f"sqlite:///{workdir}/mlflow.db", "faults")
    cfg = DenseVAEConfig(hidden=[16], latent_dim=4)
    torch.manual_seed(0)
    with mlflow.start_run(run_name="model") as run:
        model_store.log_model(build_model(cfg, (1, 28, 28)), cfg.model_dump(), (1, 28, 28))
    data = make_idx_dataset(workdir / "idx", n_train=16, n_test=1500)
    return {"uri": uri, "model": f"runs:/{run.info.run_id}/model", "data": data}


def encode_args(store, out, *extra):
    return ["--model", store["model"], "--data", "mnist:test", "--data-path",
            str(store["data"]), "--out", str(out), "--tracking-uri", store["uri"],
            "--experiment", "faults", *extra]


def one_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines()
           if line.startswith("error:")]
    assert len(err) == 1, err
    return err[0]


# 1,500 codes of 4 variables: mu and logvar (float32), the index and the label
ENCODING_NEED = 1500 * (8 * 4 + 8 * 2)


@pytest.mark.parametrize("path", ["here", "ray-data"])
def test_a_full_disk_ends_an_encode_in_one_line_and_keeps_nothing(
        disk, logged_vae, ray_session, capsys, path):
    """In this process (a small split's path) and through Ray Data (the error comes back from
    a worker), a 32 KiB disk cannot hold 1,500 codes: one line, the bytes, an empty disk."""
    small = disk("32k")
    out = small / "enc"
    extra = ["--actors", "1"] if path == "ray-data" else []
    assert encode_verb.main(encode_args(logged_vae, out, *extra)) == 2
    assert re.fullmatch(
        rf"error: {out}: could not be written: no space left on its disk \(it needs about "
        rf"{ENCODING_NEED:,} bytes; [\d,]+ free there\); nothing half-written was kept",
        one_error(capsys))
    # (Ray Data's write tasks may still be ending when the command has)
    deadline = time.monotonic() + 10
    while list(small.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(small.iterdir()) == []


def test_a_read_only_folder_is_one_line_for_each_writer(disk, logged_vae, capsys):
    """An encode and a report into a read-only file system: one line each, naming the output
    (no bytes free to report: the disk is not full)."""
    locked = disk("1m", read_only=True)
    assert encode_verb.main(encode_args(logged_vae, locked / "enc")) == 2
    assert one_error(capsys) == (f"error: {locked / 'enc'}: could not be written: its file "
                                 f"system is read-only (it needs about {ENCODING_NEED:,} "
                                 "bytes); nothing half-written was kept")
    with pytest.raises(UserError) as refused:
        write_atomically(locked / "results.md", "# results\n")
    assert str(refused.value) == (f"{locked / 'results.md'}: could not be written: its file "
                                  "system is read-only (it needs about 10 bytes); nothing "
                                  "half-written was kept")


def test_a_read_only_folder_under_reference_statistics_a_model_and_a_record(disk, workdir):
    """`--save-ref-stats`, a model log and an analysis's record into a read-only file
    system: one line each, naming what could not be written; the runs end FAILED."""
    from latentatlas.config import DenseVAEConfig
    from latentatlas.fid_stats import write_reference
    from latentatlas.frechet import Reference
    from latentatlas.models import build_model
    from latentatlas.tracking import Record, Recorder

    locked = disk("1m", read_only=True)
    reference = Reference(mu=np.zeros(4), sigma=np.eye(4), count=10, described="test")
    with pytest.raises(UserError) as refused:
        write_reference(reference, locked / "ref.npz")
    assert str(refused.value).startswith(f"--save-ref-stats {locked / 'ref.npz'}: could not "
                                         "be written: its file system is read-only"), \
        str(refused.value)

    uri = f"sqlite:///{workdir}/mlflow.db"
    mlflow.MlflowClient(uri).create_experiment("locked", artifact_location=locked.as_uri())
    recorder = Recorder(uri, "locked")
    cfg = DenseVAEConfig(hidden=[16], latent_dim=4)
    with pytest.raises(UserError) as refused, recorder.run("model", "train") as model_run:
        recorder.log_model(model_run, build_model(cfg, (1, 28, 28)), cfg.model_dump(),
                           (1, 28, 28))
    assert str(refused.value).startswith(f"{locked}/models: could not be written: its file "
                                         "system is read-only"), str(refused.value)
    with pytest.raises(UserError) as refused:
        recorder.record(Record("stats", "stats", metrics={"latent/inactive": 3},
                               dicts={"gains.json": {"gain": [1, 2]}}))
    assert str(refused.value).startswith(f"{locked}/") and ": could not be written: its file " \
        "system is read-only" in str(refused.value), str(refused.value)
    runs = recorder.client.search_runs([recorder.experiment_id])
    assert model_run in {r.info.run_id for r in runs}
    assert {r.info.status for r in runs} == {"FAILED"}


def test_a_full_disk_under_a_report_and_reference_statistics_keeps_the_old_file(disk):
    """`report --out` and `--save-ref-stats` write beside their file and rename: a disk too
    small for the new content leaves the old file as it was and no temporary file."""
    from latentatlas.fid_stats import write_reference
    from latentatlas.frechet import Reference

    small = disk("16k")
    report = small / "results.md"
    report.write_text("the old report\n")
    with pytest.raises(UserError, match=rf"^{report}: could not be written: no space left on "
                                        r"its disk \(it needs about 40,000 bytes; [\d,]+ free "
                                        r"there\); nothing half-written was kept$"):
        write_atomically(report, "x" * 40_000)
    assert report.read_text() == "the old report\n"
    assert sorted(p.name for p in small.iterdir()) == ["results.md"]

    d = 64  # mu and sigma: 64 + 64 * 64 float64 = 33,280 bytes
    reference = Reference(mu=np.zeros(d), sigma=np.eye(d), count=10, described="test")
    stats = small / "ref.npz"
    with pytest.raises(UserError, match=rf"^--save-ref-stats {stats}: could not be written: no "
                                        r"space left on its disk \(it needs about 37,376 "
                                        r"bytes; [\d,]+ free there\)"):
        write_reference(reference, stats)
    assert sorted(p.name for p in small.iterdir()) == ["results.md"]


def test_an_encode_whose_folder_vanishes_mid_run_ends_in_one_line(
        logged_vae, ray_session, workdir, capsys):
    """The output's folder is removed while Ray Data writes into it (a cleaned scratch
    disk, a lost mount): the encode ends in one line and nothing appears at the output; or,
    where Ray Data's write tasks had not yet opened their files (they make their folder
    again), it completes and the encoding reads back whole. Which of the two happens is a
    matter of timing; what is never allowed is a published encoding missing rows."""
    import shutil

    folder = workdir / "scratch"
    folder.mkdir()
    out = folder / "enc"
    data = make_idx_dataset(workdir / "idx-large", n_train=16, n_test=6000, seed=1)
    args = encode_args(logged_vae, out, "--actors", "1", "--batch-size", "16")
    args[args.index("--data-path") + 1] = str(data)
    removed = threading.Event()

    def remove_when_writing():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(folder.glob(".enc.tmp-*")):
                gone = folder.rename(workdir / "removed")  # at once, whatever writes in it
                shutil.rmtree(gone, ignore_errors=True)
                removed.set()
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=remove_when_writing)
    watcher.start()
    code = encode_verb.main(args)
    watcher.join()
    assert removed.is_set(), "the encode ended before its folder could be removed"
    if code == 0:  # Ray Data's writers made the folder again before they wrote: all there
        from latentatlas.encode.store import open_encoding

        assert open_encoding(out).meta.rows == 6000
        assert [p.name for p in folder.iterdir()] == ["enc"]
        return
    # else one line naming the output: its folder gone under a writer, or rows that went to
    # the removed folder (Ray Data's writers make the folder again) refused before publishing
    assert code == 2
    line = one_error(capsys)
    assert line.startswith(f"error: {out}: ") and (
        "could not be written: its folder is gone" in line
        or " of 6000 rows were written (its folder was removed" in line), line
    assert not out.exists()


def test_a_full_disk_under_a_trainings_checkpoints_and_its_model(
        disk, workdir, ray_session, capsys):
    """A training whose run folder is on a full disk stops at its first checkpoint in one
    line naming it; one whose MLflow artifacts are on a full disk (checkpoints elsewhere)
    stops when the model is logged, in one line naming the experiment's models folder. Both
    runs end FAILED and no partial checkpoint is left."""
    from conftest import REPO

    data = make_idx_dataset(workdir / "idx", n_train=64, n_test=32)
    uri = f"sqlite:///{workdir}/mlflow.db"
    base = [str(REPO / "jobs/configs/fmnist_dense.yaml"), "--tracking-uri", uri,
            "--experiment", "faults", "--set", "data.name=mnist", "--set", f"data.path={data}",
            "--set", "train.epochs=1", "--set", "train.until_settled=false"]
    runs = disk("256k")  # the dense VAE's weights and Adam's moments: ~3.5 MB a checkpoint
    assert train_verb.main([*base, "--set", f"train.storage_path={runs}"]) == 2
    line = one_error(capsys)
    assert line.startswith(f"error: {runs}/") and "/checkpoint_" in line, line
    assert ": could not be written: no space left on its disk (it needs about " in line, line
    assert line.endswith(" free there); nothing half-written was kept"), line
    assert not list(runs.rglob(".partial-*")) and not list(runs.rglob("checkpoint_*"))

    artifacts = disk("512k")  # room for the run's records, not for its model (~2.4 MB)
    client = mlflow.MlflowClient(uri)
    client.create_experiment("faults-model", artifact_location=artifacts.as_uri())
    assert train_verb.main([*base, "--experiment", "faults-model", "--set",
                            f"train.storage_path={workdir / 'ray_results'}"]) == 2
    line = one_error(capsys)
    assert line.startswith(f"error: {artifacts}/models: could not be written: no space left on "
                           "its disk (it needs about "), line
    assert not list((artifacts / "models").glob("m-*"))  # MLflow's half-copied model: gone
    for name in ("faults", "faults-model"):
        experiment = client.get_experiment_by_name(name).experiment_id
        (run,) = client.search_runs([experiment], "tags.`latentatlas.kind` = 'train'")
        assert run.info.status == "FAILED"


def test_a_full_disk_under_the_tracking_database_is_one_line(disk, workdir, capsys):
    """MLflow's SQLite file on a disk that fills up: the command that records a run ends in
    one line naming the database (SQLite's own error names no file), exit 2."""
    from latentatlas import model_store
    from latentatlas.config import DenseVAEConfig
    from latentatlas.models import build_model

    small = disk("4m")
    uri = f"sqlite:///{small}/mlflow.db"
    mlflow.MlflowClient(uri).create_experiment("full",
                                               artifact_location=(workdir / "art").as_uri())
    use_store(uri, "full")
    cfg = DenseVAEConfig(hidden=[16], latent_dim=4)
    with mlflow.start_run(run_name="model") as run:
        model_store.log_model(build_model(cfg, (1, 28, 28)), cfg.model_dump(), (1, 28, 28))
    with open(small / "filler", "wb") as f:  # every block the database could still take
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    data = make_idx_dataset(workdir / "idx", n_train=16, n_test=100)
    store = {"model": f"runs:/{run.info.run_id}/model", "data": data, "uri": uri}
    assert encode_verb.main([*encode_args(store, workdir / "enc"), "--experiment", "full"]) == 2
    line = one_error(capsys)
    assert line.startswith(f"error: {small}/mlflow.db: could not be written: no space left on "
                           "its disk ("), line


def test_a_full_disk_under_a_records_artifacts_is_one_line_and_its_run_failed(disk, workdir):
    """An analysis's record whose artifacts fill their disk: one line naming the run's
    artifact folder, without claiming a clean slate (MLflow's records have no transaction:
    what was logged before the fault stays, in a run that ends FAILED)."""
    from latentatlas.tracking import Record, Recorder

    small = disk("64k")
    uri = f"sqlite:///{workdir}/mlflow.db"
    mlflow.MlflowClient(uri).create_experiment("full-records", artifact_location=small.as_uri())
    recorder = Recorder(uri, "full-records")
    record = Record("stats", "stats", metrics={"latent/inactive": 3},
                    dicts={"gains.json": {"gain": list(range(100_000))}})  # ~0.6 MB
    with pytest.raises(UserError) as raised:
        recorder.record(record)
    line = str(raised.value)
    assert line.startswith(f"{small}/") and "/artifacts" in line, line
    assert ": could not be written: no space left on its disk" in line, line
    assert "nothing half-written" not in line, line
    (run,) = recorder.client.search_runs(
        [recorder.client.get_experiment_by_name("full-records").experiment_id])
    assert run.info.status == "FAILED" and run.data.metrics == {"latent/inactive": 3.0}


@pytest.mark.parametrize("room", ["none", "for one copy"])
def test_a_full_temporary_folder_under_a_model_log_is_one_line(disk, workdir, monkeypatch,
                                                                room):
    """A model is serialised in the temporary folder before it is stored: ours (the state
    dict), then MLflow's pickle, both by torch's writer, whose full-disk error names no
    fault. Full before ours, or with room for ours only: one line naming the temporary
    folder's disk, no model left behind, the run ended FAILED."""
    import tempfile

    from latentatlas.config import DenseVAEConfig
    from latentatlas.models import build_model
    from latentatlas.tracking import Recorder

    cfg = DenseVAEConfig(hidden=[32], latent_dim=4)
    model = build_model(cfg, (1, 28, 28))
    state = sum(t.nbytes for t in model.state_dict().values())  # ~0.2 MB
    small = disk("32k" if room == "none" else f"{state * 3 // 2 // 1024}k")
    monkeypatch.setattr(tempfile, "tempdir", str(small))
    uri = f"sqlite:///{workdir}/mlflow.db"
    mlflow.MlflowClient(uri).create_experiment("full-tmp",
                                               artifact_location=(workdir / "art").as_uri())
    recorder = Recorder(uri, "full-tmp")
    with pytest.raises(UserError) as raised, recorder.run("model", "train") as run_id:
        recorder.log_model(run_id, model, cfg.model_dump(), (1, 28, 28))
    line = str(raised.value)
    assert line.startswith(f"{small}"), line
    assert ": could not be written: no space left on its disk (it needs about " in line, line
    assert not list((workdir / "art").rglob("*.pt")) and list(small.iterdir()) == []
    assert recorder.client.get_run(run_id).info.status == "FAILED"


def chained(*errors: BaseException) -> BaseException:
    """The first error raised while handling the second, ... (each the next's context)."""
    for outer, inner in zip(errors[:-1], errors[1:], strict=True):
        outer.__context__ = inner
    return errors[0]


def test_the_fault_behind_an_error_is_the_disks_wherever_it_is_in_the_chain():
    """A cleanup that fails on a missing file after a full disk: the disk is the fault to
    name (os_fault_in walks causes and contexts, and a Ray worker's text)."""
    import errno

    from latentatlas.outputs import SQLITE_DATABASE, os_fault_in

    full = OSError(errno.ENOSPC, "No space left on device", "/out/part-0.parquet")
    gone = FileNotFoundError(errno.ENOENT, "No such file or directory", "/out/.partial")
    assert os_fault_in(chained(RuntimeError("step failed"), gone, full)) == (
        errno.ENOSPC, "/out/part-0.parquet")
    # without a disk fault, the first known one; a copy names its destination
    copy = FileNotFoundError(errno.ENOENT, "No such file or directory", "/in/a", None, "/out/b")
    assert os_fault_in(chained(RuntimeError("x"), copy)) == (errno.ENOENT, "/out/b")
    # text alone (a worker's traceback) counts only for the disk's faults
    assert os_fault_in(RuntimeError("OSError: [Errno 28] No space left on device")) == (
        errno.ENOSPC, None)
    assert os_fault_in(RuntimeError("FileNotFoundError: [Errno 2] No such file")) is None
    assert os_fault_in(chained(RuntimeError("[Errno 2] x"), ValueError(
        "(sqlite3.OperationalError) database or disk is full"))) == (
        errno.ENOSPC, SQLITE_DATABASE)
    assert os_fault_in(ValueError("nothing of the machine")) is None
