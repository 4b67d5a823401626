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

import sys

from analysis.defaults import PRDC_K
from jobs.kinds.regularisation import RegularisationOptions
from jobs.options import add_options, options_of
from latentatlas.command import guarded, open_recorder, verb_parser
from latentatlas.report import print_table


def main(argv=None) -> int:
    p = verb_parser("latentatlas regularisation", __doc__)
    p.add_argument("--dataset", default="fashion-mnist", help="the dataset source")
    p.add_argument("--data-path", default=None, help="folder of the dataset's files")
    p.add_argument("--limit", type=int, default=None, help="first N items of each split")
    add_options(p, RegularisationOptions)
    p.add_argument("--classifier", default=None, metavar="URI",
                   help="runs:/<id>/model or models:/<name>/<version> of a classifier "
                        "(jobs/configs/fmnist_classifier.yaml): the prior samples' FID in its "
                        "features")
    args = p.parse_args(argv)

    def run():
        from jobs import steps
        from latentatlas.errors import UserError
        from latentatlas.runtime import init_ray

        o = options_of(args, RegularisationOptions)
        if args.limit is not None and args.limit <= PRDC_K:
            raise UserError(f"--limit {args.limit}: more than {PRDC_K} test codes (the "
                            "neighbours of the prior's coverage)")
        if not args.classifier:
            print("note: no --classifier: the prior samples' FID is not measured")
        recorder = open_recorder(args)
        init_ray(args.ray_address)
        run_id, metrics, _ = steps.regularisation(
            recorder, args.dataset, data_path=args.data_path, limit=args.limit,
            **o.model_dump(), classifier=args.classifier)
        print_table([{"measure": k, "value": v} for k, v in metrics.items()],
                    title="regularisation")
        print(f"MLflow run id: {run_id}")

    return guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
