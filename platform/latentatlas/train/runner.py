"""The driver side of training: data into the object store, a TorchTrainer, MLflow records."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import ray
import torch
from ray.train import (
    CheckpointConfig,
    FailureConfig,
    LoggingConfig,
    RunConfig,
    ScalingConfig,
)
from ray.train.torch import TorchTrainer

from latentatlas import tracking
from latentatlas.config import ExperimentConfig
from latentatlas.data import load_split
from latentatlas.errors import UserError
from latentatlas.images import image_grid, stacked_rows, to_unit_float
from latentatlas.models import build_model
from latentatlas.runtime import check_resources, init_ray
from latentatlas.train.loop import load_checkpoint, train_loop_per_worker

TAG_TRAIN_NAME = "latentatlas.ray_train_name"
TAG_STORAGE = "latentatlas.ray_storage_path"


@dataclass
class TrainOutcome:
    run_id: str
    metrics: dict
    checkpoint_path: str
    model_uri: str


def storage_path(cfg: ExperimentConfig) -> str:
    """Absolute local path (default ./ray_results), or a URI such as s3://... as given."""
    path = cfg.train.storage_path or "ray_results"
    return path if "://" in path else str(Path(path).resolve())


def worker_cpus(t) -> float:
    """CPUs (and torch threads) per worker: as configured; else a lone CPU training gets the
    largest node's CPUs (one training should not use 1 core of many), others 1 each."""
    if t.cpus_per_worker:
        return t.cpus_per_worker
    if t.num_workers > 1 or t.use_gpu:
        return 1.0
    nodes = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]]
    return max([1.0, *nodes])


def with_worker_cpus(cfg: ExperimentConfig) -> ExperimentConfig:
    return cfg.model_copy(update={"train": cfg.train.model_copy(
        update={"cpus_per_worker": worker_cpus(cfg.train)})})


def scaling(cfg: ExperimentConfig) -> ScalingConfig:
    t = cfg.train
    return ScalingConfig(num_workers=t.num_workers, use_gpu=t.use_gpu,
                         resources_per_worker={"CPU": t.cpus_per_worker,
                                               **({"GPU": 1} if t.use_gpu else {})})


def load_data(cfg: ExperimentConfig):
    d = cfg.data
    train = load_split(d.name, d.train_split, d.path, d.limit)
    val = load_split(d.name, d.val_split, d.path, d.limit)
    for split in (train, val):
        if len(split) == 0:
            raise UserError(f"data: split {split.split!r} of {d.name!r} is empty")
    if train.shape != val.shape:  # the model is built from one and would crash on the other
        raise UserError(f"data: split {d.train_split!r} of {d.name!r} holds {train.shape} "
                        f"images but split {d.val_split!r} holds {val.shape}")
    return train, val


def run_trainer(cfg: ExperimentConfig, train_images: np.ndarray, val_images: np.ndarray,
                name: str, mlflow_target: dict | None, callbacks=(),
                trace_images: np.ndarray | None = None):
    """Fit a TorchTrainer; the same call serves `train` runs and Tune trial drivers."""
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"experiment": cfg.model_dump(), "train_ref": ray.put(train_images),
                           "val_ref": ray.put(val_images), "mlflow": mlflow_target,
                           "trace_images": trace_images},
        scaling_config=scaling(cfg),
        run_config=RunConfig(
            name=name, storage_path=storage_path(cfg),
            failure_config=FailureConfig(max_failures=cfg.train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.checkpoints_to_keep),
            callbacks=list(callbacks) or None,
            logging_config=LoggingConfig(log_level="WARNING")),
    )
    try:
        return trainer.fit()
    except Exception as e:  # TrainingFailedError wraps the worker's exception
        raise RuntimeError(f"training run {name!r} failed: {e}") from e


def model_from_checkpoint(cfg: ExperimentConfig, checkpoint, input_shape):
    with checkpoint.as_directory() as d:
        state = load_checkpoint(Path(d))
    model = build_model(cfg.model, input_shape)
    model.load_state_dict(state["model"])
    return model.eval()


@torch.no_grad()
def pictures(model, val_images: np.ndarray, seed: int, n: int = 8) -> dict[str, np.ndarray]:
    """Originals over reconstructions (posterior means), and an 8x8 grid of prior samples."""
    x = to_unit_float(val_images[:n])
    mu, _ = model.encode(x)
    z = torch.randn(64, model.latent_dim, generator=torch.Generator().manual_seed(seed))
    return {"reconstructions": stacked_rows([x.numpy(), model.decode(mu).numpy()]),
            "samples": image_grid(model.decode(z).numpy(), ncols=8)}


