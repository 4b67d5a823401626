"""`latentatlas regularisation`: the seed's pictures of how sampling shapes a latent space.
Two 3-D VAEs (784-256-64-16-3), trained with and without posterior sampling: a 3-D scatter
of test codes and prior samples decoded in slices of z2, and how far the codes sit from the
N(0, I) prior. A 2-D VAE: the paths of ten test images' codes (one per class) through its
first epoch. One parent run, the three train runs as its children; the 3-D models' test
codes are written as encodings under ./encodings/regularisation-<run id>/."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentatlas.cli import common_parser, guarded
from latentatlas.report import print_table

SLICES = [-1.5, 0.0, 1.5]  # z2 values of the prior-sample pictures
GRID = 8  # n x n samples per slice


@dataclass
class RegularisationOutcome:
    run_id: str
    metrics: dict  # regularity/* per model
    train_run_ids: dict[str, str]


def plans(dataset: str, data_path: str | None, limit: int | None,
          epochs: int) -> dict[str, dict]:
    """label -> experiment config mapping."""
    base = {"seed": 0, "data": {"name": dataset, "path": data_path, "limit": limit},
            "kl": {"policy": "balanced"},
            "train": {"epochs": epochs, "batch_size": 128, "cpus_per_worker": 0.5}}
    model = {"name": "dense_vae", "hidden": [256, 64, 16]}
    return {
        "3d-sampling": {**base, "name": "reg-3d-sampling",
                        "model": {**model, "latent_dim": 3, "sample_posterior": True}},
        "3d-no-sampling": {**base, "name": "reg-3d-no-sampling",
                           "model": {**model, "latent_dim": 3, "sample_posterior": False}},
        # One epoch is what the picture shows; trace it at 40 moments.
        "2d-trace": {**base, "name": "reg-2d-trace",
                     "model": {**model, "latent_dim": 2},
                     "train": {**base["train"], "epochs": 1, "trace_points": 40}},
    }


def measure_3d(model_uri: str, out, dataset: str, data_path: str | None, limit: int | None,
               points: int):
    """Encodes the first `points` test images into `out` (the platform's `encode`), then
    measures those codes' distance from the prior and draws the pictures: a 3-D scatter, and
    prior samples decoded on grids over (z0, z1) at each z2 in SLICES, side by side."""
    import torch

    from analysis.figures import scatter3d
    from analysis.regularity import aggregate_gaussian_kl, slice_grid
    from latentatlas import tracking
    from latentatlas.encode.pipeline import encode
    from latentatlas.images import image_grid

    enc = encode(model_uri, dataset, "test", out, data_path=data_path,
                 limit=min(points, limit or points), actors=1)
    rows = enc.arrays(["mu", "label"])
    codes = rows["mu"]
    model, _ = tracking.load_vae(model_uri)
    with torch.no_grad():
        grids = [image_grid(model.decode(torch.from_numpy(z).float()).numpy(), ncols=GRID)
                 for z in slice_grid(SLICES, GRID)]
    gap = np.full((grids[0].shape[0], 8, 3), 255, np.uint8)  # white between slices
    slices = np.concatenate([part for g in grids for part in (g, gap)][:-1], axis=1)
    metrics = {"regularity/aggregate_kl": aggregate_gaussian_kl(codes),
               "regularity/code_radius_p99": float(np.percentile(
                   np.linalg.norm(codes, axis=1), 99))}
    return metrics, scatter3d(codes, rows["label"], f"{len(codes)} test codes"), slices


def regularisation(dataset: str = "fashion-mnist", *, data_path: str | None = None,
                   limit: int | None = None,
                   epochs: int = 3, points: int = 5000, tracking_uri: str | None = None,
                   experiment: str | None = None, ray_address: str | None = None,
                   parent_run_id: str | None = None) -> RegularisationOutcome:
    from concurrent.futures import ThreadPoolExecutor

    import mlflow

    from latentatlas import tracking
    from latentatlas.config import validate
    from latentatlas.runtime import init_ray
    from latentatlas.train.runner import train

    uri = tracking.setup(tracking_uri, experiment)
    init_ray(ray_address)
    client = mlflow.MlflowClient(uri)
    parent = client.create_run(tracking.current_experiment().experiment_id,
                               run_name="regularisation",
                               tags={"latentatlas.kind": "regularisation",
                                     **({"mlflow.parentRunId": parent_run_id}
                                        if parent_run_id else {})})
    run_id = parent.info.run_id
    try:
        configs = {label: validate(raw, f"regularisation {label}")
                   for label, raw in plans(dataset, data_path, limit, epochs).items()}
        with ThreadPoolExecutor(len(configs)) as pool:
            futures = {label: pool.submit(train, cfg, tracking_uri=uri,
                                          experiment=experiment, parent_run_id=run_id)
                       for label, cfg in configs.items()}
            trained = {label: f.result() for label, f in futures.items()}
        metrics = {}
        for label in ("3d-sampling", "3d-no-sampling"):
            out = trained[label]
            m, scatter, slices = measure_3d(
                out.model_uri, Path("encodings") / f"regularisation-{run_id[:8]}" / label,
                dataset, data_path, limit, points)
            for key, value in m.items():
                client.log_metric(out.run_id, key, value)
                metrics[f"{key}_{label.removeprefix('3d-').replace('-', '_')}"] = value
            tracking.log_figure(scatter, "codes_3d.png", run_id=out.run_id)
            client.log_image(out.run_id, slices, "prior_slices.png")
        for key, value in metrics.items():
            client.log_metric(run_id, key, value)
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    return RegularisationOutcome(run_id, metrics,
                                 {label: out.run_id for label, out in trained.items()})


def parse(argv):
    p = argparse.ArgumentParser(prog="latentatlas regularisation", parents=[common_parser()],
                                description=__doc__)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-path", default=None, help="folder of the dataset's files")
    p.add_argument("--limit", type=int, default=None, help="first N items of each split")
    p.add_argument("--epochs", type=int, default=3, help="epochs of the 3-D models")
    p.add_argument("--points", type=int, default=5000, help="test codes in the 3-D scatter")
    return p.parse_args(argv)


def run(args) -> int:
    out = regularisation(args.dataset, data_path=args.data_path, limit=args.limit,
                         epochs=args.epochs, points=args.points, tracking_uri=args.tracking_uri,
                         experiment=args.experiment, ray_address=args.ray_address)
    print_table([{"measure": k, "value": v} for k, v in out.metrics.items()],
                title="regularisation")
    print(f"MLflow run id: {out.run_id}")
    return 0


def main(argv=None) -> int:
    args = parse(argv)
    return guarded(lambda: run(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
