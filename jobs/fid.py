"""`latentatlas fid --model URI --data DATASET:SPLIT`: FID and KID of a generator's samples
against real images, in named feature spaces (`classifier-<dataset>`, trained by the
platform: `latentatlas train jobs/configs/fmnist_classifier.yaml`; `inception` from a local
weights file), and the variance loss of the samples. Samplers: the prior; for a VAE a
Gaussian mixture fitted to its codes of the real images (`--gmm K`); with `--second-stage
URI` the second stage's samples: raw (`two_stage`), and renormalised to the first stage's
spread by the authors' one scale (`two_stage_renorm_authors`) and by a scale per variable
(`two_stage_renorm_variable`). Instead of a model, `--images` scores images (a folder of
PNG / JPEG files, a .npy / .npz array); instead of the data, `--ref-stats` reads
pytorch-fid's statistics (.npz of mu, sigma), which `--save-ref-stats` writes."""

from __future__ import annotations

import sys

from jobs.options import add_options, options_of
from latentatlas.command import guarded, open_recorder, verb_parser
from latentatlas.report import print_table

DEFAULT_DATA = "fashion-mnist:test"


FLAGS = {"gmm_components": "--gmm"}


def parse(argv):
    from jobs.kinds.fid import FidOptions

    p = verb_parser("latentatlas fid", __doc__)
    generated = p.add_mutually_exclusive_group()
    generated.add_argument("--model", default=None, help="runs:/<id>/model (a VAE or a GAN)")
    generated.add_argument("--images", default=None, metavar="PATH",
                           help="images to score instead of a model's samples: a folder of "
                                "PNG / JPEG files (file-name order) or a .npy / .npz array "
                                "(uint8, or floats in [0, 1]; N,H,W / N,H,W,C / N,C,H,W)")
    real = p.add_mutually_exclusive_group()
    real.add_argument("--data", default=None,
                      help=f"dataset:split of real images (default {DEFAULT_DATA})")
    real.add_argument("--ref-stats", default=None, metavar="FILE",
                      help="the real side as statistics: a .npz of mu and sigma (pytorch-fid's "
                           "format, or --save-ref-stats'), in the one --extractor's features; "
                           "FID only (KID needs the features)")
    p.add_argument("--save-ref-stats", default=None, metavar="FILE",
                   help="write the real images' statistics (mu, sigma, as pytorch-fid's .npz) "
                        "in the one --extractor's features; alone, without --model or "
                        "--images, only that")
    p.add_argument("--data-path", default=None, help="folder of the dataset's files")
    p.add_argument("--limit", type=int, default=None, help="first N items of the split")
    p.add_argument("--extractor", action="append", default=None,
                   help="classifier-<dataset>[:version] or inception (repeatable; default: "
                        "the dataset's classifier, plus inception with --inception-weights)")
    p.add_argument("--second-stage", default=None, metavar="URI",
                   help="a second stage trained on the model's codes (samplers two_stage, "
                        "two_stage_renorm_authors, two_stage_renorm_variable)")
    add_options(p, FidOptions, flags=FLAGS)
    p.add_argument("--actors", type=int, default=None,
                   help="Ray Data actors for the features (default: in this process when small)")
    p.add_argument("--use-gpu", action="store_true", help="one GPU per actor")
    return p.parse_args(argv)


def run(args) -> int:
    from jobs import steps
    from jobs.kinds.fid import FidOptions
    from latentatlas.data import parse_data_address
    from latentatlas.errors import UserError
    from latentatlas.report import Progress

    o = options_of(args, FidOptions, flags=FLAGS)
    if args.ref_stats and args.save_ref_stats:
        raise UserError("--save-ref-stats: the real side is --ref-stats' file already")
    if args.images and args.second_stage:
        raise UserError("--second-stage: samples a model; --images are images")
    if not (args.model or args.images or args.save_ref_stats):
        raise UserError("give --model URI or --images PATH to score (or --save-ref-stats FILE "
                        "alone, to write the data's statistics)")
    data = None if args.ref_stats else parse_data_address(args.data or DEFAULT_DATA)
    recorder = open_recorder(args)
    if not o.inception_weights and "inception" not in (args.extractor or []):
        print("note: no --inception-weights: FID in the classifier's features only (Inception "
              "FID needs its weights file; nothing is downloaded)")
    progress = Progress("fid")
    scoring = {"extractors": args.extractor, "inception_weights": o.inception_weights,
             "samples": o.samples, "data_path": args.data_path, "limit": args.limit,
             "actors": args.actors, "use_gpu": args.use_gpu}
    if not (args.model or args.images):
        progress(f"statistics of {args.data or DEFAULT_DATA} (first {o.samples} images)")
        extractor, ref = steps.reference_stats(recorder, data, args.save_ref_stats, **scoring)
        print(f"wrote {args.save_ref_stats}: mu {ref.mu.shape}, sigma {ref.sigma.shape} of "
              f"{ref.described} in {extractor.name}'s features ({extractor.source})")
        return 0
    scored = args.model or args.images
    against = args.ref_stats or args.data or DEFAULT_DATA
    progress(f"scoring {scored} against {against} (at most {o.samples} images a side)")
    run_id, q = steps.sample_quality(
        recorder, args.model, data, images_path=args.images, ref_stats=args.ref_stats,
        save_ref_stats=args.save_ref_stats, second_stage=args.second_stage,
        gmm_components=o.gmm_components, seed=o.seed, **scoring)
    table = q.table()
    print_table([dict(zip(table, row, strict=True)) for row in zip(*table.values(), strict=True)],
                title="sample quality")
    for e in q.extractors:
        print(f"{e.name}: {e.source} (sha256 {e.digest[:12]}; resize {e.resize}); real side: "
              f"{q.references[e.name].described}")
    for note in q.notes:
        print(f"note: {note}")
    if args.save_ref_stats:
        print(f"wrote {args.save_ref_stats}")
    print(f"MLflow run id: {run_id}")
    return 0


def main(argv=None) -> int:
    args = parse(argv)
    return guarded(lambda: run(args), args)


if __name__ == "__main__":
    sys.exit(main())
