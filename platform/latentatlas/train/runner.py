"""The driver side of training: data into the object store, a TorchTrainer, MLflow records."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import ray
import torch
from ray.train import (
    Checkpoint,
    CheckpointConfig,
    FailureConfig,
    LoggingConfig,
    RunConfig,
    ScalingConfig,
)
from ray.train.torch import TorchTrainer

from latentatlas import tracking
from latentatlas.config import ExperimentConfig
from latentatlas.data import load_split
from latentatlas.errors import UserError
from latentatlas.images import mean_pairwise_mse
from latentatlas.models import build_model, share_model
from latentatlas.runtime import check_resources, init_ray
from latentatlas.train.gan import GRID, collapse_note, gan_pictures, recoder_pictures
from latentatlas.train.loop import (
    CHECKPOINT_FILE,
    DamagedCheckpoint,
    load_checkpoint,
    run_single_worker,
    train_loop_per_worker,
)
from latentatlas.train.vae import vae_pictures

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


def load_data(cfg: ExperimentConfig):
    d = cfg.data
    train = load_split(d.name, d.train_split, d.path, d.limit)
    val = load_split(d.name, d.val_split, d.path, d.limit)
    for split in (train, val):
        if len(split) == 0:
            raise UserError(f"data: split {split.split!r} of {d.name!r} is empty")
    if train.shape != val.shape:  # the model is built from one and would crash on the other
        raise UserError(f"data: split {d.train_split!r} of {d.name!r} holds {train.shape} "
                        f"images but split {d.val_split!r} holds {val.shape}")
    return train, val


@dataclass
class SingleWorkerResult:
    """What `train` reads of a Ray Train Result, from a single-worker training."""

    return_value: dict
    metrics: dict
    checkpoint: Checkpoint | None


def single_worker(cfg: ExperimentConfig, callbacks=()) -> bool:
    """Whether a training runs as one plain Ray task instead of a Ray Train run: one worker,
    no restarts to manage (max_failures 0), no Tune callbacks, a local run folder. Same
    loop, seeds, checkpoints and records; ~10 s less start-up (bench/RESULTS.md)."""
    t = cfg.train
    return (t.num_workers == 1 and t.max_failures == 0 and not callbacks
            and "://" not in storage_path(cfg))


def run_single(cfg: ExperimentConfig, config: dict, name: str) -> SingleWorkerResult:
    t = cfg.train
    folder = Path(storage_path(cfg)) / name
    folder.mkdir(parents=True, exist_ok=True)
    task = ray.remote(run_single_worker).options(
        num_cpus=t.cpus_per_worker, num_gpus=1 if t.use_gpu else 0, max_retries=0,
        name=f"train {name}")
    try:
        out = ray.get(task.remote(config, str(folder), t.checkpoints_to_keep, t.use_gpu))
    except ray.exceptions.RayError as e:
        raise RuntimeError(f"training run {name!r} failed: {e}") from e
    checkpoint = out["checkpoint"] and Checkpoint.from_directory(out["checkpoint"])
    return SingleWorkerResult(out["return_value"], out["metrics"], checkpoint)


def run_trainer(cfg: ExperimentConfig, data: dict, name: str, mlflow_target: dict | None,
                callbacks=()):
    """Fit a TorchTrainer, or run the loop as one Ray task (`single_worker`); the same call
    serves `train` runs and Tune trial drivers. `data` is what the objective reads
    (`train`/`val` images, a recoder's `generator`): arrays go through the object store
    once."""
    config = {"experiment": cfg.model_dump(), "mlflow": mlflow_target,
              "data": {k: v if v is None else ray.put(v) for k, v in data.items()}}
    if single_worker(cfg, callbacks):
        return run_single(cfg, config, name)
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
            callbacks=list(callbacks) or None,
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
    if bad := tracking.non_finite_tensor(state["model"]):
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


@dataclass
class Inputs:
    """What one training reads, and what its logged model's spec says about it."""

    data: dict  # for the workers
    input_shape: tuple
    spec_extra: dict  # into the logged model's spec
    val_images: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    generator: torch.nn.Module | None = None  # a recoder's frozen generator


def stage_inputs(cfg: ExperimentConfig) -> tuple[ExperimentConfig, Inputs]:
    """A second stage's data: a first stage's codes (posterior means, or one posterior draw
    per item), a fixed share held out; the first stage's moments go into the spec (the
    renormalisation of its samples needs them)."""
    from latentatlas.encode import open_encoding

    s = cfg.second_stage
    enc = open_encoding(s.encoding)
    if enc.meta.family != "vae":
        raise UserError(f"second_stage.encoding: {s.encoding} holds a generator's inverted "
                        "codes; a second stage learns a VAE's codes")
    arrays = enc.arrays(["mu", "logvar"])
    mu, logvar = arrays["mu"].astype(np.float64), arrays["logvar"].astype(np.float64)
    order = np.random.default_rng(cfg.seed).permutation(len(mu))
    held = max(1, int(len(mu) * s.val_fraction))
    if len(mu) - held < 2:
        raise UserError(f"second_stage.encoding: {s.encoding} holds {len(mu)} rows; too "
                        "few to train on")
    d = mu.shape[1]
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(
        update={"latent_dim": cfg.model.latent_dim or d})})
    extra = {"first_stage": enc.meta.model_uri, "encoding": str(enc.path),
             "dataset": enc.meta.dataset, "seed": cfg.seed, "codes": s.codes,
             "var_mu": mu.var(axis=0).tolist(), "mean_sigma2": np.exp(logvar).mean(0).tolist()}
    train_rows, val_rows = np.sort(order[held:]), np.sort(order[:held])
    data = {"train": mu[train_rows].astype(np.float32), "val": mu[val_rows].astype(np.float32)}
    if s.codes == "sample":  # drawn afresh every epoch by the objective; val/* on the means
        data["train_logvar"] = logvar[train_rows].astype(np.float32)
    return cfg, Inputs(data, (d,), extra)


