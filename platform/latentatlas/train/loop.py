"""`train_loop_per_worker`: the spine every objective shares (seeding, exact resume,
checkpoints, the NaN guard, per-epoch reports and MLflow records) around plain PyTorch."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import ray
import ray.train
import ray.train.torch
import torch

from latentatlas.config import ExperimentConfig
from latentatlas.train.classifier import ClassifierObjective
from latentatlas.train.gan import GANObjective, RecoderObjective
from latentatlas.train.vae import VAEObjective

CHECKPOINT_FILE = "checkpoint.pt"
# A second stage is a VAE whose "images" are a first stage's codes.
OBJECTIVES = {"vae": VAEObjective, "gan": GANObjective, "recoder": RecoderObjective,
              "classifier": ClassifierObjective, "second_stage": VAEObjective}


def load_checkpoint(directory: Path) -> dict:
    return torch.load(Path(directory) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)


def train_loop_per_worker(config: dict) -> dict:
    cfg = ExperimentConfig.model_validate(config["experiment"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker or 1)))
    data = {k: ray.get(v) if isinstance(v, ray.ObjectRef) else v
            for k, v in config["data"].items()}

    torch.manual_seed(cfg.seed)
    objective = OBJECTIVES[cfg.family](cfg, data, device, rank, world)
    state, start_epoch = None, 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = load_checkpoint(Path(d))
        objective.load_state_dict(state)
        start_epoch = state["epoch"] + 1
    objective.prepare(state, start_epoch)

    logger = config.get("mlflow") and rank == 0 and MlflowEpochLogger(**config["mlflow"])
    history = []  # this process's epochs, returned to the driver by rank 0
    for epoch in range(start_epoch, cfg.train.epochs):
        # Noise (posterior samples, GAN noise, generated pairs) depends only on
        # (seed, epoch, rank): resume is exact.
        torch.manual_seed(cfg.seed * 1_000_003 + epoch * 1009 + rank)
        start = time.perf_counter()
        metrics = objective.train_epoch(epoch)
        seconds = time.perf_counter() - start  # training steps only, not validation
        images = metrics.pop("images")
        metrics = {"epoch": epoch + 1, **metrics, **objective.evaluate(),
                   "images_per_s": images / seconds}
        if not all(math.isfinite(v) for v in metrics.values()):
            # Every rank sees the same reduced sums, so all stop here together; the last
            # good checkpoint is the previous epoch's.
            ray.train.report(metrics)
            first = next(k for k, v in metrics.items() if not math.isfinite(v))
            return {"history": history, "stopped": f"non-finite loss in epoch {epoch + 1} "
                               f"({first}={metrics[first]})"}
        history.append(metrics)
        if rank == 0:
            with tempfile.TemporaryDirectory() as tmp:
                torch.save({**objective.state_dict(), "epoch": epoch},
                           Path(tmp) / CHECKPOINT_FILE)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
            if logger:
                logger.log(metrics, epoch + 1)
                for name, image in objective.pictures(epoch).items():
                    logger.log_image(image, name)
            print(f"[{cfg.name}] epoch {epoch + 1}/{cfg.train.epochs} {objective.line(metrics)} "
                  f"({metrics['images_per_s']:.0f} img/s)", flush=True)
        else:
            ray.train.report(metrics)
    return {"history": history, "stopped": None, **objective.result()}


class MlflowEpochLogger:
    """Rank 0 streams per-epoch metrics and pictures into the driver's MLflow run while
    training runs."""

    def __init__(self, tracking_uri: str, run_id: str):
        from mlflow import MlflowClient

        self.client, self.run_id = MlflowClient(tracking_uri), run_id

    def log(self, metrics: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(k, float(v), now, step) for k, v in metrics.items() if k != "epoch"])

    def log_image(self, image, name: str) -> None:
        self.client.log_image(self.run_id, image, artifact_file=f"{name}.png")
