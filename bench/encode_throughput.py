"""Images/s of `encode` (Ray Data actor pool, Parquet out) against a plain torch.no_grad()
loop over the same model and data in this process; Ray start-up reported separately.

    python bench/encode_throughput.py [--images 60000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mlflow  # noqa: E402
import torch  # noqa: E402
from common import append_section, median  # noqa: E402

from latentatlas import tracking  # noqa: E402
from latentatlas.config import DenseVAEConfig  # noqa: E402
from latentatlas.data import load_split  # noqa: E402
from latentatlas.encode.pipeline import encode  # noqa: E402
from latentatlas.models import build_model  # noqa: E402


@torch.no_grad()
def plain(model, images, batch_size: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(images[i:i + batch_size]).float().div_(255)
        model.encode(x)
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=60000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=1024)
    args = p.parse_args()

    from latentatlas.runtime import init_ray

    t0 = time.perf_counter()
    init_ray()
    ray_start = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        tracking.setup(f"sqlite:///{tmp}/mlflow.db", "bench")
        split = load_split("fashion-mnist", "train", limit=args.images)
        cfg = DenseVAEConfig()
        model = build_model(cfg, split.shape).eval()
        with mlflow.start_run() as run:
            tracking.log_vae(model, cfg.model_dump(), split.shape)
        uri = f"runs:/{run.info.run_id}/model"
        torch.set_num_threads(2)
        plain_rates = [plain(model, split.images, args.batch_size)
                       for _ in range(args.repeats)]
        ray_rates = []
        for i in range(args.repeats):
            start = time.perf_counter()
            encode(uri, "fashion-mnist", "train", Path(tmp) / f"enc{i}", limit=args.images,
                   batch_size=args.batch_size, actors=2)
            ray_rates.append(args.images / (time.perf_counter() - start))
    ours, peer = median(ray_rates), median(plain_rates)
    append_section("Encode throughput: Ray Data encode vs plain torch.no_grad loop", [
        f"{args.images} Fashion-MNIST images, dense 784-256-64-32-16 encoder, batch "
        f"{args.batch_size}; medians of {args.repeats}. Ray Data: 2 actors (1 thread each), "
        "includes writing Parquet and the pipeline's own start; plain loop: 2 threads, no "
        "output. Target: ratio >= 0.9.",
        f"Ray start-up (ray.init, not counted): {ray_start:.1f} s.", "",
        "| path | images/s (median) |", "|---|---|",
        f"| Ray Data encode | {ours:.0f} |", f"| plain loop | {peer:.0f} |", "",
        f"Ratio encode/plain = {ours / peer:.3f}."])


if __name__ == "__main__":
    main()
