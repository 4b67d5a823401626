"""`latentatlas support-set ENCODING [--exclude attr=value]`: one random member of each
non-empty sector, filled up to the latent dimension from the most crowded sectors; reports
how far apart its images are (mean pairwise MSE) against random pairs."""

from __future__ import annotations

import sys

from jobs.kinds.sectors import SupportSetOptions
from jobs.options import add_options, options_of
from latentatlas.command import guarded, open_recorder, verb_parser
from latentatlas.report import print_metrics


def main(argv=None) -> int:
    p = verb_parser("latentatlas support-set", __doc__)
    p.add_argument("encoding", help="an encoding directory")
    add_options(p, SupportSetOptions)
    args = p.parse_args(argv)

    def run():
        from jobs import steps

        o = options_of(args, SupportSetOptions)
        recorder = open_recorder(args)
        run_id, s = steps.support_set(recorder, args.encoding, **o.model_dump())
        print(f"support set rows: {s.index.tolist()}")
        print_metrics(s.metrics, "support set")
        print(f"MLflow run id: {run_id}")

    return guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
