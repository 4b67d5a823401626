"""Images/s of the Ray Train loop (one worker) against a plain PyTorch loop in this
process, same model, same data, same step code (`train_epoch`), same thread count.
Steady state = epochs after the first; start-up overhead reported separately.

    python bench/train_throughput.py [--epochs 4] [--limit N] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import append_section, median  # noqa: E402

from latentatlas.config import validate  # noqa: E402
from latentatlas.losses import make_policy  # noqa: E402
from latentatlas.models import build_model  # noqa: E402
from latentatlas.train.common import epoch_batches  # noqa: E402
from latentatlas.train.family import load_data  # noqa: E402
from latentatlas.train.runner import run_trainer  # noqa: E402
from latentatlas.train.vae import train_epoch  # noqa: E402

MODELS = {
    "dense 784-256-64-32-16": {"name": "dense_vae", "hidden": [256, 64, 32], "latent_dim": 16},
    "conv [32,64,128]": {"name": "conv_vae", "channels": [32, 64, 128], "latent_dim": 16},
}


def plain_loop(cfg, images, epochs: int) -> list[float]:
    torch.set_num_threads(int(cfg.train.cpus_per_worker))
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, images.shape[1:])
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    policy = make_policy(cfg.kl.policy)
    rates = []
    for epoch in range(epochs):
        batches = epoch_batches(len(images), epoch, cfg.seed, 0, 1, cfg.train.batch_size)
        start = time.perf_counter()
        sums = train_epoch(model, optimizer, policy, images, batches, torch.device("cpu"))
        rates.append(sums[3] / (time.perf_counter() - start))
    return rates


def ray_loop(cfg, train_images, val_images, name: str) -> tuple[list[float], float]:
    start = time.perf_counter()
    result = run_trainer(cfg, {"train": train_images, "val": val_images}, name, None)
    wall = time.perf_counter() - start
    rates = [m["images_per_s"] for m in result.return_value["history"]]
    return rates, wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--limit", type=int, default=None, help="training images (default: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dataset", default="fashion-mnist")
    args = p.parse_args()

    import ray

    from latentatlas.runtime import init_ray

    t0 = time.perf_counter()
    init_ray()
    ray_start = time.perf_counter() - t0
    rows = ["| model | images | plain img/s (median, steady) | Ray Train img/s (median, "
            "steady) | ratio Ray/plain | Ray fit wall s | start-up overhead s |",
            "|---|---|---|---|---|---|---|"]
    for label, model in MODELS.items():
        cfg = validate({"name": "bench", "data": {"name": args.dataset, "limit": args.limit},
                        "model": model, "kl": {"policy": "balanced"},
                        "train": {"epochs": args.epochs, "cpus_per_worker": args.threads,
                                  "checkpoints_to_keep": 1,
                                  "storage_path": "/tmp/latentatlas-bench"}}, "bench")
        train, val = load_data(cfg)
        val_images = val.images[:2000]
        plain = plain_loop(cfg, train.images, args.epochs)
        print(f"plain {label}: {[round(r) for r in plain]} img/s", flush=True)
        ray_rates, wall = ray_loop(cfg, train.images, val_images, f"bench-{time.time_ns()}")
        plain += plain_loop(cfg, train.images, args.epochs)  # before and after: drift shows
        steady_plain = median(plain[1:args.epochs] + plain[args.epochs + 1:])
        steady_ray = median(ray_rates[1:])
        train_seconds = sum(len(train) / r for r in ray_rates)
        rows.append(f"| {label} | {len(train)} | {steady_plain:.0f} | {steady_ray:.0f} | "
                    f"{steady_ray / steady_plain:.3f} | {wall:.1f} | "
                    f"{wall - train_seconds:.1f} |")
        print(rows[-1], flush=True)
    append_section("Training throughput: Ray Train (1 worker) vs plain PyTorch loop", [
        f"{args.epochs} epochs each, batch 128, {args.threads} threads for both, "
        f"dataset {args.dataset}. Target: ratio >= 0.9 at steady state.",
        f"Ray start-up (ray.init, local, dashboard on): {ray_start:.1f} s. The start-up "
        "overhead column is the fit's wall time minus its training time (worker group "
        "start, per-epoch validation and checkpoints).", "", *rows])
    ray.shutdown()


if __name__ == "__main__":
    main()
