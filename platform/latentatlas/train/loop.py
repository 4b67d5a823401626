"""`train_loop_per_worker`: plain PyTorch, sharded in-memory data, exact resume."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from latentatlas.config import ExperimentConfig
from latentatlas.images import to_unit_float
from latentatlas.losses import gaussian_kl, make_policy, mu_penalty
from latentatlas.models import build_model

CHECKPOINT_FILE = "checkpoint.pt"


def epoch_batches(n: int, epoch: int, seed: int, rank: int, world: int, batch_size: int):
    """This rank's minibatch indices for one epoch: a permutation fixed by (seed, epoch),
    cut into `world` equal shards, so every rank runs the same number of steps and a
    resumed run sees exactly the order an uninterrupted one would have."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    per_rank = n // world
    shard = perm[rank * per_rank:(rank + 1) * per_rank]
    steps = max(1, per_rank // batch_size)
    return [shard[i * batch_size:(i + 1) * batch_size] for i in range(steps)]


def vae_terms(model, x, policy):
    """One forward pass: (loss, per-pixel MSE, mean KL) for a batch."""
    x_hat, mu, logvar = model(x)
    kl = gaussian_kl(mu, logvar) if unwrap(model).sample_posterior else mu_penalty(mu)
    return policy.loss(x, x_hat, kl), (x - x_hat).pow(2).mean(), kl.mean()


def all_sum(values: list[float], device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


def unwrap(model):
    """The model inside DistributedDataParallel (prepare_model wraps it when world > 1)."""
    return model.module if hasattr(model, "module") else model


def train_epoch(model, optimizer, policy, images: np.ndarray, batches, device,
                reduce_mse=None, before_step=None) -> list[float]:
    """One pass of plain PyTorch over `batches` (index arrays into uint8 `images`).
    Returns [sum loss, sum mse, sum kl, count] weighted by batch size. `reduce_mse` averages
    the batch MSE over ranks so a running-MSE policy stays identical on every rank;
    `before_step(i)` runs before step i (the first-epoch trace)."""
    model.train()
    sums = [0.0, 0.0, 0.0, 0.0]
    for step, idx in enumerate(batches):
        if before_step:
            before_step(step)
        x = to_unit_float(images[np.sort(idx)], device)
        loss, mse, kl = vae_terms(model, x, policy)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        batch_mse = mse.item()
        if policy.gamma is not None:
            policy.observe(reduce_mse(batch_mse) if reduce_mse else batch_mse)
        n = len(idx)
        sums = [sums[0] + loss.item() * n, sums[1] + batch_mse * n, sums[2] + kl.item() * n,
                sums[3] + n]
    return sums


def save_checkpoint(directory: Path, model, optimizer, policy, epoch: int) -> None:
    torch.save({"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                "policy": policy.state_dict(), "epoch": epoch}, directory / CHECKPOINT_FILE)


def load_checkpoint(directory: Path) -> dict:
    return torch.load(Path(directory) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)


def train_loop_per_worker(config: dict) -> dict:
    cfg = ExperimentConfig.model_validate(config["experiment"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker or 1)))
    train_x, val_x = ray.get(config["train_ref"]), ray.get(config["val_ref"])

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, train_x.shape[1:])
    policy = make_policy(cfg.kl.policy, cfg.kl.beta)
    state, start_epoch = None, 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = load_checkpoint(Path(d))
        model.load_state_dict(state["model"])
        policy.load_state_dict(state["policy"])
        start_epoch = state["epoch"] + 1
    model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    if state:
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:  # a resumed run may change the learning rate
            group["lr"] = cfg.train.lr

    logger = config.get("mlflow") and rank == 0 and MlflowEpochLogger(**config["mlflow"])
    trace = (Trace(unwrap(model), config["trace_images"], cfg.train.trace_points, device)
             if config.get("trace_images") is not None and start_epoch == 0 else None)
    val_shard = val_x[rank::world][: len(val_x) // world or None]
    history = []  # this process's epochs, returned to the driver by rank 0
    reduce_mse = (lambda v: all_sum([v], device)[0] / world) if world > 1 else None
    for epoch in range(start_epoch, cfg.train.epochs):
        # Noise (posterior samples) depends only on (seed, epoch, rank): resume is exact.
        torch.manual_seed(cfg.seed * 1_000_003 + epoch * 1009 + rank)
        batches = epoch_batches(len(train_x), epoch, cfg.seed, rank, world, cfg.train.batch_size)
        tracer = (trace.recorder(len(batches))
                  if trace is not None and epoch == 0 and rank == 0 else None)
        start = time.perf_counter()
        sums = train_epoch(model, optimizer, policy, train_x, batches, device, reduce_mse,
                           tracer)
        seconds = time.perf_counter() - start
        if tracer:
            trace.snapshot()  # after the last step of the epoch
        train_sums = all_sum(sums, device)
        val_sums = evaluate(model, val_shard, policy, device)
        metrics = {"epoch": epoch + 1,
                   "train/loss": train_sums[0] / train_sums[3],
                   "train/mse": train_sums[1] / train_sums[3],
                   "train/kl": train_sums[2] / train_sums[3],
                   "val/loss": val_sums[0] / val_sums[3],
                   "val/mse": val_sums[1] / val_sums[3],
                   "val/kl": val_sums[2] / val_sums[3],
                   "images_per_s": train_sums[3] / seconds}
        if policy.gamma is not None:
            metrics["train/gamma"] = policy.gamma
        if not all(math.isfinite(v) for v in metrics.values()):
            # Every rank sees the same reduced sums, so all stop here together; the last
            # good checkpoint is the previous epoch's.
            ray.train.report(metrics)
            return {"history": history, "stopped": f"non-finite loss in epoch {epoch + 1} "
                               f"(train/loss={metrics['train/loss']})", "trace": None}
        history.append(metrics)
        if rank == 0:
            with tempfile.TemporaryDirectory() as tmp:
                save_checkpoint(Path(tmp), model, optimizer, policy, epoch)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
            if logger:
                logger.log(metrics, epoch + 1)
            print(f"[{cfg.name}] epoch {epoch + 1}/{cfg.train.epochs} "
                  f"loss={metrics['train/loss']:.4g} val/mse={metrics['val/mse']:.4f} "
                  f"({metrics['images_per_s']:.0f} img/s)", flush=True)
        else:
            ray.train.report(metrics)
    return {"history": history, "stopped": None,
            "trace": trace.codes() if trace is not None and rank == 0 else None}


class Trace:
    """The codes (posterior means) of a few fixed images at `points` evenly spaced moments of
    the first epoch, before the first step through after the last: how the latent space
    takes shape."""

    def __init__(self, model, images: np.ndarray, points: int, device):
        self.model, self.x, self.points = model, to_unit_float(images, device), points
        self.snapshots: list[np.ndarray] = []

    def recorder(self, steps: int):
        at = set(np.linspace(0, steps, self.points).astype(int)[:-1].tolist())

        def before_step(step: int) -> None:
            if step in at:
                self.snapshot()
        return before_step

    @torch.no_grad()
    def snapshot(self) -> None:
        was_training = self.model.training
        self.model.eval()
        self.snapshots.append(self.model.encode(self.x)[0].cpu().numpy())
        self.model.train(was_training)

    def codes(self) -> np.ndarray:
        return np.stack(self.snapshots)  # (moments, images, latent_dim)


@torch.no_grad()
def evaluate(model, val_x: np.ndarray, policy, device) -> list[float]:
    model.eval()
    sums = [0.0, 0.0, 0.0, 0.0]
    for i in range(0, len(val_x), 1024):
        x = to_unit_float(val_x[i:i + 1024], device)
        loss, mse, kl = vae_terms(model, x, policy)
        n = len(x)
        sums = [sums[0] + loss.item() * n, sums[1] + mse.item() * n, sums[2] + kl.item() * n,
                sums[3] + n]
    return all_sum(sums, device)


class MlflowEpochLogger:
    """Rank 0 streams per-epoch metrics into the driver's MLflow run while training runs."""

    def __init__(self, tracking_uri: str, run_id: str):
        from mlflow import MlflowClient

        self.client, self.run_id = MlflowClient(tracking_uri), run_id

    def log(self, metrics: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(k, float(v), now, step) for k, v in metrics.items() if k != "epoch"])
