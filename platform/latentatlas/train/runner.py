"""The driver side of training: data into the object store, a TorchTrainer, MLflow records."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import ray
from ray.train import (
    Checkpoint,
    CheckpointConfig,
    FailureConfig,
    LoggingConfig,
    RunConfig,
    ScalingConfig,
)
from ray.train.torch import TorchTrainer

from latentatlas import model_store, tracking, tracking_store
from latentatlas.config import ExperimentConfig
from latentatlas.errors import UserError
from latentatlas.losses import authors_kl_weight
from latentatlas.models import build_model
from latentatlas.record import Record
from latentatlas.runtime import check_resources, init_ray
from latentatlas.train.families import FAMILIES
from latentatlas.train.family import Family, Inputs, Trained
from latentatlas.train.loop import (
    CHECKPOINT_FILE,
    DamagedCheckpoint,
    load_checkpoint,
    run_single_worker,
    train_loop_per_worker,
)

TAG_TRAIN_NAME = "latentatlas.ray_train_name"
TAG_STORAGE = "latentatlas.ray_storage_path"


@dataclass
class TrainOutcome:
    run_id: str
    metrics: dict
    checkpoint_path: str
    model_uri: str
    notes: list[str] = field(default_factory=list)  # warnings the caller should print
    registered: str | None = None  # a classifier's models:/name/version


def storage_path(cfg: ExperimentConfig) -> str:
    """Absolute local path (default ./ray_results), or a URI such as s3://... as given."""
    path = cfg.train.storage_path or "ray_results"
    return path if "://" in path else str(Path(path).resolve())


def worker_cpus(t) -> float:
    """CPUs (and torch threads) per worker: as configured; else a lone CPU training gets the
    largest node's CPUs (one training should not use 1 core of many), others 1 each."""
    if t.cpus_per_worker:
        return t.cpus_per_worker
    if t.num_workers > 1 or t.use_gpu:
        return 1.0
    nodes = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]]
    return max([1.0, *nodes])


def with_worker_cpus(cfg: ExperimentConfig) -> ExperimentConfig:
    return cfg.model_copy(update={"train": cfg.train.model_copy(
        update={"cpus_per_worker": worker_cpus(cfg.train)})})


def scaling(cfg: ExperimentConfig) -> ScalingConfig:
    t = cfg.train
    return ScalingConfig(num_workers=t.num_workers, use_gpu=t.use_gpu,
                         resources_per_worker={"CPU": t.cpus_per_worker,
                                               **({"GPU": 1} if t.use_gpu else {})})


@dataclass
class SingleWorkerResult:
    """What `train` reads of a Ray Train Result, from a single-worker training."""

    return_value: dict
    metrics: dict
    checkpoint: Checkpoint | None


def run_single(cfg: ExperimentConfig, config: dict, name: str,
               tune_reports=None) -> SingleWorkerResult:
    """A `train.single_worker` training: one Ray task holding the worker's resources, or,
    for a Tune trial, the trial's own process (which already holds them)."""
    t = cfg.train
    folder = Path(storage_path(cfg)) / name
    folder.mkdir(parents=True, exist_ok=True)
    if tune_reports is not None:
        out = run_single_worker(config, str(folder), t.checkpoints_to_keep, t.use_gpu,
                                tune_reports)
    else:
        task = ray.remote(run_single_worker).options(
            num_cpus=t.cpus_per_worker, num_gpus=1 if t.use_gpu else 0, max_retries=0,
            name=f"train {name}")
        ref = task.remote(config, str(folder), t.checkpoints_to_keep, t.use_gpu)
        try:
            out = ray.get(ref)
        except LOST_WORKER as e:
            raise UserError(lost_worker_line(name, ref, e)) from e
        except ray.exceptions.RayError as e:
            raise RuntimeError(f"training run {name!r} failed: {e}") from e
    checkpoint = out["checkpoint"] and Checkpoint.from_directory(out["checkpoint"])
    return SingleWorkerResult(out["return_value"], out["metrics"], checkpoint)


# A one-worker training's process or node gone: the machine's fault, not the training's.
LOST_WORKER = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
               ray.exceptions.OutOfMemoryError)
WHY_LOST = {ray.exceptions.NodeDiedError: "was lost with its node",
            ray.exceptions.OutOfMemoryError: "was killed by Ray's memory monitor (its node ran "
                                             "out of memory)"}


