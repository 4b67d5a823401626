"""Running a sweep: the parent MLflow run, a Tuner with one driver per trial, the summary.

Each trial is a Tune function (a "driver") that trains its config. A one-worker training
without restarts runs the spine's loop in the driver's own process, which Tune gave the
worker's resources, and reports to Tune directly; others fit the spine's TorchTrainer with a
TuneReportCallback (Ray 2.60 cannot hand a V2 TorchTrainer to a Tuner). The driver is
idempotent: it finds its MLflow child run by trial id, skips training when that run already
finished, and otherwise continues it from its last checkpoint in the run's folder. That
makes `--resume` safe after a killed sweep, whatever Tune's own saved state says.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
import ray
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from latentatlas import environment, tracking, tracking_store
from latentatlas.config import set_path, validate
from latentatlas.errors import UserError
from latentatlas.runtime import init_ray
from latentatlas.tune.spec import (
    FAMILY_METRICS,
    SWEEP_STATE,
    TAG_STOPPED,
    TAG_SWEEP,
    TAG_TRIAL,
    SweepConfig,
    best_row,
    curves,
    driver_resources,
    fitting_trials,
    trial_config,
    trial_resources,
    trial_status,
)

LATENT_DIM = "model.latent_dim"


@dataclass
class SweepOutcome:
    parent_run_id: str
    path: str  # the Tune experiment directory: what `--resume` takes
    rows: list[dict]  # one per trial (sweep.trial_rows)
    best: dict | None
    interrupted: bool = False
    space: tuple[str, ...] = ()  # the swept keys


def child_runs(client, experiment_id: str, parent_run_id: str, kind: str) -> list:
    return client.search_runs(
        [experiment_id],
        f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`latentatlas.kind` = '{kind}'",
        max_results=10_000)


def trial_driver(values: dict, *, context: dict) -> None:
    """One Tune trial: train the trial's config in a child run of the sweep's run."""
    from latentatlas.train.runner import train

    trial_id = tune.get_context().get_trial_id()
    tracking_store.use_login(context.get("login"))
    uri = tracking_store.setup(context["tracking_uri"], context["experiment"])
    cfg = trial_config(context["base"], {**values, "name": f"{context['sweep']}-{trial_id}"})
    client = mlflow.MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(context["experiment"]).experiment_id
    previous = [r for r in child_runs(client, experiment_id, context["parent_run_id"], "train")
                if r.data.tags.get(TAG_TRIAL) == trial_id]
    if previous and previous[0].info.status == "FINISHED":
        # Finished before the sweep was interrupted: hand Tune its result, train nothing.
        tune.report({**previous[0].data.metrics, "epoch": cfg.train.epochs})
        return
    out = train(cfg, tracking_uri=uri, experiment=context["experiment"],
                command=context["command"],
                resume_run_id=previous[0].info.run_id if previous else None,
                parent_run_id=context["parent_run_id"],
                tune_reports=TrialReports(cfg.train.epochs),
                tags={TAG_TRIAL: trial_id, TAG_SWEEP: context["sweep"],
                      "latentatlas.swept": json.dumps(values, sort_keys=True)})
    tune.report({**out.metrics, "epoch": cfg.train.epochs})


class TrialReports:
    """A trial's epochs to Tune, every one but the last. The last is reported by the driver
    once the run has logged its model and ended: a scheduler answers a trial's final epoch
    with STOP, and Tune's stop kills the driver, which must not happen halfway through that
    logging. Called with each epoch's metrics when the loop runs in the driver's process;
    a Ray Train run reports through `callback()`."""

    def __init__(self, last_epoch: int):
        self.last_epoch = last_epoch

    def __call__(self, metrics: dict) -> None:
        if metrics.get("epoch", 0) < self.last_epoch:
            tune.report(metrics)

    def callback(self) -> TuneReportCallback:
        return EpochReports(self.last_epoch)


class EpochReports(TuneReportCallback):
    """TrialReports from a Ray Train run: its callbacks run in Train's controller, which
    hands the metrics to the trial's process through a queue."""

    def __init__(self, last_epoch: int):
        super().__init__()
        self.last_epoch = last_epoch

    def after_report(self, run_context, metrics, checkpoint):
        if metrics[0].get("epoch", 0) < self.last_epoch:
            super().after_report(run_context, metrics, checkpoint)


