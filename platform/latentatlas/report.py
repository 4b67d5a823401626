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


def print_table(rows: list[dict], title: str | None = None, columns: list[str] | None = None):
    if not rows:
        print(f"{title}: (nothing)" if title else "(nothing)")
        return
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    if title:
        print(f"\n== {title} ==")
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


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
    """One block per step (`step`, `run_id`, numbers): what a wide table of sparse columns
    said, in a terminal's width."""
    print(f"\n== {title} ==")
    for row in rows:
        numbers = {k: v for k, v in row.items() if k not in ("step", "run_id")}
        print(f"{row['step']}  (run {row['run_id']})")
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
