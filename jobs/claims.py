"""`latentatlas claims RUN_ID`: the claims a main run logged (its claims.json), judged again
under the current rules of analysis/claims.py from the metrics their runs hold, without
training; a child run of the main run keeps the new judgement. `--rules` prints the rules."""

from __future__ import annotations

import math
import sys

from jobs.verdicts import read_claims
from latentatlas.command import guarded, open_recorder, verb_parser


def where_judged(c) -> list[str]:
    """What a setting must match for claim `c`'s verdict to be a replication."""
    return [n for n in (
        f"dataset group {c.group}" if c.group else "",
        f"model `{c.model}`" if c.model else "", f"loss {c.loss}" if c.loss else "") if n]


def components_needed(c) -> str:
    """What every component must pass for claim `c` to be judged at all."""
    from analysis.claims import CLASSIFIER_ACCURACY, LEARNED_FRACTION, SETTLED_EPOCHS, SETTLED_SLOPE

    settled = (f"VAE trainings settled (val/mse trend under {SETTLED_SLOPE:.0%} per epoch over "
               f"the last {SETTLED_EPOCHS}); " if c.needs_settled else "")
    return (f"{settled}no reduced step; recoders and second stages learned (held-out error "
            f"under {LEARNED_FRACTION:g} x the variance of what they predict); classifiers "
            f"at least {CLASSIFIER_ACCURACY:.0%} accurate")


def rules_table() -> str:
    """The rules as the docs' markdown table (a test keeps the two equal)."""
    from analysis.claims import CLAIMS

    rows = ["| claim | in general | rule | why | a replication where | the seed |",
            "| --- | --- | --- | --- | --- | --- |"]
    for c in CLAIMS.values():
        changed = f" Changed {c.changed}." if c.changed else ""
        rows.append(f"| `{c.key}`: {c.claim} | {c.general} | {c.rule}.{changed} | {c.reason} "
                    f"| {'; '.join(where_judged(c)) or 'any setting'} | {c.figure} "
                    f"({c.seed_setting}) |")
    return "\n".join(rows)


def print_rules(markdown: bool = False) -> None:
    from analysis.claims import CLAIMS

    if markdown:
        print(rules_table())
        return
    for c in CLAIMS.values():
        print(f"{c.key}: {c.claim}\n  in general: {c.general}\n  rule:   {c.rule}\n"
              f"  why:    {c.reason}\n  seed:   {c.figure} ({c.seed_setting}; {c.source})\n"
              f"  a replication where: {', '.join(where_judged(c)) or 'any setting'}\n"
              f"  judged when: {components_needed(c)}"
              + (f"\n  changed: {c.changed}" if c.changed else ""))


def numbers_from_runs(recorder, claim: dict, cache: dict) -> dict:
    """The numbers a claim was judged on, read again from the runs that logged them."""
    from latentatlas.errors import UserError

    numbers = {}
    for name, (run_id, metric) in claim["sources"].items():
        if run_id not in cache:
            try:
                cache[run_id] = recorder.client.get_run(run_id).data.metrics
            except Exception:  # MLflow raises several types for a missing run
                raise UserError(f"claim {claim['key']}: its run {run_id} is not in "
                                f"{recorder.uri}") from None
        value = cache[run_id].get(metric)
        if value is None or not math.isfinite(value):
            raise UserError(f"claim {claim['key']}: run {run_id} has no finite {metric}")
        numbers[name] = value
    return numbers


def rejudge_run(recorder, run_id: str) -> tuple[list[dict], list[dict]]:
    """(stored, judged again): the claims of a main run under the current rules, each on
    the numbers its runs logged; a claim over replicates, each replicate on its own runs'."""
    from analysis.claims import pooled, rejudge

    stored, cache = read_claims(recorder, run_id), {}

    def again(c: dict) -> dict:
        if c.get("replicates"):
            return pooled([again(r) for r in c["replicates"]])
        return rejudge(c, numbers_from_runs(recorder, c, cache))

    return stored, [again(c) for c in stored]


def main(argv=None) -> int:
    p = verb_parser("latentatlas claims", __doc__)
    p.add_argument("run_id", nargs="?", help="a main-job run (its MLflow run id)")
    p.add_argument("--rules", action="store_true",
                   help="print every claim's rule, reason and where it is judged, and exit")
    p.add_argument("--markdown", action="store_true", help="with --rules: as a markdown table")
    args = p.parse_args(argv)

    def run():
        from jobs.verdicts import CLAIMS_FILE, claims_file, print_claims
        from latentatlas.errors import UserError
        from latentatlas.record import Record

        if args.rules:
            print_rules(args.markdown)
            return
        if not args.run_id:
            raise UserError("claims: give RUN_ID (a main-job run), or --rules")
        recorder = open_recorder(args)
        stored, judged = rejudge_run(recorder, args.run_id)
        print_claims(judged, before=stored)
        child = recorder.record(Record("claims", "claims (judged again)",
                                       tags={"latentatlas.judged_run": args.run_id},
                                       files={CLAIMS_FILE: claims_file(judged)}), args.run_id)
        print(f"\nMLflow run id: {child} (the claims of {args.run_id}, judged again)")

    return guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
