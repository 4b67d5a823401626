"""What only a GPU shows, each beside a plain PyTorch peer on the same device in the same run
(issue #43, part 5):

- training: Ray Train with one GPU worker (the worker group's path, `max_failures` 1)
  against a plain loop of the same step code (`train_epoch`), images/s at steady state
  (epochs after the first), target >= 0.95; the device and DDP backend the worker got from
  Ray's resources;
- encode: Ray Data with one GPU actor (Parquet written) against a plain `no_grad` loop;
- gradient inversion: `encode` of a DCGAN by gradient steps alone, on a GPU actor, against
  a plain Adam loop on the codes;
- FID features: the classifier-features pass on a GPU actor against a plain forward.

It needs torch, Ray, MLflow (skinny) and pydantic (../shared/PLATFORM-NOTES.md, "A GPU check
on a machine without Ray", says what to copy along), and makes its own data: images of
random blobs written as IDX files (throughput does not depend on what is drawn). Without a
GPU it runs as its own dry run on the CPU at a small size, and says so in its section.

    python bench/gpu_check.py [--images 30000] [--epochs 3] [--out bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import gzip
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import append_section, median  # noqa: E402

CONV = {"name": "conv_vae", "channels": [32, 64, 128], "latent_dim": 16}
DCGAN = {"name": "dcgan", "latent_dim": 64, "channels": [128, 64]}
CLASSIFIER = {"name": "classifier", "channels": [32, 64], "hidden": 128, "num_classes": 10}


def blobs(n: int, seed: int) -> np.ndarray:
    """n 28x28 uint8 images of one Gaussian blob each, at random places and sizes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    cy, cx = rng.uniform(6, 22, (2, n, 1, 1))
    r = rng.uniform(2, 6, (n, 1, 1))
    return (255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))).astype(np.uint8)


def write_idx(folder: Path, prefix: str, images: np.ndarray) -> None:
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(images), 28, 28) + images.tobytes())
    labels = (np.arange(len(images)) % 10).astype(np.uint8)
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, len(labels)) + labels.tobytes())


def timed(fn) -> float:
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def steady(n: int, small: int, calls: list[tuple[float, float]], peer: float) -> str:
    """Images/s beyond a `small`-image call (the fixed cost of a call left out) and its ratio
    to the plain side, from (small call, whole call) timings; where the whole call is not
    reliably the longer one, the fixed cost dominates at this size and there is no figure."""
    extra = median(whole - part for part, whole in calls)
    if extra <= 0.05 * median(whole for _, whole in calls):
        return "steady: n/a (the fixed cost dominates at this size)"
    rate = (n - small) / extra
    return f"steady {rate:.0f} img/s, {rate * peer / n:.3f}"


