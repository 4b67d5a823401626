"""Terminal tables: what every job prints at its end."""

from __future__ import annotations

import sys
import textwrap
import time

WIDTH = 96  # a terminal's width, with room to spare


class Progress:
    """Lines `[name  12s] text` as a long command moves from stage to stage (one write per
    line: several threads may report at once). Calling it with nothing shown is free."""

    def __init__(self, name: str):
        self.name, self.started = name, time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def __call__(self, text: str) -> None:
        sys.stdout.write(f"[{self.name} {self.seconds:5.0f}s] {text}\n")
        sys.stdout.flush()


def quiet(text: str) -> None:
    """The progress of a step whose caller reports on its own."""


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def print_rich_table(rows: list[dict], columns: list[str], title: str | None = None,
                     wide: bool = False, keep_whole: tuple[str, ...] = ("run_id",)) -> None:
    """A table fitted to the terminal's width (long cells fold onto more lines; `keep_whole`
    columns never do), or one line per row where the output is not a terminal (a file, a
    pipe, a test) or with `wide`."""
    from rich.console import Console
    from rich.table import Table

    from latentatlas.environment import at_terminal

    fit = at_terminal(sys.stdout) and not wide
    table = Table(title=title, title_justify="left", box=None, header_style="bold",
                  pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=column in keep_whole or not fit, overflow="fold")
    for r in rows:
        table.add_row(*(fmt(r.get(c)) for c in columns))
    Console(width=None if fit else 100_000, highlight=False).print(table)


def print_table(rows: list[dict], title: str | None = None, columns: list[str] | None = None):
    if not rows:
        print(f"{title}: (nothing)" if title else "(nothing)")
        return
    if title:
        print(f"\n== {title} ==", flush=True)
    print_rich_table(rows, columns or list(dict.fromkeys(k for r in rows for k in r)))


def wrapped(values: dict, indent: str = "    ") -> str:
    """`name value` pairs, as many per line as fit in WIDTH."""
    # A no-break space holds each name to its value: lines break between pairs only.
    pairs = [f"{k} {fmt(v)}".replace(" ", "\u00a0") for k, v in values.items()
             if v is not None]
    return textwrap.fill("   ".join(pairs), WIDTH, initial_indent=indent,
                         subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False).replace("\u00a0", " ")


def print_metrics(metrics: dict, title: str) -> None:
    """One result's numbers: a narrow block instead of a one-row table as wide as its names."""
    print(f"\n== {title} ==")
    print(wrapped(metrics))


def print_steps(rows: list[dict], title: str) -> None:
    """One block per step (`step`, `run_id` when it has a run, numbers): what a wide table of
    sparse columns said, in a terminal's width."""
    print(f"\n== {title} ==")
    for row in rows:
        numbers = {k: v for k, v in row.items() if k not in ("step", "run_id")}
        print(row["step"] + (f"  (run {row['run_id']})" if row.get("run_id") else ""))
        if numbers:
            print(wrapped(numbers))


def print_trained(outcome, name: str, title: str) -> None:
    """A training's last metrics, its warnings, its run id and model address."""
    print_table([{"run": name, **outcome.metrics}], title=title)
    for note in outcome.notes:
        print(f"warning: {note}")
    print(f"MLflow run id: {outcome.run_id}  model: {outcome.model_uri}")
    if outcome.registered:
        print(f"registered: {outcome.registered}")
