"""`latentatlas range --generator MODEL --data DATASET:SPLIT --support-from ENCODING`: where a
generator cannot reach. Inverts and regenerates its own samples, the real images and a
support set chosen in a reference latent space (a VAE's encoding of the same images), and
shows, per sector of that space, the share of real images it reaches against the share of
its samples that land there; precision / recall / density / coverage in that space.
A GAN inverts with `--recoder` and/or `--refine STEPS` (without a recoder, gradient ascent
from the mean code is the headline: the seed's double check); a VAE with its own encoder; a
user's generator is `--generator module.path:function` (see the README)."""

from __future__ import annotations

import argparse
import sys

from jobs.options import add_sector_args
from latentatlas.command import common_parser, guarded
from latentatlas.report import print_metrics


def parse(argv):
    p = argparse.ArgumentParser(prog="latentatlas range", parents=[common_parser()],
                                description=__doc__)
    p.add_argument("--generator", required=True,
                   help="runs:/<id>/model (a GAN or VAE) or module.path:function")
    p.add_argument("--recoder", default=None, help="a recoder of the generator (MLflow URI)")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="gradient-inversion steps after the first guess")
    p.add_argument("--refine-lr", type=float, default=0.05, help="Adam's learning rate of --refine")
    p.add_argument("--refine-loss", default="mse", help="mse, l1 or bce (pixel loss of --refine)")
    p.add_argument("--data", required=True, help="dataset:split of the real images")
    p.add_argument("--data-path", default=None, help="folder of the dataset's files")
    p.add_argument("--limit", type=int, default=None,
                   help="the first N images of the split (as the --support-from encoding has)")
    p.add_argument("--real-images", type=int, default=None, metavar="N",
                   help="invert only the first N real images, and the support set (default: "
                        "all)")
    p.add_argument("--support-from", required=True, metavar="ENCODING",
                   help="a VAE's encoding of the same images: the reference latent space")
    p.add_argument("--exclude", default=None, help="attr=value rows the support set skips")
    p.add_argument("--size", type=int, default=None, help="support set size")
    p.add_argument("--samples", type=int, default=2000, help="the generator's own samples")
    add_sector_args(p, encoding=False)
    p.add_argument("--quantile", type=float, default=0.95,
                   help="reach threshold: this quantile of the error on own samples")
    p.add_argument("--seed", type=int, default=0,
                   help="draws the own samples, the support set and the random real sets")
    p.add_argument("--actors", type=int, default=None,
                   help="Ray Data actors (default: in this process when small)")
    p.add_argument("--use-gpu", action="store_true", help="one GPU per actor")
    return p.parse_args(argv)


def regeneration_lines(m: dict, first_guess: str, steps: int) -> list[str]:
    """The headline first (a recoder's or own encoder's guess alone, as the seed's numbers
    are recoder-only regenerations; without one, gradient ascent from the mean code), the
    refined errors beside a guess when there was refinement; each with the support set
    against random real sets of its size."""
    from analysis.generative_range import inversions, regeneration

    size, draws = int(m["range/support_size"]), int(m["range/random_draws"])
    lines = []
    for label, kind in inversions(first_guess, steps):
        r = regeneration(m, kind)
        # no random set reached the support set's mean: p is below the test's resolution
        p = r["random_p"]
        shown_p = f"p<{1 / draws:.2g}" if p == 0 else f"p={p:.3f}"
        lines += [f"{label}: regeneration MSE own samples {r['mse_generated']:.4f}, real "
                  f"{r['mse_real']:.4f} (x{r['ratio_real']:.2f}), support set "
                  f"{r['mse_support']:.4f} (x{r['ratio_support']:.2f})",
                  f"  support set {r['mse_support']:.4f} vs random real sets of {size}: 95% "
                  f"of their means in [{r['random_lo']:.4f}, {r['random_hi']:.4f}], {shown_p}"]
    return lines


def run(args) -> int:
    from jobs import steps
    from latentatlas.data import parse_data_address
    from latentatlas.inversion import Refinement
    from latentatlas.report import Progress
    from latentatlas.tracking import Recorder

    refine = Refinement(args.refine, args.refine_lr, args.refine_loss)
    recorder = Recorder(args.tracking_uri, args.experiment)
    progress = Progress("range")
    progress(f"inverting {args.samples} own samples and {args.data} with {args.generator}")
    run_id, r = steps.generative_range(
        recorder, args.generator, parse_data_address(args.data), args.support_from,
        recoder=args.recoder, refine=refine, data_path=args.data_path, limit=args.limit,
        real_images=args.real_images, samples=args.samples, k=args.k,
        threshold=args.threshold, size=args.size, exclude=args.exclude,
        quantile=args.quantile, seed=args.seed, actors=args.actors, use_gpu=args.use_gpu)
    m = r.metrics
    for line in regeneration_lines(m, r.first_guess, args.refine):
        print(line)
    print(f"reached (error <= {r.threshold:.4g}, the {args.quantile:g} quantile on own "
          f"samples): {m['range/coverage']:.1%} of real images; missed sectors "
          f"{len(r.missed)} of {m['range/judged_sectors']} judged: {r.missed.tolist()[:20]}")
    print_metrics(m, "range")
    print(f"MLflow run id: {run_id}")
    return 0


def main(argv=None) -> int:
    args = parse(argv)
    return guarded(lambda: run(args), args)


if __name__ == "__main__":
    sys.exit(main())