def training(cfg, images, val, device, epochs: int) -> dict:
    """Steady images/s of the plain loop (before and after) and of Ray Train, and what the
    worker ran on."""
    from latentatlas.losses import make_policy
    from latentatlas.models import build_model
    from latentatlas.train.common import epoch_batches
    from latentatlas.train.runner import run_trainer
    from latentatlas.train.vae import train_epoch

    def plain() -> list[float]:
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, images.shape[1:]).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
        policy, rates = make_policy(cfg.kl.policy), []
        for epoch in range(epochs):
            batches = epoch_batches(len(images), epoch, cfg.seed, 0, 1, cfg.train.batch_size)
            seconds = timed(lambda b=batches: train_epoch(model, optimizer, policy, images, b,
                                                          device))
            rates.append(len(images) / seconds)
        return rates

    before = plain()
    result = run_trainer(cfg, {"train": images, "val": val}, f"gpu-check-{time.time_ns()}", None)
    after = plain()
    ray_rates = [m["images_per_s"] for m in result.return_value["history"]]
    steady_plain = median(before[1:] + after[1:])
    steady_ray = median(ray_rates[1:])
    return {"plain": steady_plain, "ray": steady_ray, "ratio": steady_ray / steady_plain,
            "device": result.return_value.get("device"),
            "backend": result.return_value.get("backend")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=30000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="append the section to this file instead of "
                                               "bench/RESULTS.md")
    args = p.parse_args()
    gpu = torch.cuda.is_available()
    if not gpu:  # the dry run: every path once, at a size a CPU finishes in a minute or two
        args.images, args.epochs, args.repeats = min(args.images, 2000), 2, 1
    device = torch.device("cuda" if gpu else "cpu")
    card = torch.cuda.get_device_name(0) if gpu else "no GPU: a dry run on the CPU"

    import mlflow

    from latentatlas import model_store, tracking_store
    from latentatlas.config import ExperimentConfig, validate
    from latentatlas.encode.pipeline import encode
    from latentatlas.features import ClassifierFeatures, image_features
    from latentatlas.images import to_unit_float
    from latentatlas.inversion import Refinement
    from latentatlas.models import build_model, share_model
    from latentatlas.runtime import init_ray

    init_ray()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "blobs"
        data.mkdir()
        train_images, test_images = blobs(args.images, 0), blobs(max(2000, args.images // 6), 1)
        write_idx(data, "train", train_images)
        write_idx(data, "t10k", test_images)
        tracking_store.setup(f"sqlite:///{tmp}/mlflow.db", "gpu-check")

        # training: one Ray Train worker on the device against the plain loop there
        cfg = validate({"name": "gpu-check", "model": CONV, "kl": {"policy": "balanced"},
                        "train": {"epochs": args.epochs, "batch_size": 128,
                                  "use_gpu": gpu, "max_failures": 1, "cpus_per_worker": 2,
                                  "checkpoints_to_keep": 1,
                                  "storage_path": str(tmp / "ray-results")}}, "gpu-check")
        images = train_images[:, None]
        t = training(cfg, images, test_images[:, None], device, args.epochs)
        rows.append(f"| training, conv VAE, Ray Train 1 worker vs plain loop | "
                    f"{t['plain']:.0f} img/s | {t['ray']:.0f} img/s | {t['ratio']:.3f} | "
                    f">= 0.95 | worker: {t['device']}, {t['backend']} |")
        print(rows[-1], flush=True)

        def logged(spec: dict) -> tuple[str, torch.nn.Module]:
            model_cfg = ExperimentConfig.model_validate({"model": spec}).model
            model = build_model(model_cfg, (1, 28, 28)).eval()
            with mlflow.start_run() as run:
                model_store.log_model(model, model_cfg.model_dump(), (1, 28, 28))
            return f"runs:/{run.info.run_id}/model", model

        # encode: Ray Data with one actor on the device against a plain no_grad loop
        uri, vae = logged(CONV)
        vae = vae.to(device)
        batch = 1024

        @torch.no_grad()
        def plain_encode():
            for i in range(0, len(train_images), batch):
                vae.encode(to_unit_float(train_images[i:i + batch, None], device))

        def encoded(i: int, limit: int | None) -> float:
            return timed(lambda: encode(uri, "fashion-mnist", "train", tmp / f"enc-{i}-{limit}",
                                        data_path=str(data), limit=limit, batch_size=batch,
                                        actors=1, use_gpu=gpu))

        n, small = len(train_images), min(2048, len(train_images) // 4)
        peer = median(timed(plain_encode) for _ in range(args.repeats))
        calls = [(encoded(i, small), encoded(i, None)) for i in range(args.repeats)]
        ours = median(whole for _, whole in calls)
        rows.append(f"| encode, conv VAE, Ray Data 1 actor (Parquet out) vs plain no_grad | "
                    f"{n / peer:.0f} img/s | {n / ours:.0f} img/s end to end | "
                    f"{peer / ours:.3f}; {steady(n, small, calls, peer)} | | steady: the "
                    f"images beyond a {small}-image call over the extra time |")
        print(rows[-1], flush=True)

        # gradient inversion: 20 Adam steps per image from the mean code, both sides
        gan_uri, gan = logged(DCGAN)
        gan = gan.to(device)
        steps, inverted = 20, test_images[:, None]

        def plain_inversion():
            for i in range(0, len(inverted), batch):
                x = to_unit_float(inverted[i:i + batch], device)
                code = torch.zeros(len(x), gan.latent_dim, device=device, requires_grad=True)
                optimizer = torch.optim.Adam([code], lr=0.05)
                for _ in range(steps):
                    optimizer.zero_grad(set_to_none=True)
                    (gan.decode(code) - x).pow(2).flatten(1).mean(1).sum().backward()
                    optimizer.step()

        peer = median(timed(plain_inversion) for _ in range(args.repeats))
        ours = median(timed(lambda i=i: encode(
            gan_uri, "fashion-mnist", "test", tmp / f"inv-{i}", data_path=str(data),
            batch_size=batch, actors=1, use_gpu=gpu, refine=Refinement(steps=steps)))
            for i in range(args.repeats))
        n = len(inverted)
        rows.append(f"| gradient inversion, DCGAN, {steps} Adam steps: encode on 1 actor vs "
                    f"plain loop | {n / peer:.0f} img/s | {n / ours:.0f} img/s | "
                    f"{peer / ours:.3f} | | end to end |")
        print(rows[-1], flush=True)

        # FID features: the classifier-features pass on one actor against a plain forward
        _, classifier = logged(CLASSIFIER)
        net = ClassifierFeatures(classifier.to(device)).eval()
        extractor = {"kind": "classifier",
                     "model": share_model(classifier.cpu(), {"model": CLASSIFIER,
                                                             "input_shape": [1, 28, 28]})}

        @torch.no_grad()
        def plain_features():
            for i in range(0, len(train_images), 500):
                net(to_unit_float(train_images[i:i + 500, None], device)).cpu()

        def featured(rows_: int) -> float:
            return timed(lambda: image_features(extractor, rows_, images=train_images[:, None],
                                                actors=1, use_gpu=gpu, here=False))

        peer = median(timed(plain_features) for _ in range(args.repeats))
        calls = [(featured(small), featured(n)) for _ in range(args.repeats)]
        ours = median(whole for _, whole in calls)
        rows.append(f"| FID features, classifier: Ray Data 1 actor vs plain forward | "
                    f"{n / peer:.0f} img/s | {n / ours:.0f} img/s end to end | "
                    f"{peer / ours:.3f}; {steady(n, small, calls, peer)} | | as encode |")
        print(rows[-1], flush=True)

    lines = [f"Device: {card}. {args.images} training images of random blobs (28x28), "
             f"{args.epochs} epochs, medians of {args.repeats}; each row's two sides ran on "
             "the same device in this process. Ratio = ours / plain (throughput).", "",
             "| what | plain | LatentAtlas | ratio | target | notes |",
             "| --- | --- | --- | --- | --- | --- |", *rows]
    if args.out:  # a lent GPU machine writes its own file, brought back beside RESULTS.md
        Path(args.out).write_text("\n".join(["## GPU check", "", *lines]) + "\n")
        print("\n".join(lines))
    else:
        append_section("GPU check (bench/gpu_check.py)" + ("" if gpu else ": dry run on CPU"),
                       lines)


if __name__ == "__main__":
    main()
