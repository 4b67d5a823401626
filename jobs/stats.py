"""`latentatlas stats ENCODING`: latent statistics (activity, inactive variables, the
stationary condition), the zero-out check, variance loss and information gain, logged
to MLflow in a child run of the encoded model's run."""

from __future__ import annotations

import sys

from jobs.kinds.stats import StatsOptions
from jobs.options import add_options, options_of
from latentatlas.command import guarded, open_recorder, verb_parser
from latentatlas.report import Progress, print_metrics, print_table


def print_result(run_id: str, out) -> None:
    s = out.stats
    print_table([{"var": int(i), "var(mu)": s["var_mu"][i], "mean(sigma^2)": s["mean_sigma2"][i],
                  "sum": s["stationary"][i], "active": bool(s["active"][i]),
                  "inactive": bool(s["inactive"][i]), "info gain": out.gain[i]}
                 for i in s["variable"]], title="latent variables")
    print_metrics(out.metrics, "stats")
    print(f"MLflow run id: {run_id}")


def main(argv=None) -> int:
    p = verb_parser("latentatlas stats", __doc__)
    p.add_argument("encoding", help="an encoding directory written by `latentatlas encode`")
    add_options(p, StatsOptions)
    p.add_argument("--use-gpu", action="store_true", help="one GPU per actor")
    args = p.parse_args(argv)

    def run():
        from jobs import steps

        o = options_of(args, StatsOptions)
        recorder = open_recorder(args)
        print_result(*steps.stats(recorder, args.encoding, **o.model_dump(),
                                  use_gpu=args.use_gpu, progress=Progress("stats")))

    return guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
