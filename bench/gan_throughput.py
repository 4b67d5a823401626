"""Generators and their inverters, Ray against a plain loop in this process, same step code:

- GAN training (dcgan) and recoder training: images/s of the Ray Train loop (one worker) vs
  the same objective's epochs in a plain loop, same threads; steady state = epochs after
  the first. Target >= 0.9x.
- Gradient inversion of real images: images/s of `encode` with a recoder and `--refine`
  steps through Ray Data (actor pool) vs the same batch class in a plain batched loop using
  every core. Target >= 0.8x at 10k images.

    python bench/gan_throughput.py [--limit 10000] [--epochs 3] [--images 10000] [--refine 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import append_section, median  # noqa: E402

from latentatlas import model_store, tracking_store  # noqa: E402
from latentatlas.config import validate  # noqa: E402
from latentatlas.data import load_split  # noqa: E402
from latentatlas.encode.pipeline import InvertBatch, encode  # noqa: E402
from latentatlas.inversion import Refinement  # noqa: E402
from latentatlas.models import build_model, share_model  # noqa: E402
from latentatlas.train.families import FAMILIES  # noqa: E402
from latentatlas.train.family import load_data  # noqa: E402
from latentatlas.train.runner import run_trainer  # noqa: E402

DCGAN = {"name": "dcgan", "latent_dim": 64, "channels": [128, 64]}


def plain_epochs(cfg, data: dict, epochs: int) -> list[float]:
    """The objective's epochs in this process, no Ray: images/s per epoch."""
    torch.set_num_threads(int(cfg.train.cpus_per_worker))
    torch.manual_seed(cfg.seed)
    objective = FAMILIES[cfg.family].objective(cfg, data, torch.device("cpu"), 0, 1)
    objective.prepare(None, 0, wrap=lambda module: module)
    rates = []
    for epoch in range(epochs):
        torch.manual_seed(cfg.seed * 1_000_003 + epoch * 1009)
        start = time.perf_counter()
        images = objective.train_epoch(epoch)["images"]
        rates.append(images / (time.perf_counter() - start))
    return rates


def ray_epochs(cfg, data: dict) -> tuple[list[float], float]:
    start = time.perf_counter()
    result = run_trainer(cfg, data, f"bench-{time.time_ns()}", None)
    return [m["images_per_s"] for m in result.return_value["history"]], \
        time.perf_counter() - start


def training_row(label: str, cfg, data: dict, epochs: int) -> str:
    plain = plain_epochs(cfg, data, epochs)
    print(f"plain {label}: {[round(r) for r in plain]} img/s", flush=True)
    ray_rates, wall = ray_epochs(cfg, data)
    print(f"ray {label}: {[round(r) for r in ray_rates]} img/s", flush=True)
    plain += plain_epochs(cfg, data, epochs)  # before and after: drift shows
    steady_plain = median(plain[1:epochs] + plain[epochs + 1:])
    steady_ray = median(ray_rates[1:])
    return (f"| {label} | {steady_plain:.0f} | {steady_ray:.0f} | "
            f"{steady_ray / steady_plain:.3f} | {wall:.1f} |")


def inversion_rates(gan_payload, recoder_payload, split, refine: Refinement,
                    uris: tuple[str, str], repeats: int) -> tuple[float, float]:
    """(plain, Ray Data) images/s: medians of `repeats` runs each, alternated."""
    torch.set_num_threads(os.cpu_count())
    batch = InvertBatch(gan_payload, split, recoder_payload, refine)
    plain, ray_side = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(split), 1024):
            batch({"id": np.arange(i, min(i + 1024, len(split)))})
        plain.append(len(split) / (time.perf_counter() - start))
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            encode(uris[0], "fashion-mnist", "test", Path(tmp) / "enc", limit=len(split),
                   recoder_uri=uris[1], refine=refine, actors=os.cpu_count())
            ray_side.append(len(split) / (time.perf_counter() - start))
        print(f"inversion: plain {plain[-1]:.0f} img/s, Ray Data {ray_side[-1]:.0f} img/s",
              flush=True)
    return median(plain), median(ray_side)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--limit", type=int, default=10000, help="GAN training images")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--images", type=int, default=10000, help="images to invert")
    p.add_argument("--refine", type=int, default=10, help="gradient steps per image")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    from latentatlas.runtime import init_ray

    init_ray()
    common = {"storage_path": "/tmp/latentatlas-bench", "checkpoints_to_keep": 1,
              "epochs": args.epochs, "cpus_per_worker": args.threads}
    gan_cfg = validate({"name": "bench-gan", "data": {"name": "fashion-mnist",
                                                     "limit": args.limit},
                        "model": DCGAN, "train": {**common, "lr": 2e-4}}, "bench")
    train, val = load_data(gan_cfg)
    rows = ["| objective | plain img/s (median, steady) | Ray Train img/s (median, steady) | "
            "ratio Ray/plain | Ray fit wall s |", "|---|---|---|---|---|"]
    rows.append(training_row(f"dcgan {DCGAN['channels']}, {len(train)} images", gan_cfg,
                             {"train": train.images, "val": val.images[:2000]}, args.epochs))
    print(rows[-1], flush=True)

    torch.manual_seed(0)
    gan = build_model(gan_cfg.model, train.shape).eval()
    spec = {"model": gan_cfg.model.model_dump(), "input_shape": list(train.shape)}
    rec_cfg = validate({"name": "bench-recoder", "model": {"name": "recoder",
                                                           "latent_dim": gan.latent_dim},
                        "invert": {"generator": "bench", "steps_per_epoch": 100},
                        "train": common}, "bench")
    rows.append(training_row("recoder [32,64,128] on it, 100 steps x 128", rec_cfg,
                             {"generator": share_model(gan, spec)}, args.epochs))
    print(rows[-1], flush=True)

    # Inversion reads the models from MLflow like a user's `encode`.
    with tempfile.TemporaryDirectory() as tmp:
        tracking_store.setup(f"sqlite:///{tmp}/mlflow.db", "bench")
        recoder = build_model(rec_cfg.model, train.shape).eval()
        with mlflow.start_run():
            gan_uri = model_store.log_model(gan, spec["model"], train.shape).model_uri
        with mlflow.start_run():
            rec_uri = model_store.log_model(recoder, rec_cfg.model.model_dump(), train.shape,
                                         {"generator": gan_uri}).model_uri
        split = load_split("fashion-mnist", "test", limit=args.images)
        plain, on_ray = inversion_rates(
            share_model(gan, spec), share_model(recoder, {"model": rec_cfg.model.model_dump(),
                                                          "input_shape": list(train.shape)}),
            split, Refinement(args.refine), (gan_uri, rec_uri), args.repeats)
    append_section("Generators and inverters: Ray vs plain loops", [
        f"Training: {args.epochs} epochs each side (plain before and after Ray), batch 128, "
        f"{args.threads} threads, one Ray Train worker. Target: ratio >= 0.9 at steady state.",
        "", *rows, "",
        f"Gradient inversion of {len(split)} Fashion-MNIST test images (dcgan above, its "
        f"recoder's guess + {args.refine} Adam steps, batch 1024): plain loop "
        f"({os.cpu_count()} threads) {plain:.0f} img/s, `encode` on Ray Data "
        f"({os.cpu_count()} actors, end to end, Ray already up) {on_ray:.0f} img/s: ratio "
        f"{on_ray / plain:.3f} (median of {args.repeats}; target >= 0.8)."])


if __name__ == "__main__":
    main()
