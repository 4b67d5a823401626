"""Bad input of the kinds users really have: one clear line naming the file (and shape or
key), never a traceback, and no wait for resources a fixed-size cluster cannot give."""

import argparse
import json
import struct

import pytest
import torch
from conftest import make_idx_dataset
from test_data import write_celeba

from latentatlas.config import ExperimentConfig
from latentatlas.data import load_split
from latentatlas.data.idx import read_idx
from latentatlas.errors import UserError


def test_an_idx_file_with_a_bogus_header_is_named_as_not_an_idx_file(tmp_path):
    bogus = tmp_path / "images"
    bogus.write_bytes(bytes([0, 0, 0x08, 0x99]) + bytes(64))  # 153 "dimensions"
    with pytest.raises(UserError, match=r"not an IDX image or label file \(its header claims "
                                        r"153 dimensions\)"):
        read_idx(bogus)
    bogus.write_bytes(bytes([0, 0, 0x07, 1]) + struct.pack(">I", 4) + bytes(4))
    with pytest.raises(UserError, match=r"unsupported element type 0x07"):
        read_idx(bogus)


@pytest.mark.parametrize("content", [b"this is not a JPEG at all", "truncated"])
def test_an_unreadable_celeba_image_is_one_line_naming_it(tmp_path, content):
    write_celeba(tmp_path)
    victim = sorted((tmp_path / "img_align_celeba").iterdir())[1]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3] if content == "truncated" else content)
    with pytest.raises(UserError, match=rf"^{victim}: not a readable image \("):
        load_split("celeba", "train", tmp_path)


def test_splits_of_different_image_shapes_are_refused_before_training(tmp_path):
    from latentatlas.train.family import load_data

    data = make_idx_dataset(tmp_path / "idx", n_train=16, n_test=8, size=28)
    make_idx_dataset(tmp_path / "other", n_train=16, n_test=8, size=32)
    (data / "train-images-idx3-ubyte.gz").write_bytes(
        (tmp_path / "other" / "train-images-idx3-ubyte.gz").read_bytes())
    cfg = ExperimentConfig.model_validate({"data": {"name": "mnist", "path": str(data)}})
    with pytest.raises(UserError, match=r"split 'train' of 'mnist' holds \(1, 32, 32\) images "
                                        r"but split 'test' holds \(1, 28, 28\)"):
        load_data(cfg)


def model_dir(tmp_path, state) -> str:
    """A model directory as MLflow hands it over: extra_files/ with spec and state dict."""
    from latentatlas.config import DenseVAEConfig

    extra = tmp_path / "model" / "extra_files"
    extra.mkdir(parents=True)
    spec = {"model": DenseVAEConfig(hidden=[8], latent_dim=2).model_dump(),
            "input_shape": [1, 8, 8]}
    (extra / "model_spec.json").write_text(json.dumps(spec))
    torch.save(state, extra / "state_dict.pt")
    return str(tmp_path / "model")


def test_a_state_dict_that_is_not_plain_tensors_is_refused_in_one_line(tmp_path):
    from latentatlas.model_store import load_vae

    pickled = model_dir(tmp_path / "a", {"w": torch.zeros(2), "cfg": argparse.Namespace(x=1)})
    with pytest.raises(UserError, match=r"state_dict.pt is not a LatentAtlas state dict"):
        load_vae(pickled)
    wrong = model_dir(tmp_path / "b", {"w": torch.zeros(2)})  # tensors, not this model's
    with pytest.raises(UserError, match=r"the weights do not fit the model its spec describes"):
        load_vae(wrong)


@pytest.mark.parametrize("started_by", ["init_ray", "the user's ray.init()"])
def test_gpus_a_local_instance_lacks_fail_at_once(ray_session, workdir, started_by):
    """On this machine's own instance a GPU request fails before anything waits: the message
    is the local one, not the --resource-timeout wait's ("no 1 GPU arrived within"), and
    no training run was opened. Also when Ray was started before the platform's init_ray,
    as a notebook or a user's script does."""
    import mlflow

    from latentatlas import runtime
    from latentatlas.batches import actor_map
    from latentatlas.encode.pipeline import EncodeBatch
    from latentatlas.train.runner import train

    if ray_session.cluster_resources().get("GPU", 0):
        pytest.skip("this machine has a GPU")
    # A command's runtime, as its options make it: a wait would outlast the suite.
    ray = runtime.configure(resource_timeout_s=3600)
    if started_by != "init_ray":
        ray.local = False  # what a runtime knows when Ray was started before it
    runtime.init_ray()  # joins the running instance and finds it is this process's own
    assert ray.local and runtime.current() is ray
    cfg = ExperimentConfig.model_validate({"data": {"name": "digits"},
                                           "train": {"use_gpu": True, "epochs": 1}})
    uri = f"sqlite:///{workdir}/mlflow.db"
    with pytest.raises(UserError, match=r"train.use_gpu: needs 1 GPU but this machine's Ray "
                                        r"instance has \d+ CPU, 0 GPU"):
        train(cfg, tracking_uri=uri)
    assert mlflow.MlflowClient(uri).search_runs(
        [e.experiment_id for e in mlflow.MlflowClient(uri).search_experiments()]) == []
    with pytest.raises(UserError, match=r"--use-gpu: needs 1 GPU"):
        actor_map(ray_session.data.range(4), EncodeBatch, batch_size=2, actors=1,
                  use_gpu=True)


def test_a_user_error_inside_a_wrapper_is_still_one_line_and_other_errors_are_not(capsys):
    """`guarded` finds a UserError behind a wrapper (a cause, or a Ray task's traceback
    text, as Ray Data leaves it) and prints its one line; any other error propagates."""
    import argparse

    from latentatlas.command import guarded

    args = argparse.Namespace(debug=False)

    def wrapped():
        try:
            raise UserError("enc: item 3 has non-finite codes")
        except UserError as e:
            raise RuntimeError("training run 'x' failed") from e

    def remote():  # how a Ray Data step's failure reads in the driver
        raise RuntimeError("ray::MapBatches(f)\n  File \"store.py\", line 3\n"
                           "latentatlas.errors.UserError: enc: a block: item 7 is nan\n\n"
                           "UDF failed to process a data block.")

    assert guarded(wrapped, args) == 2
    assert capsys.readouterr().err.splitlines()[0] == "error: enc: item 3 has non-finite codes"
    assert guarded(remote, args) == 2
    assert capsys.readouterr().err.splitlines()[0] == "error: enc: a block: item 7 is nan"
    with pytest.raises(ZeroDivisionError):
        guarded(lambda: 1 / 0, args)


def test_a_knob_that_is_not_a_whole_number_is_one_line_naming_it(monkeypatch):
    from latentatlas import batches, environment

    monkeypatch.setenv("LATENTATLAS_LOCAL_ROWS", "lots")
    with pytest.raises(UserError, match=r"^LATENTATLAS_LOCAL_ROWS=lots: expected a whole "
                                        r"number >= 0$"):
        batches.runs_here(10)
    monkeypatch.setenv("LATENTATLAS_SHARD_ROWS", "0")
    with pytest.raises(UserError, match=r"^LATENTATLAS_SHARD_ROWS=0: expected a whole number "
                                        r">= 1$"):
        environment.shard_rows()
    monkeypatch.setenv("LATENTATLAS_LOCAL_ROWS", "10")  # read when needed, not at import
    assert batches.runs_here(10) and not batches.runs_here(11)
    monkeypatch.delenv("LATENTATLAS_LOCAL_ROWS")
    assert batches.runs_here(100_000) and not batches.runs_here(100_001)
