"""`latentatlas range --generator MODEL --data DATASET:SPLIT --support-from ENCODING`: where a
generator cannot reach. Inverts and regenerates its own samples, the real images and a
support set chosen in a reference latent space (a VAE's encoding of the same images), and
shows, per sector of that space, the share of real images it reaches against the share of
its samples that land there; precision / recall / density / coverage in that space.
A GAN inverts with `--recoder` and/or `--refine STEPS` (without a recoder, gradient ascent
from the mean code is the headline: the seed's double check); a VAE with its own encoder; a
user's generator is `--generator module.path:function` (see the README)."""

from __future__ import annotations

import sys

from jobs.options import add_options, options_of
from latentatlas.command import guarded, open_recorder, verb_parser
from latentatlas.report import print_metrics

FLAGS = {"refine_steps": "--refine"}


def parse(argv):
    from jobs.kinds.range import RangeOptions

    p = verb_parser("latentatlas range", __doc__)
    p.add_argument("--generator", required=True,
                   help="runs:/<id>/model (a GAN or VAE) or module.path:function")
    p.add_argument("--recoder", default=None, help="a recoder of the generator (MLflow URI)")
    p.add_argument("--data", required=True, help="dataset:split of the real images")
    p.add_argument("--data-path", default=None, help="folder of the dataset's files")
    p.add_argument("--limit", type=int, default=None,
                   help="the first N images of the split (as the --support-from encoding has)")
    p.add_argument("--support-from", required=True, metavar="ENCODING",
                   help="a VAE's encoding of the same images: the reference latent space")
    add_options(p, RangeOptions, flags=FLAGS)
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
    from jobs.kinds.range import RangeOptions
    from latentatlas.data import parse_data_address
    from latentatlas.report import Progress

    o = options_of(args, RangeOptions, flags=FLAGS)
    recorder = open_recorder(args)
    progress = Progress("range")
    progress(f"inverting {o.samples} own samples and {args.data} with {args.generator}")
    run_id, r = steps.generative_range(
        recorder, args.generator, parse_data_address(args.data), args.support_from,
        recoder=args.recoder, refine=o.refinement(), data_path=args.data_path,
        limit=args.limit, actors=args.actors, use_gpu=args.use_gpu, **o.measuring())
    m = r.metrics
    for line in regeneration_lines(m, r.first_guess, o.refine_steps):
        print(line)
    print(f"reached (error <= {r.threshold:.4g}, the {o.quantile:g} quantile on own "
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
