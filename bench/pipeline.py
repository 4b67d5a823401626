"""The seed's reference pipeline, three ways, in one process tree (issue: fixed costs):

- `plain`: one PyTorch script as a careful researcher writes it (all cores, arrays in
  memory, the same step code and the same pure functions for the math);
- `cli`: the LatentAtlas commands a user types, one process each (`cli-up`: the same
  between `latentatlas up` and `down`);
- `warm`: the same steps called from one Python process with one warm Ray instance.

Pipeline: two dense 784-256-64-32-16 VAEs (BCE + KL, seeds 1 and 2, 10 epochs each on
Fashion-MNIST), encode the test split with both, stats of both, relocate 1 -> 2 on all fit
rows, sectors, support set, relocate fitted on the support set. Each side runs in its own
process; the parent compares wall times and the numbers (same seeds: they must agree), and
appends the ratios and every verb's time to bench/RESULTS.md.

    .venv/bin/python bench/pipeline.py [--epochs 10] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_section, median  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SEEDS = (1, 2)
CONFIG = REPO / "jobs" / "configs" / "fmnist_dense.yaml"
SEED_SETTING = ["--set", "kl.policy=elbo"]  # the posts' Keras VAE: BCE + KL
SIDES = ("plain", "cli", "cli-up", "warm")


def overrides(seed: int, epochs: int) -> list[str]:
    return [*SEED_SETTING, "--set", f"seed={seed}", "--set", f"train.epochs={epochs}",
            "--set", f"name=pipeline-s{seed}"]


# ---------------------------------------------------------------- the plain script

def plain(epochs: int) -> dict:
    """What a researcher's script does, with the platform's step code and pure math."""
    import numpy as np
    import torch

    from analysis.information import ablation_errors, information_gain
    from analysis.latent import latent_stats, summary
    from analysis.linear_maps import fit_linear_map
    from analysis.moments import Moments
    from analysis.pairs import split_mask
    from analysis.sectors import sector_ids, sector_variables, select_support
    from analysis.studies.maps import DEFAULT_ESTIMATORS as ESTIMATORS  # what `relocate` fits
    from analysis.studies.sectors import DEFAULT_K, DEFAULT_THRESHOLD
    from analysis.variance import variance_loss
    from latentatlas.config import load_config
    from latentatlas.data import load_split
    from latentatlas.images import to_unit_float
    from latentatlas.losses import make_policy
    from latentatlas.models import build_model
    from latentatlas.train.common import epoch_batches
    from latentatlas.train.vae import evaluate, train_epoch

    times, out = {}, {}
    started = time.perf_counter()
    torch.set_num_threads(os.cpu_count())
    train, test = load_split("fashion-mnist", "train"), load_split("fashion-mnist", "test")
    device = torch.device("cpu")
    models = {}
    for seed in SEEDS:
        t0 = time.perf_counter()
        cfg = load_config(CONFIG, [o for o in overrides(seed, epochs) if o != "--set"])
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, train.images.shape[1:])
        policy = make_policy(cfg.kl.policy, cfg.kl.beta)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
        for epoch in range(cfg.train.epochs):
            torch.manual_seed(cfg.seed * 1_000_003 + epoch * 1009)
            train_epoch(model, optimizer, policy, train.images, epoch_batches(
                len(train.images), epoch, cfg.seed, 0, 1, cfg.train.batch_size), device)
        val = evaluate(model, test.images, policy, device)
        out[f"val_mse_s{seed}"] = val[1] / val[3]
        models[seed] = model.eval()
        times[f"train s{seed}"] = time.perf_counter() - t0

    codes = {}
    for seed, model in models.items():
        t0 = time.perf_counter()
        mus, logvars = [], []
        with torch.no_grad():
            for i in range(0, len(test.images), 1024):
                mu, logvar = model.encode(to_unit_float(test.images[i:i + 1024], device))
                mus.append(mu.numpy())
                logvars.append(logvar.numpy())
        codes[seed] = (np.concatenate(mus), np.concatenate(logvars))
        times[f"encode s{seed}"] = time.perf_counter() - t0

    x = torch.from_numpy(test.images.astype(np.float32) / 255)
    gains = {}
    for seed, model in models.items():
        t0 = time.perf_counter()
        mu, logvar = codes[seed]
        stats = latent_stats(Moments.of(mu), np.exp(logvar.astype(np.float64)).sum(axis=0))
        with torch.no_grad():
            z = torch.from_numpy(mu)
            recon = model.decode(z)
            sse = float((x - recon).pow(2).sum())
            torch.manual_seed(0)
            generated = model.decode(torch.randn(len(mu), mu.shape[1]))
            errors = sum(ablation_errors(model.decode, z[i:i + 1000], x[i:i + 1000])
                         for i in range(0, len(z), 1000))
        gains[seed] = information_gain(errors, len(z))
        metrics = {**summary(stats), **variance_loss(Moments.of(x.numpy()),
                                                     Moments.of(recon.numpy()), sse,
                                                     Moments.of(generated.numpy()))}
        out[f"inactive_s{seed}"] = metrics["latent/inactive"]
        out[f"mse_recon_s{seed}"] = metrics["variance_loss/mse_recon"]
        times[f"stats s{seed}"] = time.perf_counter() - t0

    (a, b), index = (codes[SEEDS[0]][0], codes[SEEDS[1]][0]), np.arange(len(test.images))
    fit, held = split_mask(index, "fit"), split_mask(index, "eval")
    target = models[SEEDS[1]]

    def m_of(maps: dict) -> dict:
        with torch.no_grad():
            return {name: float((target.decode(torch.from_numpy(
                m(a[held]).astype(np.float32))) - x[held]).pow(2).mean())
                for name, m in maps.items()}

    t0 = time.perf_counter()
    out["M_all"] = m_of({e: fit_linear_map(a[fit], b[fit], e) for e in ESTIMATORS})
    times["relocate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    mu, logvar = codes[SEEDS[0]]
    var_mu, sigma2 = mu.var(axis=0), np.exp(logvar.astype(np.float64)).mean(axis=0)
    variables = sector_variables(gains[SEEDS[0]], var_mu, sigma2, DEFAULT_K)
    ids = sector_ids(mu, variables, DEFAULT_THRESHOLD)
    out["nonempty_sectors"] = int(len(np.unique(ids[ids >= 0])))
    times["sectors"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    support = select_support(ids, mu.shape[1], 0)
    times["support-set"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    # sorted as the platform reads them: a rank-deficient Procrustes fit depends on row order
    rows = np.sort(select_support(ids, mu.shape[1], 0, fit))
    out["M_support"] = m_of({e: fit_linear_map(a[rows], b[rows], e) for e in ESTIMATORS})
    out["support_size"] = len(support)
    times["relocate --fit support"] = time.perf_counter() - t0
    times["total"] = time.perf_counter() - started
    return {"times": times, "numbers": out}


# ---------------------------------------------------------------- the platform, as commands

def cli(epochs: int, work: Path, session: bool = False) -> dict:
    """The commands a user types, one process each, in `work` (its own MLflow store); with
    `session`, between `latentatlas up` and `down` (counted in the total)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    times, out, runs = {}, {}, {}
    started = time.perf_counter()

    def verb(label: str, *args: str) -> str:
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=work, env=env,
                              capture_output=True, text=True)
        times[label] = time.perf_counter() - t0
        if done.returncode:
            raise SystemExit(f"{label} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    if session:
        verb("up", "up")
    for seed in SEEDS:
        text = verb(f"train s{seed}", "train", str(CONFIG), *overrides(seed, epochs))
        runs[seed] = re.search(r"MLflow run id: ([0-9a-f]{32})", text).group(1)
    for seed in SEEDS:
        verb(f"encode s{seed}", "encode", "--model", f"runs:/{runs[seed]}/model",
             "--data", "fashion-mnist:test", "--out", f"enc-s{seed}")
    for seed in SEEDS:
        verb(f"stats s{seed}", "stats", f"enc-s{seed}")
    a, b = "enc-s1", "enc-s2"
    verb("relocate", "relocate", "--source", a, "--target", b, "--fit", "all")
    verb("sectors", "sectors", a)
    verb("support-set", "support-set", a)
    verb("relocate --fit support", "relocate", "--source", a, "--target", b, "--fit",
         "support")
    if session:
        verb("down", "down")
    times["total"] = time.perf_counter() - started
    out.update(numbers_from_store(work))
    return {"times": times, "numbers": out}


def numbers_from_store(work: Path) -> dict:
    """The platform's numbers, read back from its MLflow store."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{work}/mlflow.db")
    experiment = client.get_experiment_by_name("latentatlas").experiment_id

    def runs(kind: str):
        return client.search_runs([experiment], f"tags.`latentatlas.kind` = '{kind}'",
                                  order_by=["attributes.start_time ASC"])

    out = {}
    for seed, run in zip(SEEDS, runs("train"), strict=True):
        out[f"val_mse_s{seed}"] = run.data.metrics["val/mse"]
    for seed, run in zip(SEEDS, runs("stats"), strict=True):
        out[f"inactive_s{seed}"] = run.data.metrics["latent/inactive"]
        out[f"mse_recon_s{seed}"] = run.data.metrics["variance_loss/mse_recon"]
    all_rows, support_rows = runs("relocate")
    # fit all names its maps <estimator>_full; a support fit's own maps have no suffix
    out["M_all"] = {k.removeprefix("relocation/M_").removesuffix("_full"): v
                    for k, v in all_rows.data.metrics.items()
                    if k.startswith("relocation/M_") and k.endswith("_full")}
    out["M_support"] = {k.removeprefix("relocation/M_"): v
                        for k, v in support_rows.data.metrics.items()
                        if k.startswith("relocation/M_") and k != "relocation/M_target_own"
                        and not re.search(r"_(full|support\d+)$", k)}
    (sectors,) = runs("sectors")
    out["nonempty_sectors"] = sectors.data.metrics["sectors/nonempty"]
    (support,) = runs("support-set")
    out["support_size"] = support.data.metrics["support/size"]
    return out


# ---------------------------------------------------------------- the platform, warm

def warm(epochs: int, work: Path) -> dict:
    """The same steps from one Python process: Ray started once, modules imported once."""
    os.chdir(work)
    times = {}
    started = time.perf_counter()
    from jobs import steps
    from latentatlas.config import load_config
    from latentatlas.encode.pipeline import encode
    from latentatlas.runtime import init_ray
    from latentatlas.tracking import Recorder
    from latentatlas.train.runner import train

    recorder = Recorder(f"sqlite:///{work}/mlflow.db", "latentatlas")
    init_ray()
    times["ray start + imports"] = time.perf_counter() - started
    runs = {}
    for seed in SEEDS:
        t0 = time.perf_counter()
        cfg = load_config(CONFIG, [o for o in overrides(seed, epochs) if o != "--set"])
        runs[seed] = train(cfg, tracking_uri=recorder.uri, experiment=recorder.experiment).run_id
        times[f"train s{seed}"] = time.perf_counter() - t0
    for seed in SEEDS:
        t0 = time.perf_counter()
        encode(f"runs:/{runs[seed]}/model", "fashion-mnist", "test", work / f"enc-s{seed}",
               tracking_uri=recorder.uri)
        times[f"encode s{seed}"] = time.perf_counter() - t0
    for seed in SEEDS:
        t0 = time.perf_counter()
        steps.stats(recorder, f"enc-s{seed}")
        times[f"stats s{seed}"] = time.perf_counter() - t0
    for label, call in (
            ("relocate", lambda: steps.relocate(recorder, "enc-s1", "enc-s2", fit="all")),
            ("sectors", lambda: steps.sectors(recorder, "enc-s1")),
            ("support-set", lambda: steps.support_set(recorder, "enc-s1")),
            ("relocate --fit support",
             lambda: steps.relocate(recorder, "enc-s1", "enc-s2", fit="support"))):
        t0 = time.perf_counter()
        call()
        times[label] = time.perf_counter() - t0
    times["total"] = time.perf_counter() - started
    return {"times": times, "numbers": numbers_from_store(work)}


def fixed_costs() -> dict:
    """Fixed costs on a warm local instance: a no-op Ray Train fit, a trivial Ray Data
    pipeline, and one through an actor pool whose actors import torch (medians of 3)."""
    import numpy as np
    import ray

    from latentatlas.batches import actor_map
    from latentatlas.runtime import init_ray

    init_ray()

    class Identity:
        def __init__(self, use_gpu=False):
            import torch  # noqa: F401  (what an inference actor pays)

        def __call__(self, batch):
            return batch

    def timed(fn) -> float:
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        return float(np.median(runs))

    def noop_fit():
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        with tempfile.TemporaryDirectory() as storage:
            TorchTrainer(lambda config: None, scaling_config=ScalingConfig(num_workers=1),
                         run_config=RunConfig(storage_path=storage)).fit()

    def loop_import():
        import latentatlas.train.loop  # noqa: F401  (torch, ray.train, the objectives)

    # max_calls=1: a new worker process per call, so each pays what a training's task pays
    # on a cold worker (process start, the loop's imports); Ray reuses warm ones otherwise.
    single = ray.remote(num_cpus=1, max_calls=1)(loop_import)
    return {
        "ray train: a no-op fit (1 worker)": timed(noop_fit),
        "single-worker path: a task importing the loop (fresh worker)": timed(
            lambda: ray.get(single.remote())),
        "ray data: trivial pipeline": timed(
            lambda: ray.data.range(1000).map_batches(lambda b: b).take_all()),
        "ray data: actor pool (torch)": timed(
            lambda: actor_map(ray.data.range(1000), Identity, batch_size=100,
                              actors=2).take_all())}


def profile_verb(work: Path) -> dict:
    """Where a short command's time goes: imports, the tracking store, Ray's start and stop
    (which the short path now skips for small inputs)."""
    times = {}
    t0 = time.perf_counter()
    import jobs.steps  # noqa: F401  (torch, ray, analysis)
    times["profile: import torch, ray, analysis"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    from latentatlas.tracking import Recorder

    Recorder(f"sqlite:///{work}/mlflow.db", "profile")
    times["profile: import mlflow + open the store"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    import ray

    from latentatlas.runtime import init_ray

    init_ray()
    times["profile: start a local Ray"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ray.shutdown()
    times["profile: stop it"] = time.perf_counter() - t0
    return times


# ---------------------------------------------------------------- the comparison

def side(name: str, epochs: int) -> dict:
    """One side in its own process (nothing warm from the other sides)."""
    with tempfile.TemporaryDirectory(prefix=f"pipeline-{name}-") as work:
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--side", name, "--epochs",
                               str(epochs), "--work", work], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=work)
        wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"side {name} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["times"]["process wall"] = wall
    return result


def agree(a: dict, b: dict) -> list[str]:
    """Rows comparing the numbers of two sides (same seeds: equal within noise)."""
    lines = []
    for key in a:
        x, y = a[key], b.get(key)
        if isinstance(x, dict):
            for name in x:
                lines.append(f"| {key}[{name}] | {x[name]:.4g} | {y.get(name, float('nan')):.4g} |")
        else:
            lines.append(f"| {key} | {x:.4g} | {y:.4g} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--side", choices=("plain", "cli", "cli-up", "warm", "fixed", "profile"),
                   help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--fixed-costs", action="store_true",
                   help="only the fixed costs (about a minute), not the pipeline")
    args = p.parse_args()
    if args.fixed_costs:
        fixed = side("fixed", args.epochs)["times"]
        fixed.update(side("profile", args.epochs)["times"])
        fixed.pop("process wall")
        append_section("Fixed costs of the platform", [
            "Medians of 3 on a warm local Ray (the profile lines: one fresh process).", "",
            "| what | s |", "|---|---|", *(f"| {k} | {v:.2f} |" for k, v in fixed.items())])
        return
    if args.side:
        fn = {"plain": lambda: plain(args.epochs), "cli": lambda: cli(args.epochs,
                                                                        Path(args.work)),
              "cli-up": lambda: cli(args.epochs, Path(args.work), session=True),
              "warm": lambda: warm(args.epochs, Path(args.work)),
              "fixed": lambda: {"times": fixed_costs(), "numbers": {}},
              "profile": lambda: {"times": profile_verb(Path(args.work)), "numbers": {}}
              }[args.side]
        result = fn()
        print(json.dumps(result))
        return

    results = {name: [side(name, args.epochs) for _ in range(args.repeats)]
               for name in SIDES}
    total = {name: median(r["times"]["process wall"] for r in runs)
             for name, runs in results.items()}
    steps_ = list(results["cli"][0]["times"])
    lines = [f"Pipeline of the seed (2 dense VAEs x {args.epochs} epochs on Fashion-MNIST, "
             "encode, stats, relocate, sectors, support set, support-set relocate); "
             f"median of {args.repeats} runs per side, each side in its own process.", "",
             "| side | wall s | vs plain |", "|---|---|---|"]
    lines += [f"| {name} | {total[name]:.1f} | {total[name] / total['plain']:.2f}x |"
              for name in total]
    lines += ["", "| step | " + " | ".join(f"{n} s" for n in SIDES) + " |",
              "|---|" + "---|" * len(SIDES)]
    for step in dict.fromkeys(steps_ + list(results["cli-up"][0]["times"])
                              + ["ray start + imports"]):
        cells = [median(r["times"].get(step, float("nan")) for r in results[name])
                 for name in SIDES]
        lines.append(f"| {step} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
    fixed = side("fixed", args.epochs)["times"]
    fixed.pop("process wall")
    fixed.update({k: v for k, v in side("profile", args.epochs)["times"].items()
                  if k.startswith("profile")})
    fit = [median(w["times"][f"train s{s}"] for w in results["warm"]) -
           median(p["times"][f"train s{s}"] for p in results["plain"]) for s in SEEDS]
    fixed["Ray Train fit + MLflow model logging, beyond the plain loop's training"] = median(fit)
    lines += ["", "Fixed costs (seconds):", "", "| what | s |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in fixed.items()]
    lines += ["", "Numbers (first run of each side; same seeds, so they must agree within "
              "noise):", "", "| number | plain | cli |", "|---|---|---|"]
    lines += agree(results["plain"][0]["numbers"], results["cli"][0]["numbers"])
    append_section("Pipeline: LatentAtlas vs a plain script", lines)


if __name__ == "__main__":
    main()
