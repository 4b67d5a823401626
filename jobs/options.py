"""Options several verbs share. Light on purpose: a verb's `--help` imports only this, the
common options (latentatlas.command) and analysis.defaults."""

from __future__ import annotations

import argparse

from analysis.defaults import DEFAULT_K, DEFAULT_THRESHOLD


def add_sector_args(p: argparse.ArgumentParser, encoding: bool = True) -> None:
    if encoding:
        p.add_argument("encoding", help="an encoding directory")
    p.add_argument("--k", type=int, default=DEFAULT_K,
                   help=f"number of ordered variables (default {DEFAULT_K})")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"|z_i| must exceed it (sectors are 2*threshold apart; default "
                        f"{DEFAULT_THRESHOLD:g})")
