"""`latentatlas fid --model URI --data DATASET:SPLIT`: FID and KID of a generator's samples
against real images, in named feature spaces (`classifier-<dataset>`, trained by the
platform: `latentatlas train jobs/configs/fmnist_classifier.yaml`; `inception` from a local
weights file), and the variance loss of the samples. Samplers: the prior; for a VAE a
Gaussian mixture fitted to its codes of the real images (`--gmm K`); with `--second-stage
URI` the second stage's samples: raw (`two_stage`), and renormalised to the first stage's
spread by the authors' one scale (`two_stage_renorm_authors`) and by a scale per variable
(`two_stage_renorm_variable`)."""

from __future__ import annotations

import argparse
import sys

from latentatlas.command import common_parser, guarded
from latentatlas.report import print_table


def parse(argv):
    p = argparse.ArgumentParser(prog="latentatlas fid", parents=[common_parser()],
                                description=__doc__)
    p.add_argument("--model", required=True, help="runs:/<id>/model (a VAE or a GAN)")
    p.add_argument("--data", default="fashion-mnist:test", help="dataset:split of real images")
    p.add_argument("--data-path", default=None, help="folder of the dataset's files")
    p.add_argument("--limit", type=int, default=None, help="first N items of the split")
    p.add_argument("--extractor", action="append", default=None,
                   help="classifier-<dataset>[:version] or inception (repeatable; default: "
                        "the dataset's classifier, plus inception with --inception-weights)")
    p.add_argument("--inception-weights", default=None, metavar="PATH",
                   help="pt_inception-2015-12-05-6726825d.pth (pytorch-fid) or the "
                        "torch-fidelity file; never downloaded")
    p.add_argument("--second-stage", default=None, metavar="URI",
                   help="a second stage trained on the model's codes (samplers two_stage, "
                        "two_stage_renorm_authors, two_stage_renorm_variable)")
    p.add_argument("--gmm", type=int, default=100, metavar="K",
                   help="components of the GMM sampler (VAEs; 0: no GMM)")
    p.add_argument("--samples", type=int, default=10000,
                   help="real images scored, and samples per sampler")
    p.add_argument("--seed", type=int, default=0, help="seed of the samplers' draws")
    p.add_argument("--actors", type=int, default=None,
                   help="Ray Data actors for the features (default: in this process when small)")
    p.add_argument("--use-gpu", action="store_true", help="one GPU per actor")
    return p.parse_args(argv)


def run(args) -> int:
    from jobs import steps
    from latentatlas.data import parse_data_address
    from latentatlas.errors import UserError
    from latentatlas.report import Progress
    from latentatlas.tracking import Recorder

    if args.samples < 2 or args.gmm < 0:
        raise UserError(f"--samples {args.samples} / --gmm {args.gmm}: FID needs at least 2 "
                        "samples, and a GMM 0 (none) or more components")
    recorder = Recorder(args.tracking_uri, args.experiment)
    if not args.inception_weights and "inception" not in (args.extractor or []):
        print("note: no --inception-weights: FID in the classifier's features only (Inception "
              "FID needs its weights file; nothing is downloaded)")
    progress = Progress("fid")
    progress(f"scoring {args.samples} samples per sampler of {args.model} against {args.data}")
    run_id, q = steps.sample_quality(
        recorder, args.model, parse_data_address(args.data), extractors=args.extractor,
        inception_weights=args.inception_weights, second_stage=args.second_stage,
        gmm_components=args.gmm, samples=args.samples, data_path=args.data_path,
        limit=args.limit, seed=args.seed, actors=args.actors, use_gpu=args.use_gpu)
    table = q.table()
    print_table([dict(zip(table, row, strict=True)) for row in zip(*table.values(), strict=True)],
                title="sample quality")
    for e in q.extractors:
        print(f"{e.name}: {e.source}")
    print(f"MLflow run id: {run_id}")
    return 0


def main(argv=None) -> int:
    args = parse(argv)
    return guarded(lambda: run(args), args)


if __name__ == "__main__":
    sys.exit(main())
