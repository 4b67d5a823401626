"""Gradient ascent alone (no recoder): the cost of N Adam steps from the mean code on a
generator, and how far N steps get on its own samples and on real images, to choose the
main job's `range-ascent` size. Prints a markdown section for bench/RESULTS.md.

    python -m bench.ascent_cost runs:/<DCGAN_RUN>/model --tracking-uri sqlite:///mlflow.db
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from latentatlas.data import load_split
from latentatlas.inversion import invert_by_gradient, starting_codes
from latentatlas.model_store import load_model


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="bench.ascent_cost")
    p.add_argument("generator")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--images", type=int, default=128, help="own samples and real images each")
    p.add_argument("--steps", default="10,25,50,100,200")
    p.add_argument("--lr", type=float, default=0.05)
    args = p.parse_args(argv)

    import mlflow

    if args.tracking_uri:
        mlflow.set_tracking_uri(args.tracking_uri)
    model, _ = load_model(args.generator)
    model.eval().requires_grad_(False)
    n = args.images
    with torch.no_grad():
        codes = model.sample_codes(n, torch.Generator().manual_seed(0))
        own = (model.decode(codes).clamp(0, 1) * 255).round() / 255  # as the range sees them
    real = torch.from_numpy(load_split("fashion-mnist", "test", limit=n).as_float())
    print("| steps | s per 1000 image-steps | own-sample MSE | real MSE | real / own |")
    print("|---|---|---|---|---|")
    for steps in map(int, args.steps.split(",")):
        t0 = time.perf_counter()
        errors = {name: invert_by_gradient(model.decode, x, starting_codes(model, n, "cpu"),
                                           steps, args.lr)[1].numpy()
                  for name, x in (("own", own), ("real", real))}
        per_k = (time.perf_counter() - t0) / (2 * n * steps) * 1000
        o, r = float(np.mean(errors["own"])), float(np.mean(errors["real"]))
        print(f"| {steps} | {per_k:.3f} | {o:.4f} | {r:.4f} | {r / o:.2f} |", flush=True)
    print(f"\n{n} own samples and {n} real test images, batch {n}, Adam lr {args.lr} from the "
          f"mean code, torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