def trace_indices(labels: np.ndarray, n: int = 10) -> np.ndarray:
    """The first item of each class (in class order), or the first n items when unlabelled."""
    classes = np.unique(labels[labels >= 0])
    if len(classes) == 0:
        return np.arange(min(n, len(labels)))
    return np.array([np.flatnonzero(labels == c)[0] for c in classes[:n]])


def log_trace(trace: np.ndarray, labels: np.ndarray) -> None:
    from latentatlas.plots import trajectories

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "first_epoch_trace.npz"
        np.savez(path, codes=trace, labels=labels)
        mlflow.log_artifact(str(path))
    tracking.log_figure(trajectories(trace, labels), "trajectories.png")


def train(cfg: ExperimentConfig, *, tracking_uri: str | None = None,
          experiment: str | None = None, ray_address: str | None = None,
          resume_run_id: str | None = None, parent_run_id: str | None = None,
          callbacks=(), tags: dict | None = None) -> TrainOutcome:
    """Train `cfg` in a new MLflow run (a child of `parent_run_id` when given), or continue
    the run `resume_run_id` from its last checkpoint. `callbacks` go to the Ray Train run
    (a Tune trial passes its TuneReportCallback)."""
    uri = tracking.setup(tracking_uri, experiment)
    init_ray(ray_address)
    cfg = with_worker_cpus(cfg)
    if cfg.train.use_gpu:
        check_resources({"GPU": cfg.train.num_workers}, "train.use_gpu")
    train_split, val_split = load_data(cfg)
    if resume_run_id:
        run = mlflow.start_run(run_id=resume_run_id)
        name = run.data.tags.get(TAG_TRAIN_NAME)
        if not name:
            mlflow.end_run()
            raise UserError(f"--resume {resume_run_id}: that MLflow run is not a train run")
    else:
        run = mlflow.start_run(run_name=cfg.name, parent_run_id=parent_run_id)
        name = f"{cfg.name}-{run.info.run_id[:8]}"
        mlflow.log_params(tracking.flatten(cfg.model_dump()))
        mlflow.set_tags({TAG_TRAIN_NAME: name, TAG_STORAGE: storage_path(cfg),
                         "latentatlas.kind": "train", "dataset": cfg.data.name, **(tags or {})})
    run_id = run.info.run_id
    mlflow.set_tag(tracking.OWNER_TAG, tracking.owner())  # a killed driver's run is ended later
    mlflow.log_dict(cfg.model_dump(), "config.yaml")
    try:
        traced = trace_indices(val_split.labels) if cfg.train.trace_points else None
        result = run_trainer(cfg, train_split.images, val_split.images, name,
                             {"tracking_uri": uri, "run_id": run_id}, callbacks,
                             None if traced is None else val_split.images[traced])
        stopped = (result.return_value or {}).get("stopped")
        if stopped:
            kept = result.checkpoint.path if result.checkpoint else "none (failed in epoch 1)"
            raise UserError(f"training stopped: {stopped}; last good checkpoint: {kept}")
        if result.checkpoint is None:
            raise UserError(f"training run {name!r} reported no checkpoint")
        model = model_from_checkpoint(cfg, result.checkpoint, train_split.shape)
        tracking.log_vae(model, cfg.model.model_dump(), train_split.shape,
                                {"dataset": cfg.data.name, "seed": cfg.seed})
        for key, image in pictures(model, val_split.images, cfg.seed).items():
            tracking.log_image(image, key)
        trace = (result.return_value or {}).get("trace")
        if trace is not None:
            log_trace(trace, val_split.labels[traced])
        mlflow.end_run("FINISHED")
    except BaseException:
        # A sweep marks a trial its scheduler stopped as KILLED; the stopped driver may get
        # here only afterwards (Tune stops it asynchronously) and must not overwrite that.
        try:
            status = mlflow.MlflowClient().get_run(run_id).info.status
        except Exception:  # the store itself may be what failed: keep the first error
            status = "RUNNING"
        mlflow.end_run("FAILED" if status == "RUNNING" else status)
        raise
    metrics = {k: v for k, v in result.metrics.items() if "/" in k}
    return TrainOutcome(run_id, metrics, result.checkpoint.path, f"runs:/{run_id}/model")
