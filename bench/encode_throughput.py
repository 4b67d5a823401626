"""Images/s of `encode` (Ray Data actor pool, Parquet out) against a plain torch.no_grad()
loop over the same model and data in this process; Ray start-up reported separately.

Two figures per model: end to end (one `encode` call on all images, everything included)
and steady state, which leaves out the per-call fixed cost (actor start, model hand-over,
pipeline start, publishing): the fixed cost is the time of a call on `--small` images, and
steady images/s = (images - small) / (time(images) - time(small)).

    python bench/encode_throughput.py [--images 60000] [--small 2048] [--repeats 3]
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

from latentatlas import model_store, tracking_store  # noqa: E402
from latentatlas.config import ExperimentConfig  # noqa: E402
from latentatlas.data import load_split  # noqa: E402
from latentatlas.encode.pipeline import encode  # noqa: E402
from latentatlas.images import to_unit_float  # noqa: E402
from latentatlas.models import build_model  # noqa: E402

MODELS = {
    "dense 784-256-64-32-16": {"name": "dense_vae", "hidden": [256, 64, 32], "latent_dim": 16},
    "conv [32,64,128]": {"name": "conv_vae", "channels": [32, 64, 128], "latent_dim": 16},
}


@torch.no_grad()
def plain(model, images, batch_size: int) -> float:
    """Seconds to encode `images` in this process, with the same conversion as `encode`."""
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        model.encode(to_unit_float(images[i:i + batch_size]))
    return time.perf_counter() - start


def timed_encode(uri: str, out: Path, images: int, batch_size: int) -> float:
    start = time.perf_counter()
    encode(uri, "fashion-mnist", "train", out, limit=images, batch_size=batch_size, actors=2)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=60000)
    p.add_argument("--small", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=1024)
    args = p.parse_args()

    from latentatlas.runtime import init_ray

    t0 = time.perf_counter()
    init_ray()
    ray_start = time.perf_counter() - t0
    rows = ["| model | plain img/s | encode img/s, end to end | ratio | fixed cost per call s "
            "| encode img/s, steady | ratio steady |", "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        tracking_store.setup(f"sqlite:///{tmp}/mlflow.db", "bench")
        split = load_split("fashion-mnist", "train", limit=args.images)
        torch.set_num_threads(2)
        for label, spec in MODELS.items():
            cfg = ExperimentConfig.model_validate({"model": spec}).model
            model = build_model(cfg, split.shape).eval()
            with mlflow.start_run() as run:
                model_store.log_model(model, cfg.model_dump(), split.shape)
            uri = f"runs:/{run.info.run_id}/model"
            peer = median(plain(model, split.images, args.batch_size)
                          for _ in range(args.repeats))
            runs = [(timed_encode(uri, Path(tmp) / f"{run.info.run_id}-s{i}", args.small,
                                  args.batch_size),
                     timed_encode(uri, Path(tmp) / f"{run.info.run_id}-{i}", args.images,
                                  args.batch_size)) for i in range(args.repeats)]
            fixed, whole = median(r[0] for r in runs), median(r[1] for r in runs)
            steady = median((args.images - args.small) / (w - s) for s, w in runs)
            plain_rate = args.images / peer
            rows.append(f"| {label} | {plain_rate:.0f} | {args.images / whole:.0f} | "
                        f"{args.images / whole / plain_rate:.3f} | {fixed:.1f} | {steady:.0f} "
                        f"| {steady / plain_rate:.3f} |")
    append_section("Encode throughput: Ray Data encode vs plain torch.no_grad loop", [
        f"{args.images} Fashion-MNIST images, batch {args.batch_size}, medians of "
        f"{args.repeats}. Ray Data: 2 actors (1 thread each), includes writing Parquet; plain "
        "loop: 2 threads, no output. Fixed cost = a call on "
        f"{args.small} images; steady = the images beyond those over the extra time. "
        "Target: ratio >= 0.9.",
        f"Ray start-up (ray.init, not counted): {ray_start:.1f} s.", "", *rows])


if __name__ == "__main__":
    main()
