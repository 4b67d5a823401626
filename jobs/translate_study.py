"""`latentatlas translate-study ENC ENC ...`: for every ordered pair of encodings (of one
dataset split), fit every translator (the authors' ridge, OLS, Procrustes after standard
scaling, least squares projected to orthogonal, the authors' own Adam fit) on every anchor
choice (the source's support set, random rows, farthest-point sampling, every fit row) at
budgets from d/4 to 4d source rows, and score them on held-out rows: L, M and
M / M_target_own, beside the linear CKA and SVCCA of the raw spaces. One MLflow run: the
table, heatmaps per translator, M against the anchor budget."""

from __future__ import annotations

import sys

from jobs.kinds.translate import TranslateOptions
from jobs.options import add_options, options_of
from latentatlas.command import guarded, open_recorder, verb_parser
from latentatlas.report import Progress, print_metrics, print_table

# the verb's names of the options; what a study step alone sets (the claims it judges)
FLAGS = {"translators": "--translator", "anchors": "--anchor", "budgets": "--budget"}
STUDY_ONLY = ("claims_translator", "claims_budget")


def main(argv=None) -> int:
    p = verb_parser("latentatlas translate-study", __doc__)
    p.add_argument("encodings", nargs="+", metavar="ENC", help="encoding directories (>= 2)")
    p.add_argument("--label", action="append", default=None,
                   help="a short name per encoding, in order (default: folder names)")
    add_options(p, TranslateOptions, flags=FLAGS, skip=STUDY_ONLY)
    args = p.parse_args(argv)

    def run():
        from jobs import steps
        from latentatlas.errors import UserError

        if args.label and len(args.label) != len(args.encodings):
            raise UserError(f"--label: {len(args.label)} labels for {len(args.encodings)} "
                            "encodings")
        o = options_of(args, TranslateOptions, flags=FLAGS)
        recorder = open_recorder(args)
        run_id, out = steps.translate_study(
            recorder, args.encodings, labels=args.label, **o.studying(),
            progress=Progress("translate"))
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
