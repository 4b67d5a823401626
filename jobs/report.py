"""`latentatlas report RUN_ID`: what a main run measured, from its MLflow run: every step's
numbers (summary.json) and the seed's claims as judged (claims.json), with the machine, the
date and the commit it ran on. `--format md` writes the Markdown the documentation's results
page is (`--out docs/results.md`)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from latentatlas.command import guarded, open_recorder, verb_parser

MACHINE_TAG = "latentatlas.machine"


def steps_of(summary: dict[str, list]) -> list[dict]:
    """summary.json's columns as one dict per step row, without the empty cells."""
    columns = list(summary)
    rows = zip(*summary.values(), strict=True) if summary else []
    return [{c: v for c, v in zip(columns, row, strict=True) if v is not None} for row in rows]


def provenance(run) -> dict[str, str]:
    """When, where and from what a run ran, as its tags and times say."""
    info, tags = run.info, run.data.tags
    start = datetime.fromtimestamp(info.start_time / 1000, UTC)
    minutes = (f"{(info.end_time - info.start_time) / 60_000:.1f} min" if info.end_time
               else "not ended")
    return {"run": f"`{info.run_id}` ({info.run_name}, {info.status})",
            "date": f"{start:%Y-%m-%d %H:%M} UTC, {minutes}",
            "machine": tags.get(MACHINE_TAG, "not recorded by this run"),
            "commit": tags.get("mlflow.source.git.commit", "not recorded"),
            "command": tags.get("mlflow.source.name", "not recorded")}


def markdown(run, steps: list[dict], claims: list[dict], uri: str) -> str:
    from analysis.claims import counts, describe_setting, explained, headline
    from latentatlas.report import fmt

    cell = lambda v: fmt(v).replace("|", "\\|")  # noqa: E731
    lines = ["# Results of a main job", "",
             f"Written by `latentatlas report {run.info.run_id} --format md` from the "
             f"MLflow store `{uri}`.", "", "| | |", "| --- | --- |"]
    lines += [f"| {k} | {cell(v)} |" for k, v in provenance(run).items()]
    lines += ["", "## The seed's claims", "", f"Verdicts: {counts(claims)}.", ""]
    for c in claims:
        on = " -> ".join(dict.fromkeys(describe_setting(s) for s in c["setting"]["measured"]))
        lines += [f"### {c['claim']} [{c['subject']}]: {headline(c).upper()}", "",
                  f"- measured: {c['summary']} ({on})",
                  f"- seed: {c['seed']} ({c['setting']['seed']})", f"- rule: {c['rule']}",
                  *(f"- {line}" for line in explained(c))]
        lines.append("")
    lines += ["## Every step's numbers", ""]
    for row in steps:
        numbers = {k: v for k, v in row.items() if k not in ("step", "run_id")}
        lines += [f"### {row.get('step', '?')}", "", f"Run `{row.get('run_id', '')}`.", ""]
        if numbers:
            lines += ["| number | value |", "| --- | --- |",
                      *(f"| `{k}` | {cell(v)} |" for k, v in numbers.items()), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def text(run, steps: list[dict], claims: list[dict]) -> None:
    from jobs.verdicts import print_claims
    from latentatlas.report import print_steps

    for key, value in provenance(run).items():
        print(f"{key}: {value}".replace("`", ""))
    print_steps(steps, title="main job")
    print_claims(claims)


def write_atomically(path: Path, content: str) -> None:
    from latentatlas.outputs import writing

    data = content.encode()
    tmp = path.with_name(f".{path.name}.tmp")
    with writing(path, len(data), partial=[tmp]):
        tmp.write_bytes(data)
        tmp.replace(path)


def main(argv=None) -> int:
    p = verb_parser("latentatlas report", __doc__)
    p.add_argument("run_id", help="a main-job run (its MLflow run id)")
    p.add_argument("--format", choices=("text", "md"), default="text",
                   help="text for the terminal; md: Markdown tables and claim blocks")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="write there (whole or not at all) instead of printing")
    args = p.parse_args(argv)

    def run():
        import contextlib
        import io

        from jobs.verdicts import read_claims
        from latentatlas.errors import UserError

        recorder = open_recorder(args)
        try:
            found = recorder.client.get_run(args.run_id)
        except Exception:  # MLflow raises several types for a missing run
            raise UserError(f"report {args.run_id}: no such run in {recorder.uri}") from None
        if found.data.tags.get("latentatlas.kind") != "main":
            raise UserError(f"report {args.run_id}: a {found.data.tags.get('latentatlas.kind')!r}"
                            " run; give a main-job run (`latentatlas runs --kind main`)")
        summary = recorder.table(args.run_id, "summary.json")
        if summary is None:
            raise UserError(f"report {args.run_id}: the run holds no summary.json (it did "
                            "not finish; `latentatlas run --resume` finishes it)")
        steps, claims = steps_of(summary), read_claims(recorder, args.run_id)
        if args.format == "md":
            content = markdown(found, steps, claims, recorder.uri)
        else:
            with contextlib.redirect_stdout(io.StringIO()) as out:
                text(found, steps, claims)
            content = out.getvalue()
        if args.out:
            write_atomically(args.out, content)
            print(f"wrote {args.out}")
        else:
            sys.stdout.write(content)

    return guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
