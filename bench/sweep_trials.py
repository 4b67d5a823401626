"""What a sweep trial costs besides its training (issue #30, part 3): the seed's 6-trial sweep
(KL policy x latent size, jobs/configs/sweep_fmnist.yaml) on a small slice of Fashion-MNIST,
as `latentatlas sweep` in a fresh process, medians of REPEATS. With `--against DIR` (a
checkout of an earlier commit) the same sweep runs from that tree too, alternating, in this
sitting, and the section gives before / now ratios.

Per trial, the MLflow train run's own time (its start to its end) is the training with its
start-up; the sweep's wall time adds Ray, the parent run and how many trials ran at once.

    .venv/bin/python bench/sweep_trials.py [--against /tmp/old] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_section, before_now_table, median  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def write_sweep(folder: Path, limit: int, epochs: int) -> Path:
    sweep = yaml.safe_load((REPO / "jobs/configs/sweep_fmnist.yaml").read_text())
    base = yaml.safe_load((REPO / "jobs/configs/fmnist_dense.yaml").read_text())
    base["data"]["limit"] = limit
    base["train"]["epochs"] = epochs
    sweep.update(base=base, stats={"enabled": False})  # the trials only: stats are the same
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def one_sweep(tree: Path, config: Path, folder: Path) -> dict:
    """Wall time of the sweep command, and the median and sum of its trials' run times."""
    import mlflow

    env = {**os.environ, "PYTHONPATH": f"{tree / 'platform'}{os.pathsep}{tree}",
           "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jobs.cli", "sweep", str(config), "--tracking-uri",
                    uri], cwd=folder, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    runs = mlflow.MlflowClient(uri).search_runs(
        [mlflow.MlflowClient(uri).get_experiment_by_name("latentatlas").experiment_id],
        "tags.`latentatlas.kind` = 'train'")
    seconds = [(r.info.end_time - r.info.start_time) / 1000 for r in runs]
    assert len(seconds) == 6 and all(r.info.status == "FINISHED" for r in runs), \
        f"{tree}: the sweep did not finish its 6 trials"
    return {"wall": wall, "trial": median(seconds), "trials_sum": sum(seconds)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--against", type=Path, default=None, help="an earlier checkout")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--limit", type=int, default=2000, help="images of each split")
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    trees = {"now": REPO, **({"before": args.against.resolve()} if args.against else {})}
    samples = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        config = write_sweep(Path(tmp), args.limit, args.epochs)
        for i in range(args.repeats):
            for name, tree in trees.items():  # alternating: a slow minute hits both sides
                folder = Path(tmp) / f"{name}-{i}"
                folder.mkdir()
                samples[name].append(one_sweep(tree, config, folder))
                print(name, i, samples[name][-1], flush=True)
    rows = {name: {k: median(s[k] for s in runs) for k in runs[0]}
            for name, runs in samples.items()}
    labels = {"wall": "sweep, wall", "trial": "one trial's run (median)",
              "trials_sum": "the 6 trials' runs, summed"}
    lines = [f"The seed's sweep, 6 trials (2 KL policies x latent 8/16/32) of the dense VAE, "
             f"{args.epochs} epochs on {args.limit} Fashion-MNIST images, latent stats off; "
             f"`latentatlas sweep` in a fresh process, medians of {args.repeats}.", "",
             *before_now_table({label: {n: rows[n][key] for n in trees}
                                for key, label in labels.items()}, list(trees), 1, 2)]
    append_section("Sweep trials (bench/sweep_trials.py)", lines)


if __name__ == "__main__":
    main()
