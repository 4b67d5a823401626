"""`latentatlas translate-study ENC ENC ...`: for every ordered pair of encodings (of one
dataset split), fit every translator (the authors' ridge, OLS, Procrustes after standard
scaling, least squares projected to orthogonal, the authors' own Adam fit) on every anchor
choice (the source's support set, random rows, farthest-point sampling, every fit row) at
budgets from d/4 to 4d source rows, and score them on held-out rows: L, M and
M / M_target_own, beside the linear CKA and SVCCA of the raw spaces. One MLflow run: the
table, heatmaps per translator, M against the anchor budget."""

from __future__ import annotations

import argparse
import sys

from analysis.defaults import ANCHOR_CHOICES, BUDGETS, TRANSLATORS
from latentatlas.command import common_parser, guarded
from latentatlas.report import Progress, print_metrics, print_table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="latentatlas translate-study", parents=[common_parser()],
                                description=__doc__)
    p.add_argument("encodings", nargs="+", metavar="ENC", help="encoding directories (>= 2)")
    p.add_argument("--label", action="append", default=None,
                   help="a short name per encoding, in order (default: folder names)")
    p.add_argument("--translator", action="append", default=None,
                   help=f"translator, repeatable (default: {', '.join(TRANSLATORS)}; any "
                        "`relocate --estimator` name)")
    p.add_argument("--anchor", action="append", default=None,
                   help=f"anchor choice, repeatable (default: {', '.join(ANCHOR_CHOICES)})")
    p.add_argument("--budget", action="append", type=float, default=None,
                   help="anchor rows as a multiple of the source's latent dimension, "
                        f"repeatable (default: {', '.join(f'{b:g}' for b in BUDGETS)})")
    p.add_argument("--repeats", type=int, default=3,
                   help="anchor draws per (choice, budget), with seeds seed..seed+repeats-1")
    p.add_argument("--eval-rows", type=int, default=None,
                   help="score on the first N held-out rows (default: all of them)")
    p.add_argument("--seed", type=int, default=0, help="the first anchor draw's seed")
    args = p.parse_args(argv)

    def run():
        from jobs import steps
        from latentatlas.errors import UserError
        from latentatlas.tracking import Recorder

        if args.label and len(args.label) != len(args.encodings):
            raise UserError(f"--label: {len(args.label)} labels for {len(args.encodings)} "
                            "encodings")
        if args.eval_rows is not None and args.eval_rows < 1:
            raise UserError(f"--eval-rows {args.eval_rows}: at least 1")
        recorder = Recorder(args.tracking_uri, args.experiment)
        run_id, out = steps.translate_study(
            recorder, args.encodings, labels=args.label, translators=args.translator,
            anchors=args.anchor, budgets=args.budget, repeats=args.repeats,
            eval_rows=args.eval_rows, seed=args.seed, progress=Progress("translate"))
        for note in out.notes:
            print(f"note: {note}")
        print_table(out.pairs, title="ordered pairs: similarity of the raw spaces, own errors")
        s = out.summary()
        print_table([dict(zip(s, row, strict=True)) for row in zip(*s.values(), strict=True)],
                    title="M / M_target_own per translator, anchor choice and budget "
                          "(over pairs and repeats)")
        print_metrics({k: v for k, v in out.metrics.items() if "/ratio/" not in k},
                      "translator study")
        print(f"MLflow run id: {run_id}")

    return guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