def lost_worker_line(name: str, ref: ray.ObjectRef, error: Exception) -> str:
    """One line for a one-worker training (no restarts) whose worker was lost: why, where
    (the task's node, from Ray's task records where the state API answers) and how to go
    on."""
    why = WHY_LOST.get(type(error), "died (killed, or out of memory)")
    where = ""
    try:
        from ray.util.state import get_task

        attempts = get_task(ref, address=ray.get_runtime_context().gcs_address,
                            timeout=5)  # its attempts (one: no retries)
        attempt = attempts[-1] if isinstance(attempts, list) else attempts
        node = next(n for n in ray.nodes() if n["NodeID"] == attempt.node_id)
        where = f" (pid {attempt.worker_pid} on node {node['NodeManagerAddress']})"
    except Exception:  # the state API needs the dashboard: the line goes without it
        pass
    return (f"training run {name!r}: its worker{where} {why}; rerun it (a study's step: "
            "latentatlas run --resume RUN_ID), or set train.max_failures: 1 for Ray Train to "
            "continue it from its last checkpoint on the nodes that remain")


def run_trainer(cfg: ExperimentConfig, data: dict, name: str, mlflow_target: dict | None,
                tune_reports=None):
    """Fit a TorchTrainer, or run the loop in one process (`train.single_worker`); the same
    call serves `train` runs and Tune trials. `data` is what the objective reads (`train`/
    `val` images, a recoder's `generator`): arrays another process reads go through the
    object store once. `tune_reports` (a Tune trial's) gets each epoch's metrics: called
    in this process, or through its Ray Train `callback()`."""
    in_process = tune_reports is not None and cfg.train.single_worker
    config = {"experiment": cfg.model_dump(), "mlflow": mlflow_target,
              "data": {k: v if v is None or in_process else ray.put(v)
                       for k, v in data.items()}}
    if cfg.train.single_worker:
        return run_single(cfg, config, name, tune_reports)
    folder = Path(storage_path(cfg)) / name
    if "://" not in str(folder) and any(folder.glob("checkpoint_*")) and not (
            folder / "checkpoint_manager_snapshot.json").exists():
        # Ray Train restores from its own snapshot: without it, it would start again.
        raise UserError(f"{folder}: this run's checkpoints were written by a one-worker "
                        "training without restarts; continue it with train.num_workers=1 "
                        "and train.max_failures=0")
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=scaling(cfg),
        run_config=RunConfig(
            name=name, storage_path=storage_path(cfg),
            failure_config=FailureConfig(max_failures=cfg.train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.checkpoints_to_keep),
            callbacks=None if tune_reports is None else [tune_reports.callback()],
            logging_config=LoggingConfig(log_level="WARNING")),
    )
    try:
        return trainer.fit()
    except Exception as e:  # TrainingFailedError wraps the worker's exception
        raise RuntimeError(f"training run {name!r} failed: {e}") from e


def model_from_checkpoint(cfg: ExperimentConfig, checkpoint, input_shape):
    with checkpoint.as_directory() as d:
        try:
            state = load_checkpoint(Path(d))
        except DamagedCheckpoint as e:
            raise UserError(str(e)) from None
    return model_from_state(cfg, state, input_shape, Path(d) / CHECKPOINT_FILE)


def model_from_state(cfg: ExperimentConfig, state: dict, input_shape, where: Path):
    """The model of a checkpoint's state; one line when it is not this config's model or
    holds non-finite weights."""
    model = build_model(cfg.model, input_shape)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, ValueError) as e:
        raise UserError(f"{where}: the checkpoint is not of this config's model "
                        f"({cfg.model.name}): {' '.join(str(e).split())[:250]}") from None
    if bad := model_store.non_finite_tensor(state["model"]):
        raise UserError(f"{where}: the checkpoint holds non-finite weights ({bad}); remove "
                        "it to continue from the one before")
    return model.eval()


def check_resume_checkpoint(cfg: ExperimentConfig, name: str, input_shape) -> None:
    """Before a training continues from its latest checkpoint (a resume, a rerun of the same
    run name), the driver reads that checkpoint: a truncated file, another model's state or
    non-finite weights are one line naming the file, not a traceback from a worker."""
    folder = Path(storage_path(cfg)) / name
    if "://" in str(folder) or not folder.is_dir():
        return
    latest = sorted(p for p in folder.glob("checkpoint_*") if (p / CHECKPOINT_FILE).exists())
    if not latest:
        return
    try:
        state = load_checkpoint(latest[-1])
    except DamagedCheckpoint as e:
        raise UserError(f"{e}; remove {latest[-1]} to continue from the one before") from None
    model_from_state(cfg, state, input_shape, latest[-1] / CHECKPOINT_FILE)


def resolve(cfg: ExperimentConfig, ray_address: str | None) -> tuple[
        ExperimentConfig, Family, Inputs]:
    """What a training needs before its run opens: Ray, the resources it asks for, and its
    family's inputs (checked here, so bad input opens no run)."""
    init_ray(ray_address)
    cfg = with_worker_cpus(cfg)
    if cfg.train.use_gpu:
        check_resources({"GPU": cfg.train.num_workers}, "train.use_gpu")
    family = FAMILIES[cfg.family]
    cfg, inputs = family.inputs(cfg)
    try:  # here, not in a worker: a model that cannot take these inputs is one clear line
        build_model(cfg.model, inputs.input_shape)
    except ValueError as e:
        raise UserError(f"model: {e}") from None
    return cfg, family, inputs


