"""`latentatlas relocate --source ENC1 --target ENC2`: fit linear maps from one latent space
to another and measure what survives the move on held-out rows:
R = MSE(x, dec1(enc1 x)), L = MSE(enc2 x, A enc1 x), M = MSE(x, dec2(A enc1 x)),
M_target_own = MSE(x, dec2(enc2 x)). `--all ENC...` does every ordered pair."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import numpy as np

from analysis.studies.maps import DEFAULT_ESTIMATORS, FITS
from latentatlas.command import common_parser, guarded
from latentatlas.report import Progress, print_metrics, print_table, quiet


def relocate_all(recorder, paths: list[str], progress: Callable[[str], None] = quiet,
                 **kwargs) -> tuple[str, np.ndarray, list]:
    """Every ordered pair, in parallel; a heatmap of M / M_target_own in a parent run."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from analysis.figures import heatmap
    from jobs import steps
    from latentatlas.record import Record

    pairs = [(i, j) for i in range(len(paths)) for j in range(len(paths)) if i != j]
    ratio, rows = np.ones((len(paths), len(paths))), []
    with recorder.run("relocate all pairs", "relocate-all") as parent:
        progress(f"{len(pairs)} ordered pairs of {len(paths)} encodings (MLflow run {parent})")

        def one(pair):
            i, j = pair
            return pair, steps.relocate(recorder, paths[i], paths[j], parent_run_id=parent,
                                        name=f"relocate {i}->{j}", **kwargs)

        with ThreadPoolExecutor(min(4, len(pairs))) as pool:
            for done, future in enumerate(as_completed([pool.submit(one, p) for p in pairs])):
                (i, j), (run_id, out) = future.result()
                m = out.metrics
                ratio[i, j] = m["relocation/M"] / m["relocation/M_target_own"]
                progress(f"pair {done + 1}/{len(pairs)}: {i}->{j} M/M_target_own "
                         f"{ratio[i, j]:.3g}")
                rows.append({"source": i, "target": j, "R": m["relocation/R"],
                             "L": m["relocation/L"], "M": m["relocation/M"],
                             "M_target_own": m["relocation/M_target_own"],
                             "M/M_target_own": ratio[i, j], "run_id": run_id})
        rows.sort(key=lambda r: (r["source"], r["target"]))
        labels = [str(i) for i in range(len(paths))]
        recorder.write(parent, Record("relocate-all", "relocate all pairs", figures={
            "relocation_heatmap.png": lambda: heatmap(ratio, labels,
                                                      "M / M_target_own (rows: source)")},
            dicts={"relocation_pairs.json": {"encodings": paths, "pairs": rows}}))
    return parent, ratio, rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="latentatlas relocate", parents=[common_parser()],
                                description=__doc__)
    p.add_argument("--source", help="source encoding directory")
    p.add_argument("--target", help="target encoding directory (same dataset and split)")
    p.add_argument("--all", nargs="+", metavar="ENC", help="every ordered pair of these")
    p.add_argument("--fit", choices=FITS, default="all",
                   help="all: every non-held-out row (streamed); support: a support set "
                        "selected in the source space, beside full-data fits and a size "
                        "sweep; indices: the rows of --indices")
    p.add_argument("--indices", help="file of row indices (one per line) for --fit indices")
    p.add_argument("--estimator", action="append", default=None,
                   help=f"repeatable; the first is the headline (default: "
                        f"{', '.join(DEFAULT_ESTIMATORS)})")
    p.add_argument("--lam", type=float, default=1e-4,
                   help="ridge: penalty on the sum-of-squares scale, |Y - XA|^2 + lam |A|^2")
    p.add_argument("--l2", type=float, default=1e-4,
                   help="ridge_authors: the authors' Keras L2 on weights and outputs (1e-4; "
                        "0.0015 when one side is a GAN)")
    p.add_argument("--actors", type=int, default=1)
    p.add_argument("--use-gpu", action="store_true")
    args = p.parse_args(argv)

    def run():
        from jobs import steps
        from latentatlas.errors import UserError
        from latentatlas.tracking import Recorder

        common = dict(estimators=args.estimator or DEFAULT_ESTIMATORS, lam=args.lam, l2=args.l2,
                      actors=args.actors, use_gpu=args.use_gpu)
        if args.all:
            if len(args.all) < 2:
                raise UserError("--all needs at least two encodings")
            recorder = Recorder(args.tracking_uri, args.experiment)
            pid, _, rows = relocate_all(recorder, args.all, Progress("relocate"), **common)
            print_table(rows, title="relocation, every ordered pair")
            print(f"MLflow run id: {pid}")
            return
        if not (args.source and args.target):
            raise UserError("relocate: give --source and --target, or --all ENC ENC ...")
        indices = None
        if args.fit == "indices":
            if not args.indices:
                raise UserError("--fit indices needs --indices FILE")
            indices = np.loadtxt(args.indices, dtype=np.int64, ndmin=1)
        recorder = Recorder(args.tracking_uri, args.experiment)
        run_id, out = steps.relocate(recorder, args.source, args.target, fit=args.fit,
                                     indices=indices, progress=Progress("relocate"), **common)
        print_metrics(out.metrics, "relocation")
        for name in out.rank_deficient:
            m = out.maps[name]
            print(f"note: {name} was fitted on rows that determine {m.rank} of {m.dims} "
                  "directions; the others were left out (minimum-norm fit)")
        print(f"MLflow run id: {run_id}")

    return guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
