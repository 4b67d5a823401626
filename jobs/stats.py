"""`latentatlas stats ENCODING`: latent statistics (activity, inactive variables, the
stationary condition), the zero-out check, variance loss and information gain, logged
to MLflow in a child run of the encoded model's run."""

from __future__ import annotations

import argparse
import sys

from latentatlas.command import common_parser, guarded
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
    p = argparse.ArgumentParser(prog="latentatlas stats", parents=[common_parser()],
                                description=__doc__)
    p.add_argument("encoding", help="an encoding directory written by `latentatlas encode`")
    p.add_argument("--actors", type=int, default=None,
                   help="Ray Data actors (default: in this process when small, else the "
                        "cluster's CPUs or GPUs)")
    p.add_argument("--use-gpu", action="store_true", help="one GPU per actor")
    p.add_argument("--seed", type=int, default=0, help="seed of prior samples and pictures")
    p.add_argument("--gain-rows", type=int, default=None,
                   help="information gain over the first N rows only (default: all)")
    args = p.parse_args(argv)

    def run():
        from jobs import steps
        from latentatlas.tracking import Recorder

        recorder = Recorder(args.tracking_uri, args.experiment)
        print_result(*steps.stats(recorder, args.encoding, actors=args.actors,
                                  use_gpu=args.use_gpu, seed=args.seed,
                                  gain_rows=args.gain_rows, progress=Progress("stats")))

    return guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
