"""`latentatlas support-set ENCODING [--exclude attr=value]`: one random member of each
non-empty sector, filled up to the latent dimension from the most crowded sectors; reports
how far apart its images are (mean pairwise MSE) against random pairs."""

from __future__ import annotations

import argparse
import sys

from jobs.options import add_sector_args
from latentatlas.command import common_parser, guarded
from latentatlas.report import print_metrics


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="latentatlas support-set", parents=[common_parser()],
                                description=__doc__)
    add_sector_args(p)
    p.add_argument("--size", type=int, default=None, help="default: the latent dimension")
    p.add_argument("--exclude", default=None, help="attr=value rows are never chosen "
                   "(e.g. Wearing_Hat=1 for the seed's hat-free CelebA set)")
    p.add_argument("--seed", type=int, default=0, help="draws the members of each sector")
    args = p.parse_args(argv)

    def run():
        from jobs import steps
        from latentatlas.tracking import Recorder

        recorder = Recorder(args.tracking_uri, args.experiment)
        run_id, s = steps.support_set(recorder, args.encoding, size=args.size,
                                      exclude=args.exclude, k=args.k,
                                      threshold=args.threshold, seed=args.seed)
        print(f"support set rows: {s.index.tolist()}")
        print_metrics(s.metrics, "support set")
        print(f"MLflow run id: {run_id}")

    return guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