class TrialLines(tune.Callback):
    """A line per trial as it ends, for logs where Tune's status tables are switched off."""

    def __init__(self, metric: str):
        self.metric = metric

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        print(f"trial {trial.trial_id} ended after epoch {last.get('epoch', '?')}: "
              f"{self.metric}={last.get(self.metric, float('nan')):.4g}  {trial.config}",
              flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        print(f"trial {trial.trial_id} failed: {trial.config} (see {trial.local_path})",
              flush=True)


def storage_root(sweep: SweepConfig) -> str:
    path = sweep.storage_path or "ray_results"
    return path if "://" in path else str(Path(path).resolve())


def write_state(experiment_path: str, state: dict) -> None:
    """The sweep's own state beside Tune's: its config and parent run (temp file + move)."""
    import pyarrow.fs

    fs, root = pyarrow.fs.FileSystem.from_uri(experiment_path)
    fs.create_dir(root, recursive=True)
    with fs.open_output_stream(f"{root}/{SWEEP_STATE}.tmp") as out:
        out.write(json.dumps(state, indent=2).encode())
    fs.move(f"{root}/{SWEEP_STATE}.tmp", f"{root}/{SWEEP_STATE}")


def read_state(experiment_path: str) -> dict:
    import pyarrow.fs

    fs, root = pyarrow.fs.FileSystem.from_uri(experiment_path)
    try:
        with fs.open_input_stream(f"{root}/{SWEEP_STATE}") as f:
            raw = f.read()
    except (FileNotFoundError, OSError):
        raise UserError(f"--resume {experiment_path}: no sweep there ({SWEEP_STATE} missing); "
                        f"give the sweep directory or its name") from None
    try:
        state = json.loads(raw)
    except ValueError as e:
        raise UserError(f"--resume {experiment_path}: {SWEEP_STATE} is damaged (not valid "
                        f"JSON: {e})") from None
    missing = [k for k in ("sweep", "parent_run_id", "tracking_uri", "experiment")
               if not isinstance(state, dict) or k not in state]
    if missing:
        raise UserError(f"--resume {experiment_path}: {SWEEP_STATE} is damaged (lacks "
                        f"{', '.join(missing)})")
    return state


def start_sweep(config: SweepConfig, *, measure=None, tracking_uri: str | None = None,
                experiment: str | None = None, ray_address: str | None = None,
                command: str | None = None) -> SweepOutcome:
    """Start a new sweep: its parent run, its saved state, then the trials (`command`: what
    started them, their runs' source)."""
    recorder = tracking.Recorder(tracking_uri, experiment, command)
    init_ray(ray_address)
    path = f"{storage_root(config)}/{config.name}"
    if tune.Tuner.can_restore(path):
        raise UserError(f"sweep {config.name!r} already exists at {path}: continue it with "
                        f"--resume {path}, or name this one differently (--set name=...)")
    client = recorder.client
    run_id = recorder.create(f"sweep {config.name}", "sweep", tags={
        TAG_SWEEP: config.name, "latentatlas.sweep_path": path})
    for key, value in {"metric": config.metric, "mode": config.mode,
                       "scheduler": config.scheduler, "num_samples": config.num_samples,
                       **{f"space.{k}": json.dumps(d.model_dump(exclude_none=True))
                          for k, d in config.space.items()}}.items():
        client.log_param(run_id, key, value)
    client.log_dict(run_id, {k: d.model_dump(exclude_none=True)
                             for k, d in config.space.items()}, "search_space.json")
    client.log_dict(run_id, config.base, "base_config.yaml")
    state = {"sweep": config.model_dump(), "parent_run_id": run_id,
             "tracking_uri": recorder.uri,
             "experiment": recorder.experiment}
    write_state(path, state)
    print(f"sweep {config.name}: MLflow run {run_id}; resume with --resume {path}", flush=True)
    return execute(recorder, state, path, restore=False, measure=measure)


def resume_sweep(where: str, *, measure=None, tracking_uri: str | None = None,
                 experiment: str | None = None, ray_address: str | None = None,
                 storage_path: str | None = None, command: str | None = None) -> SweepOutcome:
    """Continue an interrupted sweep from its directory (or its name under the storage path)
    without rerunning finished trials."""
    if "://" in where or Path(where).is_dir():
        path = where if "://" in where else str(Path(where).resolve())
    else:
        root = storage_path or "ray_results"
        path = f"{root if '://' in root else Path(root).resolve()}/{where}"
    state = read_state(path)
    recorder = tracking.Recorder(tracking_uri or state["tracking_uri"],
                                 experiment or state["experiment"], command)
    init_ray(ray_address)
    if not tune.Tuner.can_restore(path):
        raise UserError(f"--resume {path}: Tune saved no state there yet; start the sweep again")
    print(f"resuming sweep at {path} (MLflow run {state['parent_run_id']})", flush=True)
    return execute(recorder, state, path, restore=True, measure=measure)


def execute(recorder, state: dict, path: str, restore: bool, measure=None) -> SweepOutcome:
    """Fit (or restore) the Tuner, then summarise. `measure(config, context, row)` returns
    latent statistics for a finished trial (the `sweep` job passes encode + stats)."""
    config = SweepConfig.model_validate(state["sweep"])
    storage = storage_root(config)
    # Trials write Ray Train runs next to the sweep: an absolute path, the same on every node
    # (Tune would otherwise resolve a relative one inside each trial's directory).
    base = set_path(config.base, ["train", "storage_path"], storage)
    base_cfg = validate(base, "base")
    context = {"base": base, "sweep": config.name, "parent_run_id": state["parent_run_id"],
               "tracking_uri": state["tracking_uri"], "experiment": state["experiment"],
               "command": recorder.command,
               # the trials' login: in their task, not in the sweep's state on disk
               "login": tracking_store.login(recorder.uri)}
    trainable = tune.with_resources(tune.with_parameters(trial_driver, context=context),
                                    driver_resources(base_cfg, config.driver_cpus))
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"  # relative data paths keep working in trials
    try:
        with recorder.run(run_id=state["parent_run_id"]):
            if restore:
                tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True,
                                           resume_errored=True)
            else:
                tuner = tune.Tuner(
                    trainable,
                    param_space={k: d.to_tune() for k, d in config.space.items()},
                    tune_config=tune.TuneConfig(
                        metric=config.metric, mode=config.mode, num_samples=config.num_samples,
                        scheduler=scheduler(config, base_cfg.train.epochs),
                        max_concurrent_trials=config.max_concurrent or fitting_trials(
                            trial_resources(base_cfg, config.driver_cpus),
                            ray.cluster_resources()),
                        trial_name_creator=lambda t: t.trial_id,
                        trial_dirname_creator=lambda t: t.trial_id),
                    run_config=tune.RunConfig(
                        name=config.name, storage_path=storage,
                        callbacks=[TrialLines(config.metric)],
                        verbose=1 if environment.at_terminal(sys.stdout) else 0))
            grid = tuner.fit()
            if grid.num_terminated + grid.num_errors < len(grid):  # Ctrl-C: Tune saved it
                raise tracking.Interrupted()
            rows = summarise(config, context, grid, recorder, measure)
    except tracking.Interrupted:
        return SweepOutcome(state["parent_run_id"], path, [], None, interrupted=True)
    return SweepOutcome(state["parent_run_id"], path, rows,
                        best_row(rows, config.metric, config.mode), space=tuple(config.space))


