"""`latentatlas run`: the main job. On the embedded default (local Ray, sqlite MLflow,
Fashion-MNIST) it trains the models and runs every analysis the platform has, then prints
what it measured beside the seed's claims."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from latentatlas.cli import common_parser, guarded
from latentatlas.report import print_table

CONFIGS = Path(__file__).resolve().parent / "configs"


@dataclass
class MainJob:
    """What the steps share: the parent MLflow run, trained models, and the report."""

    args: argparse.Namespace
    dataset: str
    parent_run_id: str
    started: float = field(default_factory=time.perf_counter)
    models: dict[str, object] = field(default_factory=dict)  # label -> TrainOutcome
    summary: list[dict] = field(default_factory=list)
    claims: list[dict] = field(default_factory=list)

    def step(self, text: str) -> None:
        print(f"[main {time.perf_counter() - self.started:5.0f}s] {text}", flush=True)


def pick_dataset(requested: str | None) -> str:
    """Fashion-MNIST when Debian's package is there; scikit-learn digits as a last resort."""
    from latentatlas.data import load_split
    from latentatlas.errors import UserError

    if requested:
        return requested
    try:
        load_split("fashion-mnist", "test", limit=1)
        return "fashion-mnist"
    except UserError as e:
        print(f"note: {e}; falling back to scikit-learn digits", flush=True)
        return "digits"


def training_plan(job: MainJob) -> list[tuple[str, str, list[str]]]:
    """(label, config file, overrides): two trainings of the seed's dense VAE and a conv VAE."""
    a = job.args
    # Half a CPU each: the three trainings run at once on two cores, hiding start-up.
    common = [f"data.name={job.dataset}", "train.cpus_per_worker=0.5"]
    if a.limit:
        common.append(f"data.limit={a.limit}")
    dense_epochs = a.epochs or 6
    conv_epochs = a.epochs or 2
    return [
        ("dense-s0", "fmnist_dense.yaml", [*common, "seed=0", f"train.epochs={dense_epochs}",
                                           "name=main-dense-s0"]),
        ("dense-s1", "fmnist_dense.yaml", [*common, "seed=1", f"train.epochs={dense_epochs}",
                                           "name=main-dense-s1"]),
        ("conv-s0", "fmnist_conv.yaml", [*common, "seed=0", f"train.epochs={conv_epochs}",
                                         "model.channels=[16, 32, 64]", "model.hidden=128",
                                         "name=main-conv-s0"]),
    ]


def train_models(job: MainJob) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from latentatlas.config import load_config
    from latentatlas.train.runner import train

    def one(label, config, overrides):
        cfg = load_config(CONFIGS / config, overrides)
        job.step(f"training {label}: {cfg.model.name}, latent {cfg.model.latent_dim}, "
                 f"{cfg.kl.policy}, {cfg.train.epochs} epochs")
        out = train(cfg, tracking_uri=job.args.tracking_uri, experiment=job.args.experiment,
                    parent_run_id=job.parent_run_id)
        job.step(f"trained {label}: val/mse={out.metrics['val/mse']:.4f} run {out.run_id}")
        return label, out

    plan = training_plan(job)
    with ThreadPoolExecutor(len(plan)) as pool:
        for label, out in pool.map(lambda p: one(*p), plan):
            job.models[label] = out
            job.summary.append({"step": f"train {label}", "run_id": out.run_id,
                                "val/mse": out.metrics.get("val/mse"),
                                "val/kl": out.metrics.get("val/kl")})


STEPS = [train_models]


def run(args) -> int:
    import mlflow
    from latentatlas import tracking
    from latentatlas.runtime import init_ray

    uri = tracking.setup(args.tracking_uri, args.experiment)
    init_ray(args.ray_address)
    client = mlflow.MlflowClient()
    exp = mlflow.get_experiment_by_name(os.environ["MLFLOW_EXPERIMENT_NAME"])
    parent = client.create_run(exp.experiment_id, run_name="main",
                               tags={"latentatlas.kind": "main"})
    job = MainJob(args, pick_dataset(args.dataset), parent.info.run_id)
    job.step(f"dataset {job.dataset}; MLflow {uri}; parent run {job.parent_run_id}")
    status = "FAILED"
    try:
        for step in STEPS:
            step(job)
        status = "FINISHED"
    finally:
        client.set_terminated(job.parent_run_id, status)
    print_table(job.summary, title="main job")
    if job.claims:
        print_table(job.claims, title="the seed's claims beside what was measured")
    minutes = (time.perf_counter() - job.started) / 60
    print(f"\nMLflow run id: {job.parent_run_id}  ({minutes:.1f} min)")
    if uri.startswith("sqlite:"):
        print(f"browse: mlflow ui --backend-store-uri {uri}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="latentatlas run", parents=[common_parser()],
                                description=__doc__)
    p.add_argument("--dataset", default=None,
                   help="dataset name (default: fashion-mnist, else digits)")
    p.add_argument("--limit", type=int, default=None,
                   help="use the first N images of each split (smoke runs)")
    p.add_argument("--epochs", type=int, default=None, help="epochs for every training")
    args = p.parse_args(argv)
    return guarded(lambda: run(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