def training_inputs(cfg: ExperimentConfig) -> tuple[ExperimentConfig, Inputs]:
    """Load a VAE's or GAN's dataset splits, or a recoder's generator (whose code size the
    recoder takes on)."""
    if cfg.family == "recoder":
        gan, spec = tracking.load_model(cfg.invert.generator, role="invert.generator")
        if not hasattr(gan, "discriminator"):
            raise UserError(f"invert.generator: {cfg.invert.generator} is a "
                            f"{spec['model']['name']}, not a generator (dcgan, style_gan)")
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(
            update={"latent_dim": gan.latent_dim})})
        return cfg, Inputs({"generator": share_model(gan, spec)}, gan.input_shape,
                           {"generator": cfg.invert.generator,
                            "dataset": spec.get("dataset"), "seed": cfg.seed},
                           generator=gan)
    if cfg.family == "second_stage":
        return stage_inputs(cfg)
    train_split, val_split = load_data(cfg)
    data = {"train": train_split.images, "val": val_split.images}
    if cfg.family == "classifier":
        cfg, data = with_labels(cfg, data, train_split, val_split)
    try:  # here, not in a worker: a model that cannot take these images is one clear line
        build_model(cfg.model, train_split.shape)
    except ValueError as e:
        raise UserError(f"model: {e}") from None
    if cfg.family == "vae" and cfg.train.trace_points:
        data["trace_images"] = val_split.images[trace_indices(val_split.labels)]
    return cfg, Inputs(data, train_split.shape, {"dataset": cfg.data.name, "seed": cfg.seed},
                       val_split.images, val_split.labels)


def with_labels(cfg: ExperimentConfig, data: dict, train_split, val_split):
    """A classifier's labels, and its class count from them."""
    labels = np.concatenate([train_split.labels, val_split.labels])
    if (labels < 0).any():
        raise UserError(f"data: {cfg.data.name!r} has no class labels; a classifier needs them")
    classes = int(labels.max()) + 1
    if cfg.model.num_classes is not None and cfg.model.num_classes < classes:
        raise UserError(f"model.num_classes: {cfg.model.num_classes}, but {cfg.data.name!r} "
                        f"has labels up to {classes - 1}")
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(
        update={"num_classes": cfg.model.num_classes or classes})})
    return cfg, {**data, "train_labels": train_split.labels, "val_labels": val_split.labels}


def final_pictures(cfg: ExperimentConfig, model, inputs: Inputs) -> dict[str, np.ndarray]:
    if cfg.family == "vae":
        return vae_pictures(model, inputs.val_images, cfg.seed)
    if cfg.family == "gan":
        return gan_pictures(model, cfg.seed, cfg.gan.truncation_psi)
    if cfg.family == "recoder":
        return recoder_pictures(model, inputs.generator, cfg.seed)
    return {}  # a classifier's or a second stage's outputs are not images


def score_samples(cfg: ExperimentConfig, model, spec: dict, inputs: Inputs, uri: str):
    """`fid:`: FID / KID / variance loss of the trained model's samples (its prior, and a
    GMM fitted to its codes of the scored real images) against the first `fid.samples`
    validation images; (extractor, metrics)."""
    from latentatlas import quality

    f = cfg.fid
    extractor = quality.resolve_extractor(f.extractor, inception_weights=f.inception_weights,
                                          tracking_uri=uri, role="fid.extractor",
                                          input_shape=inputs.input_shape)
    real = inputs.val_images[:f.samples]
    samplers = {"prior": quality.prior_codes(model, len(real), cfg.seed)}
    if "gmm" in f.samplers:
        samplers["gmm"] = quality.gmm_codes(model, real, f.gmm_components, len(real), cfg.seed)
    scores = quality.score_samplers(extractor, real, model, spec, samplers, cfg.seed)
    return extractor, quality.quality_metrics(extractor.name, scores)


def trace_indices(labels: np.ndarray, n: int = 10) -> np.ndarray:
    """The first item of each class (in class order), or the first n items when unlabelled."""
    classes = np.unique(labels[labels >= 0])
    if len(classes) == 0:
        return np.arange(min(n, len(labels)))
    return np.array([np.flatnonzero(labels == c)[0] for c in classes[:n]])


