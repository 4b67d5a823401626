"""The seed's claims as the main job, a study's step and `latentatlas claims` store them
(claims.json) and print them. Light on purpose: `claims` imports neither torch nor Ray."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

CLAIMS_FILE = "claims.json"
FIELDS = ("claim", "key", "subject", "measured", "summary", "setting", "rule", "verdict",
          "sources")


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


def read_claims(recorder, run_id: str) -> list[dict]:
    """A main run's claims.json, checked: a list of claims with every field."""
    from analysis.claims import CLAIMS
    from latentatlas.errors import UserError

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = recorder.client.download_artifacts(run_id, CLAIMS_FILE, tmp)
        except Exception:  # MLflow raises several types for a missing run or artifact
            raise UserError(f"claims {run_id}: no {CLAIMS_FILE} in that run of {recorder.uri} "
                            "(main-job runs log one since 2026-12-02)") from None
        try:
            claims = json.loads(Path(local).read_text())
        except ValueError as e:
            raise UserError(f"claims {run_id}: {CLAIMS_FILE} is not JSON ({e})") from None
    if not isinstance(claims, list):
        raise UserError(f"claims {run_id}: {CLAIMS_FILE} holds a {type(claims).__name__}, "
                        "not a list of claims")
    for i, c in enumerate(claims):
        missing = [f for f in FIELDS if not isinstance(c, dict) or f not in c]
        if missing:
            raise UserError(f"claims {run_id}: {CLAIMS_FILE}[{i}] lacks {', '.join(missing)}")
        if c["key"] not in CLAIMS:
            raise UserError(f"claims {run_id}: {CLAIMS_FILE}[{i}]: unknown claim {c['key']!r}")
    return claims
