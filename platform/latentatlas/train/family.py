"""A model family as one object (the shape a LightningModule gives a model): what a training of
it reads (`inputs`), the objective its workers run (`objective`), and what follows training
(`pictures`, `after`): named hooks that the one training run (`runner.train`) calls. Each
family is declared beside its objective (train/vae.py, gan.py, classifier.py) and registered
in train/families.py; its models' schemas name it (`family` in config.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from latentatlas.config import ExperimentConfig
from latentatlas.data import load_split
from latentatlas.errors import UserError
from latentatlas.record import Record


@dataclass
class Inputs:
    """What one training reads, and what its logged model's spec says about it."""

    data: dict  # for the workers (through the object store)
    input_shape: tuple
    spec_extra: dict  # into the logged model's spec
    val_images: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    train_labels: np.ndarray | None = None
    generator: torch.nn.Module | None = None  # a recoder's frozen generator
    datasets: list = field(default_factory=list)  # DatasetRecords, logged as run inputs


@dataclass
class Trained:
    """What the hooks after training see."""

    cfg: ExperimentConfig
    model: torch.nn.Module  # the final checkpoint's weights, in eval mode
    inputs: Inputs
    metrics: dict  # the last epoch's
    returned: dict  # what the workers' loop returned (a VAE's first-epoch trace)
    run_id: str
    tracking_uri: str
    model_uri: str  # where the model was logged


@dataclass
class Published:
    """What a family adds to its training run after training: a Record for the Recorder,
    warnings for the caller to print, a registered model's address."""

    record: Record = field(default_factory=lambda: Record("train", ""))
    notes: list[str] = field(default_factory=list)
    registered: str | None = None


def no_pictures(trained: Trained) -> dict[str, np.ndarray]:
    return {}


def nothing_after(trained: Trained) -> Published:
    return Published()


@dataclass(frozen=True)
class Family:
    name: str
    objective: type  # built in every worker: prepare, train_epoch, evaluate, state_dict, ...
    inputs: Callable[[ExperimentConfig], tuple[ExperimentConfig, Inputs]]
    pictures: Callable[[Trained], dict[str, np.ndarray]] = no_pictures  # final, logged as PNG
    after: Callable[[Trained], Published] = nothing_after


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


def dataset_inputs(cfg: ExperimentConfig) -> tuple[ExperimentConfig, Inputs]:
    """A dataset's training and validation splits."""
    train_split, val_split = load_data(cfg)
    return cfg, Inputs({"train": train_split.images, "val": val_split.images},
                       train_split.shape, {"dataset": cfg.data.name, "seed": cfg.seed},
                       val_split.images, val_split.labels, train_split.labels,
                       datasets=[train_split.described("training"),
                                 val_split.described("validation")])


def sample_scores(trained: Trained) -> Record:
    """`fid:`: FID / KID / variance loss of the trained model's samples (its prior, and a
    GMM fitted to its codes of the scored real images) against the first `fid.samples`
    validation images; nothing when no extractor is configured."""
    cfg, model, inputs = trained.cfg, trained.model, trained.inputs
    f = cfg.fid
    if not f.extractor:
        return Record("train", "")
    from latentatlas import features, fid_stats, quality, samplers

    extractor = features.resolve_extractor(f.extractor, inception_weights=f.inception_weights,
                                          tracking_uri=trained.tracking_uri,
                                          role="fid.extractor", input_shape=inputs.input_shape)
    real = inputs.val_images[:f.samples]
    reference = fid_stats.reference_of(extractor, real, fid_stats.described_images(
        cfg.data.name, cfg.data.val_split, len(real)))
    codes = {"prior": samplers.prior_codes(model, len(real), cfg.seed)}
    if "gmm" in f.samplers:
        codes["gmm"] = samplers.gmm_codes(model, real, f.gmm_components, len(real), cfg.seed)
    spec = {"model": cfg.model.model_dump(), "input_shape": list(inputs.input_shape)}
    scores = quality.score_samplers(extractor, reference, model, spec, codes, cfg.seed)
    return Record("train", "", params=quality.fid_params([extractor], len(real),
                                                         reference.described),
                  metrics=quality.quality_metrics(extractor.name, scores),
                  tags={"latentatlas.fid_extractor": extractor.source})


def merged(*records: Record) -> Record:
    """One record holding what several hooks add to the same run."""
    out = Record("train", "")
    for r in records:
        for part in ("params", "metrics", "tags", "tables", "dicts", "figures", "images",
                     "files"):
            getattr(out, part).update(getattr(r, part))
    return out
