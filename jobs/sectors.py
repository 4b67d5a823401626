"""`latentatlas sectors ENCODING`: how unevenly codes fill the 2^k sectors of the k most
informative variables (ordered by information gain from the encoding's `stats` run, or by
var(mu) when there is none; the run says which)."""

from __future__ import annotations

import sys

from jobs.kinds.sectors import SectorOptions
from jobs.options import add_options, options_of
from latentatlas.command import guarded, open_recorder, verb_parser
from latentatlas.report import print_metrics


def main(argv=None) -> int:
    p = verb_parser("latentatlas sectors", __doc__)
    p.add_argument("encoding", help="an encoding directory")
    add_options(p, SectorOptions)
    args = p.parse_args(argv)

    def run():
        from jobs import steps

        o = options_of(args, SectorOptions)
        recorder = open_recorder(args)
        run_id, s = steps.sectors(recorder, args.encoding, **o.model_dump())
        if s.k < s.k_requested:
            print(f"note: k reduced from {s.k_requested} to {s.k}, the active variables")
        if s.note:
            print(f"warning: {s.note}")
        d = s.density
        print(f"ordering: {s.ordering}; variables {s.variables.tolist()}")
        print(f"density: total variation to the prior's occupancy {d['tv_to_prior']:.4f} "
              f"(sampling noise alone: <= {d['tv_prior_p99']:.4f} in 99% of draws); KL to "
              f"independent Gaussian codes of their own moments {d['kl_to_gaussian']:.4f} "
              f"(noise: <= {d['kl_gaussian_p99']:.4f})")
        print_metrics(s.metrics, "sectors")
        print(f"MLflow run id: {run_id}")

    return guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