def scheduler(config: SweepConfig, epochs: int):
    if config.scheduler == "fifo":
        return None
    from ray.tune.schedulers import ASHAScheduler

    # "epoch" rather than Tune's iteration count: a resumed trial continues its epochs.
    return ASHAScheduler(time_attr="epoch", max_t=epochs,
                         grace_period=config.asha.grace_period,
                         reduction_factor=config.asha.reduction_factor)


def wait_while_running(recorder, run_id: str, timeout_s: float = 15.0) -> None:
    """A trial Tune stopped may still be unwinding in its driver, which then ends its run
    FAILED: marking it KILLED before that would be overwritten (seen as a flaky test). A
    driver killed outright never ends its run: no wait once its process is gone, else the
    timeout."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = recorder.client.get_run(run_id)
        if run.info.status != "RUNNING" or recorder.owner_gone(run):
            return
        time.sleep(0.2)


def summarise(config: SweepConfig, context: dict, grid, recorder, measure=None) -> list[dict]:
    """A row per trial (its values, status and final metrics, plus latent statistics of the
    finished ones), logged to the parent run as a table, metrics and the sweep's figure."""
    client, parent = recorder.client, context["parent_run_id"]
    runs = {r.data.tags.get(TAG_TRIAL): r
            for r in child_runs(client, recorder.experiment_id, parent, "train")}
    family = validate(context["base"], "base").family
    rows = []
    for result in grid:
        # Tune puts the id in every result; a restored trial's directory gets a suffix.
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
        run = runs.get(trial_id)
        status = trial_status(run.info.status if run else None, result.error is not None)
        if run and status == "stopped_early":
            wait_while_running(recorder, run.info.run_id)
            client.set_tag(run.info.run_id, TAG_STOPPED, config.scheduler)
            client.set_terminated(run.info.run_id, "KILLED")
        metrics = run.data.metrics if run else {}
        rows.append({"trial": trial_id, "run_id": run.info.run_id if run else "",
                     "status": status, **{k: result.config.get(k) for k in config.space},
                     LATENT_DIM: trial_config(context["base"], result.config).model.latent_dim,
                     "epochs": (result.metrics or {}).get("epoch", 0),
                     **{k: metrics.get(k) for k in FAMILY_METRICS[family]},
                     **{k: v for k, v in metrics.items() if k.startswith(("fid/", "kid/"))}})
    if config.stats.enabled and measure and family == "vae":  # latent stats of VAEs
        for row in rows:
            if row["status"] == "finished":
                row.update(measure(config, context, row))
    rows.sort(key=lambda r: r["trial"])
    log_summary(config, parent, rows, client)
    return rows


