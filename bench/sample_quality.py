"""FID's feature extraction and the second stage's training, Ray against plain loops in this
process, same code on both sides:

- Features of 10k Fashion-MNIST test images in the classifier extractor's space (and of a
  few hundred in Inception's): images/s of `features.image_features` on its default path
  and on a Ray Data actor pool (end to end, and steady) vs the same network in a plain
  batched loop using every core. Target >= 0.8x at 10k images.
- Second-stage training on 60k 16-d codes: images(codes)/s of the Ray Train loop (one
  worker) vs the same objective's epochs in a plain loop, same threads, steady state.
  Target >= 0.9x.

    python bench/sample_quality.py [--images 10000] [--repeats 3] [--inception-images 200]
                                   [--width 1024] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import append_section, median  # noqa: E402
from gan_throughput import training_row  # noqa: E402

from latentatlas import features  # noqa: E402
from latentatlas.config import validate  # noqa: E402
from latentatlas.data import load_split  # noqa: E402
from latentatlas.images import to_unit_float  # noqa: E402
from latentatlas.inception import FIDInception  # noqa: E402
from latentatlas.models import Classifier, DenseVAE, share_model  # noqa: E402

CLASSIFIER = {"name": "classifier", "channels": [32, 64], "hidden": 128, "num_classes": 10}


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def feature_row(label: str, extractor: dict, net, images: np.ndarray, repeats: int,
                small: int, batch_size: int) -> str:
    """Plain batched loop vs `image_features` on its default path (in this process below
    its crossover) and forced onto a Ray Data actor pool, end to end and steady (the pool's
    fixed cost is the time of a call on `small` images). Medians, sides alternated."""
    torch.set_num_threads(os.cpu_count())
    n, actors = len(images), os.cpu_count()

    def plain():
        with torch.no_grad():
            return np.concatenate([net(to_unit_float(images[i:i + batch_size])).numpy()
                                   for i in range(0, n, batch_size)])

    expected = plain()
    np.testing.assert_allclose(features.image_features(extractor, n, images=images, actors=actors,
                                                      batch_size=batch_size),
                               expected, rtol=1e-4, atol=1e-4)
    runs = {"plain": [], "default": [], "ray": [], "ray_small": []}
    for _ in range(repeats):
        runs["plain"].append(seconds(plain))
        runs["default"].append(seconds(lambda: features.image_features(
            extractor, n, images=images, batch_size=batch_size)))
        runs["ray"].append(seconds(lambda: features.image_features(
            extractor, n, images=images, actors=actors, batch_size=batch_size)))
        runs["ray_small"].append(seconds(lambda: features.image_features(
            extractor, small, images=images[:small], actors=actors, batch_size=batch_size)))
        print(label, {k: round(v[-1], 2) for k, v in runs.items()}, flush=True)
    t = {k: median(v) for k, v in runs.items()}
    plain_rate = n / t["plain"]
    steady = (n - small) / max(t["ray"] - t["ray_small"], 1e-9)
    return (f"| {label} | {n} | {plain_rate:.0f} | {n / t['default']:.0f} "
            f"({t['plain'] / t['default']:.2f}) | {n / t['ray']:.0f} "
            f"({t['plain'] / t['ray']:.2f}) | {t['ray_small'] - small / steady:.1f} | "
            f"{steady:.0f} ({steady / plain_rate:.2f}) |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--inception-images", type=int, default=200,
                   help="images for the Inception row (about 8 img/s per core; 0: none)")
    args = p.parse_args()

    from latentatlas.runtime import init_ray

    init_ray()
    split = load_split("fashion-mnist", "test", limit=args.images)
    torch.manual_seed(0)
    clf = Classifier(split.shape, 10, CLASSIFIER["channels"], CLASSIFIER["hidden"]).eval()
    extractor = {"kind": "classifier", "model": share_model(
        clf, {"model": CLASSIFIER, "input_shape": list(split.shape)})}
    rows = [feature_row(f"classifier {CLASSIFIER['channels']} -> {CLASSIFIER['hidden']}",
                        extractor, clf.features, split.images, args.repeats,
                        args.images // 10, 500)]
    if args.inception_images:  # random weights: the speed does not depend on them
        net = FIDInception().eval()
        shared = {"kind": "inception", "state": net.state_dict()}
        images = split.images[:args.inception_images]
        rows.append(feature_row("inception (2048)", shared, net, images, 2,
                                len(images) // 5, 20))

    # The second stage learns a first stage's codes; throughput does not depend on their
    # values, so the codes of an untrained dense VAE stand in.
    train_split = load_split("fashion-mnist", "train")
    with torch.no_grad():
        first = DenseVAE(train_split.shape, 16, [256, 64, 32]).eval()
        codes = np.concatenate([first.encode(to_unit_float(train_split.images[i:i + 4096]))[0]
                                .numpy() for i in range(0, len(train_split), 4096)])
    cfg = validate({"name": "bench-s2", "model": {"name": "second_stage", "width": args.width,
                                                  "latent_dim": 16},
                    "second_stage": {"encoding": "bench"},
                    "train": {"epochs": args.epochs, "cpus_per_worker": args.threads,
                              "storage_path": "/tmp/latentatlas-bench",
                              "checkpoints_to_keep": 1}}, "bench")
    row = training_row(f"second stage width {args.width} x 3, {len(codes)} codes", cfg,
                       {"train": codes, "val": codes[:6000]}, args.epochs)
    append_section("Sample quality: FID features and second-stage training, Ray vs plain", [
        f"FID features of Fashion-MNIST test images: a plain batched loop ({os.cpu_count()} "
        "threads) vs `features.image_features` on its default path (in this process below "
        f"the crossover) and forced onto a Ray Data pool of {os.cpu_count()} actors (end to "
        "end, and steady: the fixed cost of a pool is measured on a tenth/fifth of the "
        "images). Ratios: Ray/plain, target >= 0.8 at 10k images.", "",
        "| extractor | images | plain img/s | default path img/s (ratio) | Ray Data end to end "
        "img/s (ratio) | Ray Data fixed cost s | Ray Data steady img/s (ratio) |",
        "|---|---|---|---|---|---|---|", *rows, "",
        "| objective | plain img/s (median, steady) | Ray Train img/s (median, steady) | "
        "ratio Ray/plain | Ray fit wall s |", "|---|---|---|---|---|", row, "",
        f"Second stage: {args.epochs} epochs each side (plain before and after Ray), batch "
        f"128, {args.threads} threads, one Ray Train worker. Target >= 0.9 at steady state."])

if __name__ == "__main__":
    main()
