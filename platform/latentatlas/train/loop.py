"""`train_loop_per_worker`: the spine every objective shares (seeding, exact resume,
checkpoints, the NaN guard, per-epoch reports and MLflow records) around plain PyTorch. It
runs in a Ray Train worker group, or as the one worker of a training in one process, a plain
Ray task or a Tune trial's own (`run_single_worker`): the two sessions below are what
differs."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path

import ray
import ray.train
import ray.train.torch
import torch

from latentatlas.config import ExperimentConfig
from latentatlas.outputs import save_tensors, writing
from latentatlas.settling import has_settled
from latentatlas.tracking import RunStream
from latentatlas.train.families import FAMILIES
from latentatlas.train.usage import SystemUsage, node_id

CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.json"  # a one-worker checkpoint's epoch metrics


class DamagedCheckpoint(ValueError):
    """A checkpoint that cannot be what a resume continues from (one line: which, why)."""


def load_checkpoint(directory: Path) -> dict:
    """A checkpoint's state: tensors and plain containers only (weights_only), with its
    epoch and a model state dict; anything else is a DamagedCheckpoint naming the file."""
    path = Path(directory) / CHECKPOINT_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # EOFError, RuntimeError, pickle.UnpicklingError, OSError, ...
        text = " ".join(str(e).split())[:200] or type(e).__name__
        raise DamagedCheckpoint(f"{path}: not a readable checkpoint (truncated or damaged: "
                                f"{text})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict) or \
            not isinstance(state.get("epoch"), int):
        raise DamagedCheckpoint(f"{path}: not a LatentAtlas checkpoint (a dict with 'model' "
                                "and 'epoch')")
    return state


class RayTrainSession:
    """A worker of a Ray Train worker group: rank, device, DDP and checkpoints are Train's."""

    def __init__(self):
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        self.wrap = ray.train.torch.prepare_model

    def restore(self) -> dict | None:
        checkpoint = ray.train.get_checkpoint()
        if not checkpoint:
            return None
        with checkpoint.as_directory() as d:
            return load_checkpoint(Path(d))

    def report(self, metrics: dict, directory: Path | None = None) -> None:
        ray.train.report(metrics, checkpoint=directory and ray.train.Checkpoint.from_directory(
            str(directory)))

    def epoch_ended(self, metrics: dict) -> None:
        """Ray Train hands reports on to Tune itself (TuneReportCallback)."""


class SingleWorkerSession:
    """The only worker of a training, in one process: Ray Train's controller and worker
    group cost ~10 s before a loop starts (bench/RESULTS.md), most of a small training.
    Checkpoints land in the run folder as Ray Train names them (checkpoint_<time>, written
    under a temporary name and renamed); a restarted or resumed run continues from the
    latest; the `keep` newest are kept, each with its epoch's metrics (a run resumed after
    its last epoch reports them again). `forward`, when given, gets every epoch's metrics
    once the epoch is logged and checkpointed (a Tune trial reports them to Tune, which may
    stop the trial right there)."""

    rank, world = 0, 1

    def __init__(self, folder: Path, keep: int, use_gpu: bool, forward=None):
        self.folder, self.keep, self.metrics, self.forward = folder, keep, {}, forward
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        for partial in folder.glob(".partial-checkpoint_*"):  # a killed run's half copy
            shutil.rmtree(partial)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device)

    def checkpoints(self) -> list[Path]:
        return sorted(p for p in self.folder.glob("checkpoint_*") if (p / CHECKPOINT_FILE).exists())

    def restore(self) -> dict | None:
        latest = self.checkpoints()[-1:]
        if not latest:
            return None
        if (latest[0] / METRICS_FILE).is_file():
            self.metrics = json.loads((latest[0] / METRICS_FILE).read_text())
        return load_checkpoint(latest[0])

    def report(self, metrics: dict, directory: Path | None = None) -> None:
        self.metrics = metrics
        if directory is None:
            return
        name = f"checkpoint_{datetime.now():%Y-%m-%d_%H-%M-%S.%f}"
        partial = self.folder / f".partial-{name}"
        need = sum(f.stat().st_size for f in Path(directory).iterdir())
        with writing(self.folder / name, need, partial=[partial]):
            shutil.copytree(directory, partial)
            (partial / METRICS_FILE).write_text(json.dumps(metrics))
            partial.rename(self.folder / name)
        for old in self.checkpoints()[:-self.keep]:
            shutil.rmtree(old)

    def epoch_ended(self, metrics: dict) -> None:
        if self.forward:
            self.forward(metrics)