def log_trace(trace: np.ndarray, labels: np.ndarray) -> None:
    from latentatlas.plots import trajectories

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "first_epoch_trace.npz"
        np.savez(path, codes=trace, labels=labels)
        mlflow.log_artifact(str(path))
    tracking.log_figure(trajectories(trace, labels), "trajectories.png")


def train(cfg: ExperimentConfig, *, tracking_uri: str | None = None,
          experiment: str | None = None, ray_address: str | None = None,
          resume_run_id: str | None = None, parent_run_id: str | None = None,
          callbacks=(), tags: dict | None = None) -> TrainOutcome:
    """Train `cfg` in a new MLflow run (a child of `parent_run_id` when given), or continue
    the run `resume_run_id` from its last checkpoint. `callbacks` go to the Ray Train run
    (a Tune trial passes its TuneReportCallback)."""
    uri = tracking.setup(tracking_uri, experiment)
    init_ray(ray_address)
    cfg = with_worker_cpus(cfg)
    if cfg.train.use_gpu:
        check_resources({"GPU": cfg.train.num_workers}, "train.use_gpu")
    cfg, inputs = training_inputs(cfg)
    if resume_run_id:
        run = mlflow.start_run(run_id=resume_run_id)
        name = run.data.tags.get(TAG_TRAIN_NAME)
        if not name:
            mlflow.end_run()
            raise UserError(f"--resume {resume_run_id}: that MLflow run is not a train run")
    else:
        run = mlflow.start_run(run_name=cfg.name, parent_run_id=parent_run_id)
        name = f"{cfg.name}-{run.info.run_id[:8]}"
        mlflow.log_params(tracking.flatten(cfg.model_dump()))
        mlflow.set_tags({TAG_TRAIN_NAME: name, TAG_STORAGE: storage_path(cfg),
                         "latentatlas.kind": "train", "latentatlas.family": cfg.family,
                         "dataset": inputs.spec_extra.get("dataset") or cfg.data.name,
                         **(tags or {})})
    run_id = run.info.run_id
    mlflow.set_tag(tracking.OWNER_TAG, tracking.owner())  # a killed driver's run is ended later
    mlflow.log_dict(cfg.model_dump(), "config.yaml")
    try:
        check_resume_checkpoint(cfg, name, inputs.input_shape)
        result = run_trainer(cfg, inputs.data, name, {"tracking_uri": uri, "run_id": run_id},
                             callbacks)
        stopped = (result.return_value or {}).get("stopped")
        if stopped:
            kept = result.checkpoint.path if result.checkpoint else "none (failed in epoch 1)"
            raise UserError(f"training stopped: {stopped}; last good checkpoint: {kept}")
        if result.checkpoint is None:
            raise UserError(f"training run {name!r} reported no checkpoint")
        model = model_from_checkpoint(cfg, result.checkpoint, inputs.input_shape)
        logged = tracking.log_model(model, cfg.model.model_dump(), inputs.input_shape,
                                    inputs.spec_extra)
        for key, image in final_pictures(cfg, model, inputs).items():
            tracking.log_image(image, key)
        notes, registered, scored = [], None, {}
        if cfg.family == "classifier":
            from latentatlas.quality import classifier_name

            registered = tracking.register_model(
                logged.model_uri, classifier_name(cfg.data.name),
                {"val_accuracy": f"{result.metrics['val/accuracy']:.4f}",
                 "val_split": cfg.data.val_split, "run_id": run_id})
            mlflow.set_tag("latentatlas.registered", registered)
        if cfg.fid.extractor:
            spec = {"model": cfg.model.model_dump(), "input_shape": list(inputs.input_shape)}
            extractor, scored = score_samples(cfg, model, spec, inputs, uri)
            mlflow.log_metrics(scored)
            mlflow.set_tag("latentatlas.fid_extractor", extractor.source)
        if cfg.family == "gan":
            real = mean_pairwise_mse(inputs.val_images[:GRID] / 255.0)
            mlflow.log_metric("gan/real_pairwise_mse", real)
            note = collapse_note(result.metrics["gan/sample_pairwise_mse"], real)
            if note:
                mlflow.set_tag("latentatlas.collapsed", note)
                notes.append(note)
        trace = (result.return_value or {}).get("trace")
        if trace is not None:
            log_trace(trace, inputs.val_labels[trace_indices(inputs.val_labels)])
        mlflow.end_run("FINISHED")
    except BaseException:
        # A sweep marks a trial its scheduler stopped as KILLED; the stopped driver may get
        # here only afterwards (Tune stops it asynchronously) and must not overwrite that.
        try:
            status = mlflow.MlflowClient().get_run(run_id).info.status
        except Exception:  # the store itself may be what failed: keep the first error
            status = "RUNNING"
        mlflow.end_run("FAILED" if status == "RUNNING" else status)
        raise
    metrics = {**{k: v for k, v in result.metrics.items() if "/" in k}, **scored}
    return TrainOutcome(run_id, metrics, result.checkpoint.path, f"runs:/{run_id}/model",
                        notes, registered)
