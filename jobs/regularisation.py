"""`latentatlas regularisation`: the seed's experiment on how posterior sampling shapes a
latent space. Two 3-D VAEs (784-256-64-16-3, plain ELBO: BCE + KL), trained with and without
posterior sampling (without it the KL keeps its quadratic penalty on mu); for each, a 3-D
scatter of test codes and prior samples decoded in five horizontal slices of 5 x 5 points,
and how good its prior samples are: latent precision / recall / density / coverage of
N(0, I) draws against the test codes, the FID of the decoded draws against the test images
in a classifier's features (`--classifier`), and how far the codes sit from the prior
(aggregate KL). A 2-D VAE: the paths of ten test images' codes (one per class) through its
first epoch. One parent run, the three train runs as its children; the 3-D models' test
codes are written as encodings under ./encodings/regularisation-<run id>/."""

from __future__ import annotations

import argparse
import sys

from analysis.defaults import PRDC_K, REGULARISATION_EPOCHS
from latentatlas.command import common_parser, guarded
from latentatlas.report import print_table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="latentatlas regularisation", parents=[common_parser()],
                                description=__doc__)
    p.add_argument("--dataset", default="fashion-mnist", help="the dataset source")
    p.add_argument("--data-path", default=None, help="folder of the dataset's files")
    p.add_argument("--limit", type=int, default=None, help="first N items of each split")
    p.add_argument("--epochs", type=int, default=REGULARISATION_EPOCHS,
                   help="epochs of the 3-D models (default: where both settle on "
                        "Fashion-MNIST, bench/RESULTS.md)")
    p.add_argument("--points", type=int, default=5000,
                   help="test codes in the 3-D scatter, and prior draws scored against them")
    p.add_argument("--classifier", default=None, metavar="URI",
                   help="runs:/<id>/model or models:/<name>/<version> of a classifier "
                        "(jobs/configs/fmnist_classifier.yaml): the prior samples' FID in its "
                        "features")
    args = p.parse_args(argv)

    def run():
        from jobs import steps
        from latentatlas.errors import UserError
        from latentatlas.runtime import init_ray
        from latentatlas.tracking import Recorder

        codes = min(args.points, args.limit or args.points)
        if args.epochs < 1 or codes <= PRDC_K:
            raise UserError(f"--epochs {args.epochs} / --points {args.points} / --limit "
                            f"{args.limit}: at least one epoch, and more than {PRDC_K} test "
                            "codes (the neighbours of the prior's coverage)")
        if not args.classifier:
            print("note: no --classifier: the prior samples' FID is not measured")
        recorder = Recorder(args.tracking_uri, args.experiment)
        init_ray(args.ray_address)
        run_id, metrics, _ = steps.regularisation(
            recorder, args.dataset, data_path=args.data_path, limit=args.limit,
            epochs=args.epochs, points=args.points, classifier=args.classifier)
        print_table([{"measure": k, "value": v} for k, v in metrics.items()],
                    title="regularisation")
        print(f"MLflow run id: {run_id}")

    return guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
