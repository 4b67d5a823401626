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
    from analysis.claims import counts, describe_setting, explained, headline

    print("\n== the seed's claims beside what was measured ==")
    for i, c in enumerate(claims):
        was = ""
        if before is not None and headline(before[i]) != headline(c):
            was = f" (was: {headline(before[i])})"
        on = " -> ".join(dict.fromkeys(describe_setting(s) for s in c["setting"]["measured"]))
        print(f"- {c['claim']} [{c['subject']}]: {headline(c).upper()}{was}\n"
              f"    measured: {c['summary']}\n"
              f"              ({on})\n"
              f"    seed:     {c['seed']} ({c['setting']['seed']})\n"
              f"    rule:     {c['rule']}")
        for line in explained(c):
            print(f"    {line}")
    print("verdicts: " + counts(claims))


def verdict_metrics(claims: list[dict]) -> dict[str, int]:
    """The verdict counts as a study's parent run logs them: `verdicts/<kind>` and, for the
    judged kinds, `verdicts/<kind>/<outcome>`."""
    from analysis.claims import VERDICTS

    out = {f"verdicts/{kind.replace(' ', '_')}": sum(c["verdict"] == kind for c in claims)
           for kind in VERDICTS}
    for c in claims:
        if c["verdict"] in ("replication", "generalisation"):
            key = f"verdicts/{c['verdict']}/{c['rule_outcome'].replace(' ', '_')}"
            out[key] = out.get(key, 0) + 1
    return out


def claims_table(claims: list[dict]) -> dict[str, list]:
    """The claims as an MLflow table (the UI sorts and filters it)."""
    from analysis.claims import headline

    return {"claim": [c["claim"] for c in claims], "key": [c["key"] for c in claims],
            "subject": [c["subject"] for c in claims], "verdict": [c["verdict"] for c in claims],
            "rule_outcome": [c["rule_outcome"] for c in claims],
            "headline": [headline(c) for c in claims],
            "measured": [c["summary"] for c in claims],
            "withheld": ["; ".join(c.get("withheld", [])) for c in claims],
            "differs": ["; ".join(c.get("differences", [])) for c in claims],
            "runs": [", ".join(c["runs"]) for c in claims]}


# MLflow keeps a tag value (a run's description is one) up to this many characters
# (mlflow.utils.validation.MAX_TAG_VAL_LENGTH) and truncates the rest with a warning.
DESCRIPTION_LIMIT = 8000


def study_description(study: str, claims: list[dict], link) -> str:
    """The parent run's description (MLflow shows `mlflow.note.content` as Markdown on the
    run page): the verdict counts and a row per claim, with links to the runs that hold its
    numbers (`link(run_id)`); what was measured and why a verdict was withheld are in the
    run's claims_table.json and report. Within MLflow's tag limit: run ids without links,
    then fewer rows (saying how many more), where the links would not fit."""
    from analysis.claims import counts, headline

    head = [f"**Study `{study}`**: the seed's claims judged on what its steps measured "
            "(the numbers and reasons: claims_table.json, and `latentatlas report RUN_ID`).",
            "", f"Verdicts: {counts(claims) or 'no claims'}.", ""]
    if not claims:
        return "\n".join(head)
    cell = lambda text: str(text).replace("|", "\\|")  # noqa: E731
    table = ["| claim | on | verdict | runs |", "| --- | --- | --- | --- |"]

    def rows(show) -> list[str]:
        return [f"| {cell(c['claim'])} | {cell(c['subject'])} | {cell(headline(c))} | "
                + " ".join(show(r) for r in c["runs"]) + " |" for c in claims]

    for show in (lambda r: f"[{r[:8]}]({link(r)})", lambda r: r[:8]):
        text = "\n".join([*head, *table, *rows(show)])
        if len(text) <= DESCRIPTION_LIMIT:
            return text
    kept, more = [*head, *table], rows(lambda r: r[:8])
    while more and len("\n".join([*kept, more[0]])) + 80 <= DESCRIPTION_LIMIT:
        kept.append(more.pop(0))
    return "\n".join([*kept, "", f"... and {len(more)} more claims in claims_table.json."])


def step_description(name: str, kind: str, study: str, reads: list[str],
                     claims: list[dict]) -> str:
    """A step's run description: what it measured, on what, and the claims it fed."""
    from analysis.claims import headline

    text = (f"Step `{name}` ({kind}) of study `{study}`"
            + (f", reading {', '.join(reads)}" if reads else "") + ".")
    return "\n".join([text, *(f"- {c['claim']} [{c['subject']}]: {headline(c)}: "
                               f"{c['summary']}" for c in claims)])


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
