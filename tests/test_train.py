"""Training through Ray Train on the shared local Ray, recorded in a real sqlite MLflow."""

import math

import mlflow
import numpy as np
import pytest
import torch

from latentatlas import tracking
from latentatlas.config import validate
from latentatlas.errors import UserError
from latentatlas.train.loop import epoch_batches, load_checkpoint
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
    # The logged model is the final checkpoint's weights, rebuilt by name, weights_only.
    model, spec = tracking.load_vae(out.model_uri)
    state = load_checkpoint(out.checkpoint_path)["model"]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key])
    assert spec["input_shape"] == [1, 28, 28] and spec["model"]["latent_dim"] == 4
    assert out.metrics["val/mse"] == pytest.approx(
        client.get_metric_history(out.run_id, "val/mse")[-1].value)


def test_resume_continues_at_the_right_epoch_and_matches_a_straight_run(
        ray_session, mlflow_store, idx_folder):
    first = train(tiny(idx_folder, train__epochs=1))
    resumed = train(tiny(idx_folder, train__epochs=2), resume_run_id=first.run_id)
    straight = train(tiny(idx_folder, train__epochs=2))
    assert resumed.run_id == first.run_id
    steps = [m.step for m in mlflow.MlflowClient().get_metric_history(first.run_id, "val/mse")]
    assert steps == [1, 2]
    assert load_checkpoint(resumed.checkpoint_path)["epoch"] == 1
    for key in ("train/loss", "val/mse", "train/gamma"):
        assert resumed.metrics[key] == pytest.approx(straight.metrics[key], rel=1e-6), key


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_good_checkpoint(
        ray_session, mlflow_store, idx_folder):
    good = train(tiny(idx_folder, train__epochs=1))
    with pytest.raises(UserError, match=r"non-finite loss in epoch 2.*last good checkpoint: "
                                        + good.checkpoint_path):
        # An absurd learning rate for the second epoch drives the weights to inf/NaN.
        train(tiny(idx_folder, train__epochs=2, train__lr=1e30), resume_run_id=good.run_id)
    assert mlflow.get_run(good.run_id).info.status == "FAILED"