def opened(recorder: tracking.Recorder, cfg: ExperimentConfig, inputs: Inputs,
           resume_run_id: str | None, parent_run_id: str | None,
           tags: dict | None) -> tuple[str, str, Record]:
    """The training's run (a new one, or `resume_run_id`), its Ray Train name, and what the
    run is to hold from the start."""
    first = Record("train", cfg.name, dicts={"config.yaml": cfg.model_dump()},
                   datasets=inputs.datasets)
    if resume_run_id:
        name = recorder.client.get_run(resume_run_id).data.tags.get(TAG_TRAIN_NAME)
        if not name:
            raise UserError(f"--resume {resume_run_id}: that MLflow run is not a train run")
        return resume_run_id, name, first
    run_id = recorder.create(cfg.name, "train", parent_run_id, {
        "latentatlas.family": cfg.family,
        "dataset": inputs.spec_extra.get("dataset") or cfg.data.name, **(tags or {})})
    name = f"{cfg.name}-{run_id[:8]}"
    first.params = tracking.flatten(cfg.model_dump())
    if cfg.kl.beta == "authors":  # the weight it resolves to, beside the rule's name
        first.params["kl.weight"] = authors_kl_weight(inputs.input_shape[-1],
                                                      cfg.model.latent_dim)
    first.tags = {TAG_TRAIN_NAME: name, TAG_STORAGE: storage_path(cfg)}
    return run_id, name, first


def fit(cfg: ExperimentConfig, inputs: Inputs, name: str, stream: dict,
        tune_reports=None):
    """The workers' training to its end; the final checkpoint's model."""
    check_resume_checkpoint(cfg, name, inputs.input_shape)
    result = run_trainer(cfg, inputs.data, name, stream, tune_reports)
    stopped = (result.return_value or {}).get("stopped")
    if stopped:
        kept = result.checkpoint.path if result.checkpoint else "none (failed in epoch 1)"
        raise UserError(f"training stopped: {stopped}; last good checkpoint: {kept}")
    if result.checkpoint is None:
        raise UserError(f"training run {name!r} reported no checkpoint")
    return result, model_from_checkpoint(cfg, result.checkpoint, inputs.input_shape)


def publish(recorder: tracking.Recorder, run_id: str, family: Family, cfg: ExperimentConfig,
            inputs: Inputs, result, model) -> TrainOutcome:
    """The logged model, its family's final pictures and what its family adds (scores,
    a registered version, warnings)."""
    logged = recorder.log_model(run_id, model, cfg.model.model_dump(), inputs.input_shape,
                                inputs.spec_extra)
    trained = Trained(cfg, model, inputs, result.metrics, result.return_value or {}, run_id,
                      recorder.uri, logged.model_uri)
    published = family.after(trained)
    record = published.record
    record.images.update(family.pictures(trained))
    recorder.write(run_id, record)
    metrics = {**{k: v for k, v in result.metrics.items() if "/" in k}, **record.metrics}
    return TrainOutcome(run_id, metrics, result.checkpoint.path, f"runs:/{run_id}/model",
                        published.notes, published.registered)


def train(cfg: ExperimentConfig, *, tracking_uri: str | None = None,
          experiment: str | None = None, command: str | None = None,
          ray_address: str | None = None, resume_run_id: str | None = None,
          parent_run_id: str | None = None, tune_reports=None,
          tags: dict | None = None) -> TrainOutcome:
    """Train `cfg` in a new MLflow run (a child of `parent_run_id` when given), or continue
    the run `resume_run_id` from its last checkpoint: resolve -> fit -> publish, every record
    written by one Recorder. A Tune trial passes its `tune_reports` (see `run_trainer`)."""
    recorder = tracking.Recorder(tracking_uri, experiment, command)
    cfg, family, inputs = resolve(cfg, ray_address)
    run_id, name, first = opened(recorder, cfg, inputs, resume_run_id, parent_run_id, tags)
    with recorder.run(run_id=run_id):
        recorder.write(run_id, first)
        # the login travels as an object-store reference: Ray Train keeps its loop config
        # in its run state, which the dashboard shows
        login = tracking_store.login(recorder.uri)
        result, model = fit(cfg, inputs, name, {"tracking_uri": recorder.uri, "run_id": run_id,
                                                "login": login and ray.put(login)},
                            tune_reports)
        return publish(recorder, run_id, family, cfg, inputs, result, model)
