"""`latentatlas regularisation`: the seed's pictures of how sampling shapes a latent space.
Two 3-D VAEs (784-256-64-16-3), trained with and without posterior sampling: a 3-D scatter
of test codes and prior samples decoded in slices of z2, and how far the codes sit from the
N(0, I) prior. A 2-D VAE: the paths of ten test images' codes (one per class) through its
first epoch. One parent run, the three train runs as its children; the 3-D models' test
codes are written as encodings under ./encodings/regularisation-<run id>/."""

from __future__ import annotations

import argparse
import sys

from latentatlas.command import common_parser, guarded
from latentatlas.report import print_table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="latentatlas regularisation", parents=[common_parser()],
                                description=__doc__)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-path", default=None, help="folder of the dataset's files")
    p.add_argument("--limit", type=int, default=None, help="first N items of each split")
    p.add_argument("--epochs", type=int, default=3, help="epochs of the 3-D models")
    p.add_argument("--points", type=int, default=5000, help="test codes in the 3-D scatter")
    args = p.parse_args(argv)

    def run():
        from jobs import steps
        from latentatlas.runtime import init_ray
        from latentatlas.tracking import Recorder

        recorder = Recorder(args.tracking_uri, args.experiment)
        init_ray(args.ray_address)
        run_id, metrics, _ = steps.regularisation(
            recorder, args.dataset, data_path=args.data_path, limit=args.limit,
            epochs=args.epochs, points=args.points)
        print_table([{"measure": k, "value": v} for k, v in metrics.items()],
                    title="regularisation")
        print(f"MLflow run id: {run_id}")

    return guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