def run_single_worker(config: dict, folder: str, keep: int, use_gpu: bool,
                      forward=None) -> dict:
    """A training's one worker, in this process: the loop's return value, its last metrics
    and the latest checkpoint's folder."""
    session = SingleWorkerSession(Path(folder), keep, use_gpu, forward)
    out = train_loop_per_worker(config, session)
    latest = session.checkpoints()[-1:]
    return {"return_value": out, "metrics": session.metrics,
            "checkpoint": str(latest[0]) if latest else None}


def train_loop_per_worker(config: dict, session=None) -> dict:
    session = session or RayTrainSession()
    cfg = ExperimentConfig.model_validate(config["experiment"])
    rank, world, device = session.rank, session.world, session.device
    torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker or 1)))
    data = {k: ray.get(v) if isinstance(v, ray.ObjectRef) else v
            for k, v in config["data"].items()}

    torch.manual_seed(cfg.seed)
    objective = FAMILIES[cfg.family].objective(cfg, data, device, rank, world)
    state, start_epoch, val_mse = session.restore(), 0, []
    if state:
        objective.load_state_dict(state)
        start_epoch = state["epoch"] + 1
        val_mse = list(state.get("val_mse", []))  # what `until_settled` reads, across resumes
    objective.prepare(state, start_epoch, wrap=session.wrap)

    logger = config.get("mlflow") and rank == 0 and RunStream(**config["mlflow"])
    usage = logger and SystemUsage(device)
    if logger and (node := node_id()):
        logger.client.set_tag(logger.run_id, "latentatlas.node_id", node)
    if logger and state:  # a restart or resume (the latest): the epochs after this one that
        # a lost worker logged are logged again (docs/how-to/cluster.md, Fault tolerance)
        logger.client.set_tag(logger.run_id, "latentatlas.continued_from_epoch", start_epoch)
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
            session.report(metrics)
            first = next(k for k, v in metrics.items() if not math.isfinite(v))
            return {"history": history, "stopped": f"non-finite loss in epoch {epoch + 1} "
                               f"({first}={metrics[first]})"}
        history.append(metrics)
        if "val/mse" in metrics:
            val_mse.append(metrics["val/mse"])
        if rank == 0:
            # Logged before it is checkpointed: a worker lost in between leaves an epoch that
            # its restart logs again (readers keep the last), never a checkpointed epoch that
            # no one logged (Ray Train registers a checkpoint after `report` returns).
            if logger:
                logger.log({**metrics, **usage.sample()}, epoch + 1)
                for key, image in objective.pictures(epoch).items():
                    logger.log_image(image, key, epoch + 1)
            with tempfile.TemporaryDirectory() as tmp:
                save_tensors({**objective.state_dict(), "epoch": epoch, "val_mse": val_mse},
                             Path(tmp) / CHECKPOINT_FILE)
                session.report(metrics, Path(tmp))
            print(f"[{cfg.name}] epoch {epoch + 1}/{cfg.train.epochs} {objective.line(metrics)} "
                  f"({metrics['images_per_s']:.0f} img/s)", flush=True)
            session.epoch_ended(metrics)
        else:
            session.report(metrics)
        # every rank reads the same reduced val/mse, so all stop after the same epoch
        if cfg.train.until_settled and has_settled(val_mse):
            break
    # what the worker ran on, as Ray's resources decided it (bench/gpu_check.py reads it)
    backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else None
    return {"history": history, "stopped": None, "device": str(device), "backend": backend,
            **objective.result()}
