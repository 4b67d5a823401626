"""Shared by the benchmarks: medians, the machine line, appending to bench/RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def median(values) -> float:
    return statistics.median(list(values))


def machine() -> str:
    import torch

    return (f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def before_now_table(rows: dict[str, dict[str, float]], sides: list[str], digits: int,
                      ratio_digits: int) -> list[str]:
    """Markdown rows `| label | side... | before / now |` of {label: {side: seconds}}; the
    ratio column only when a "before" side was measured."""
    against = "before" in sides
    lines = ["| | " + " | ".join(f"{n} (s)" for n in sides) +
             (" | before / now |" if against else " |"),
             "|" + " --- |" * (len(sides) + 1 + against)]
    for label, t in rows.items():
        ratio = f" | x{t['before'] / t['now']:.{ratio_digits}f}" if against else ""
        lines.append(f"| {label} | " + " | ".join(f"{t[n]:.{digits}f}" for n in sides) +
                     ratio + " |")
    return lines


def append_section(title: str, lines: list[str]) -> None:
    """Append one dated section; earlier runs stay, so the history is visible."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    text = f"\n## {title} ({stamp})\n\n{machine()}\n\n" + "\n".join(lines) + "\n"
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by the scripts in bench/; medians "
                           "over repeated measurements, ratios as peer/ours or ours/peer as "
                           "each section says.\n")
    with RESULTS.open("a") as f:
        f.write(text)
    print(text)