def sample_quality_rows(rows: list[dict], space) -> list[dict]:
    """One row per (trial, extractor, sampler) from trial rows holding `fid/<extractor>` (the
    prior) and `fid/<extractor>/<sampler>` keys: FID vs the swept values x sampler."""
    out = []
    for r in rows:
        for key, fid in r.items():
            if not key.startswith("fid/") or fid is None:
                continue
            extractor, _, sampler = key[len("fid/"):].partition("/")
            out.append({"trial": r["trial"], **{k: r.get(k) for k in space},
                        "extractor": extractor, "sampler": sampler or "prior", "fid": fid,
                        "kid": r.get(f"kid/{key[len('fid/'):]}")})
    return out


def log_summary(config: SweepConfig, parent: str, rows: list[dict], client) -> None:
    from latentatlas.plots import sweep_curves

    columns = list(dict.fromkeys(k for r in rows for k in r))
    client.log_table(parent, {c: [r.get(c) for r in rows] for c in columns}, "trials.json")
    quality = sample_quality_rows(rows, config.space)
    if quality:
        client.log_table(parent, {c: [r[c] for r in quality] for c in quality[0]},
                         "fid_by_sampler.json")
    counts = {s: sum(r["status"] == s for r in rows)
              for s in ("finished", "stopped_early", "failed")}
    for key, value in {"sweep/trials": len(rows), **{f"sweep/{k}": v for k, v in
                                                     counts.items()}}.items():
        client.log_metric(parent, key, value)
    best = best_row(rows, config.metric, config.mode)
    if best:
        client.log_metric(parent, f"best/{config.metric}", best[config.metric])
        client.set_tag(parent, "best_trial", best["trial"])
        client.set_tag(parent, "best_run_id", best["run_id"])
        for key in config.space:
            client.set_tag(parent, f"best.{key}", json.dumps(best[key]))
    if LATENT_DIM in config.space and any(r.get("latent/active_units") is not None
                                          for r in rows):
        by = [k for k in config.space if k not in (LATENT_DIM, "seed")]
        done = [r for r in rows if r["status"] == "finished"]
        fig = sweep_curves({"active units (Burda)": curves(done, LATENT_DIM,
                                                           "latent/active_units", by),
                            "inactive variables": curves(done, LATENT_DIM,
                                                         "latent/inactive", by),
                            "val/mse": curves(done, LATENT_DIM, "val/mse", by)},
                           xlabel="latent size", diagonal="active units (Burda)")
        tracking.log_figure(fig, "active_units_vs_latent_dim.png", run_id=parent)
