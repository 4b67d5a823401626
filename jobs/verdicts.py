"""The seed's claims as the main job, a study's step and `latentatlas claims` store them
(claims.json) and print them. Light on purpose: `claims` imports neither torch nor Ray."""

from __future__ import annotations

import json
from pathlib import Path

CLAIMS_FILE = "claims.json"


def print_claims(claims: list[dict], before: list[dict] | None = None) -> None:
    """One short block per claim (prose in table cells made a 400-character-wide table);
    with `before`, a verdict that changed says what it was."""
    from analysis.claims import NOT_COMPARABLE, counts, describe_setting

    print("\n== the seed's claims beside what was measured ==")
    for i, c in enumerate(claims):
        was = ""
        if before is not None and before[i]["verdict"] != c["verdict"]:
            was = f" (was: {before[i]['verdict']})"
        on = " -> ".join(dict.fromkeys(describe_setting(s) for s in c["setting"]["measured"]))
        print(f"- {c['claim']} [{c['subject']}]: {c['verdict'].upper()}{was}\n"
              f"    measured: {c['summary']}\n"
              f"              ({on})\n"
              f"    seed:     {c['seed']} ({c['setting']['seed']})\n"
              f"    rule:     {c['rule']}")
        if c["verdict"] == NOT_COMPARABLE:
            print(f"    not comparable: {'; '.join(c['differences'])} (the rule gives: "
                  f"{c['rule_outcome']})")
    print("verdicts: " + counts(claims))


def claims_file(claims: list[dict]):
    """A Record file writer of claims.json: the list itself."""
    return lambda path: Path(path).write_text(json.dumps(claims, indent=1))
