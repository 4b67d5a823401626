"""`latentatlas relocate --source ENC1 --target ENC2`: fit linear maps from one latent space
to another and measure what survives the move on held-out rows:
R = MSE(x, dec1(enc1 x)), L = MSE(enc2 x, A enc1 x), M = MSE(x, dec2(A enc1 x)),
M_target_own = MSE(x, dec2(enc2 x)). `--all ENC...` does every ordered pair. The headline
(relocation/M, relocation/L) is the first estimator (default: the authors' ridge_authors) on
the authors' fit (default: generated pairs when one side is a generator, else a support
set); OLS with a bias on all fit rows (relocation/M_ols_full) is logged beside it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from jobs.options import add_options, options_of
from latentatlas.command import guarded, open_recorder, verb_parser
from latentatlas.errors import UserError
from latentatlas.report import Progress, print_metrics, print_table, quiet

# the verb's names of the options; what only a study step sets (its report label, its claims)
FLAGS = {"estimators": "--estimator"}
STUDY_ONLY = ("relocation", "claims")

if TYPE_CHECKING:
    import numpy as np

def headline(out) -> str:
    """What relocation/M is and how it compares: the headline fit beside the target's own
    error and OLS on all fit rows."""
    m = out.metrics
    rows = int(m["relocation/fit_rows"])
    told = {"all": f"all {rows} fit rows", "support": f"a support set of {rows} rows",
            "indices": f"{rows} rows of --indices", "generated": f"{rows} generated pairs",
            "random": f"{rows} random fit rows"}
    return (f"headline: {out.estimators[0]} on {told[out.fit]}\n"
            f"M {m['relocation/M']:.4g} vs M_target_own {m['relocation/M_target_own']:.4g} "
            + (f"(x{m['relocation/M_over_own']:.3g}); " if "relocation/M_over_own" in m else
               "(no scale: the target generator regenerates its own samples exactly); ")
            +
            f"M_ols_full {m['relocation/M_ols_full']:.4g} (OLS with a bias, all fit rows)")


def relocate_all(recorder, paths: list[str], progress: Callable[[str], None] = quiet,
                 **kwargs) -> tuple[str, np.ndarray, list]:
    """Every ordered pair, in parallel; a heatmap of M / M_target_own in a parent run."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    import numpy as np

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
                # a generator target scored on its own samples has no scale (own error 0)
                ratio[i, j] = m.get("relocation/M_over_own", np.nan)
                scaled = "relocation/M_over_own" in m
                progress(f"pair {done + 1}/{len(pairs)}: {i}->{j} M/M_target_own " + (
                    f"{ratio[i, j]:.3g}" if scaled else "none (own error 0, blank in the map)"))
                rows.append({"source": i, "target": j, "fit": out.fit, "R": m["relocation/R"],
                             "L": m["relocation/L"], "M": m["relocation/M"],
                             "M_target_own": m["relocation/M_target_own"],
                             "M/M_target_own": float(ratio[i, j]) if scaled else None,
                             "M_ols_full": m["relocation/M_ols_full"], "run_id": run_id})
        rows.sort(key=lambda r: (r["source"], r["target"]))
        labels = [str(i) for i in range(len(paths))]
        recorder.write(parent, Record("relocate-all", "relocate all pairs", figures={
            "relocation_heatmap.png": lambda: heatmap(ratio, labels,
                                                      "M / M_target_own (rows: source)")},
            dicts={"relocation_pairs.json": {"encodings": paths, "pairs": rows}}))
    return parent, ratio, rows


def main(argv=None) -> int:
    from jobs.kinds.relocate import RelocateOptions

    p = verb_parser("latentatlas relocate", __doc__)
    p.add_argument("--source", help="source encoding directory")
    p.add_argument("--target", help="target encoding directory (same dataset and split)")
    p.add_argument("--all", nargs="+", metavar="ENC", help="every ordered pair of these")
    add_options(p, RelocateOptions, flags=FLAGS, skip=STUDY_ONLY)
    p.add_argument("--indices", help="file of row indices (one per line) for --fit indices")
    p.add_argument("--actors", type=int, default=1,
                   help="Ray Data actors scoring the maps (on inputs above the short-path size)")
    p.add_argument("--use-gpu", action="store_true", help="one GPU per actor")
    args = p.parse_args(argv)

    def run():
        from jobs import steps

        o = options_of(args, RelocateOptions, flags=FLAGS)
        indices = None
        if o.fit == "indices":
            if not args.indices:
                raise UserError("--fit indices needs --indices FILE")
            import numpy as np

            indices = np.loadtxt(args.indices, dtype=np.int64, ndmin=1)
        common = dict(**o.fitting(), indices=indices, actors=args.actors, use_gpu=args.use_gpu)
        if args.all:
            if len(args.all) < 2:
                raise UserError("--all needs at least two encodings")
            recorder = open_recorder(args)
            pid, _, rows = relocate_all(recorder, args.all, Progress("relocate"), **common)
            print_table(rows, title="relocation, every ordered pair")
            print(f"MLflow run id: {pid}")
            return
        if not (args.source and args.target):
            raise UserError("relocate: give --source and --target, or --all ENC ENC ...")
        recorder = open_recorder(args)
        run_id, out = steps.relocate(recorder, args.source, args.target,
                                     progress=Progress("relocate"), **common)
        print_metrics(out.metrics, "relocation")
        print(headline(out))
        for name in out.rank_deficient:
            m = out.maps[name]
            print(f"note: {name} was fitted on rows that determine {m.rank} of {m.dims} "
                  "directions; the others were left out (minimum-norm fit)")
        print(f"MLflow run id: {run_id}")

    return guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
