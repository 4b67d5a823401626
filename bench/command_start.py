"""How fast commands start (issue #30): every verb's `--help`, and `latentatlas runs` on a
SQLite store of 100 runs, each in a fresh interpreter, medians of REPEATS. With `--against
DIR` (a checkout of an earlier commit) the same commands run from that tree too, side by
side in this sitting, and the section gives before / after ratios.

    .venv/bin/python bench/command_start.py [--against /tmp/old] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_section, before_now_table, median  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def seconds(tree: Path, argv: list[str], cwd: Path, repeats: int) -> float:
    """Median wall time of `python -m jobs.cli ARGV` with `tree`'s code first on the path."""
    env = {**os.environ, "PYTHONPATH": f"{tree / 'platform'}{os.pathsep}{tree}"}
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "jobs.cli", *argv], cwd=cwd, env=env,
                       check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return median(times)


def store_of_100_runs(folder: Path) -> None:
    import mlflow
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    eid = client.create_experiment("latentatlas")
    for i in range(100):
        run = client.create_run(eid, run_name=f"run-{i}", tags={"latentatlas.kind": "train"})
        client.log_batch(run.info.run_id, metrics=[
            Metric(k, 0.01 * i, 0, step) for k in ("val/mse", "val/kl") for step in range(10)],
            params=[Param("model.name", "dense_vae"), Param("model.latent_dim", "16")])
        client.set_terminated(run.info.run_id)


def main() -> None:
    from jobs.cli import VERBS

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--against", type=Path, default=None, help="an earlier checkout")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    trees = {"now": REPO, **({"before": args.against.resolve()} if args.against else {})}
    with tempfile.TemporaryDirectory() as tmp:
        store_of_100_runs(Path(tmp))
        commands = [[verb, "--help"] for verb in VERBS] + [["runs", "--limit", "100"]]
        rows = {" ".join(c): {name: seconds(tree, c, Path(tmp), args.repeats)
                              for name, tree in trees.items()} for c in commands}
    lines = [f"Wall time of `python -m jobs.cli ...` in a fresh interpreter, median of "
             f"{args.repeats}; `runs` on a SQLite store of 100 runs. Targets: `--help` under "
             "0.3 s, `runs` under 1.5 s.", "",
             *before_now_table({f"`{c}`": t for c, t in rows.items()}, list(trees), 2, 1)]
    append_section("Command start (bench/command_start.py)", lines)


if __name__ == "__main__":
    main()
