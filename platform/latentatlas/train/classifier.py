"""The classifier objective: cross-entropy on the dataset's labels (the `classifier-<dataset>`
FID extractor's training)."""

from __future__ import annotations

import numpy as np
import ray.train.torch
import torch
import torch.nn.functional as F

from latentatlas.config import ExperimentConfig
from latentatlas.errors import UserError
from latentatlas.images import to_unit_float
from latentatlas.models import build_model
from latentatlas.record import Record
from latentatlas.train.common import Sums, epoch_batches, restore_optimizer, unwrap
from latentatlas.train.family import Family, Inputs, Published, Trained, dataset_inputs


class ClassifierObjective:
    def __init__(self, cfg, data: dict, device, rank: int, world: int):
        self.cfg, self.device, self.rank, self.world = cfg, device, rank, world
        self.train_x, self.train_y = data["train"], data["train_labels"]
        val_x, val_y = data["val"], data["val_labels"]
        per_rank = len(val_x) // world or None
        self.val_x, self.val_y = val_x[rank::world][:per_rank], val_y[rank::world][:per_rank]
        self.model = build_model(cfg.model, self.train_x.shape[1:])

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])

    def prepare(self, state: dict | None, start_epoch: int,
                wrap=ray.train.torch.prepare_model) -> None:
        self.model = wrap(self.model)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.train.lr)
        restore_optimizer(self.optimizer, state and state["optimizer"], self.cfg.train.lr)

    def state_dict(self) -> dict:
        return {"model": unwrap(self.model).state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def terms(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, float]:
        logits = self.model(to_unit_float(x, self.device))
        target = torch.from_numpy(np.array(y, np.int64)).to(self.device)  # a writable copy
        return (F.cross_entropy(logits, target),
                (logits.argmax(dim=1) == target).float().mean().item())

    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.cfg
        self.model.train()
        sums = Sums("train/loss", "train/accuracy")
        for idx in epoch_batches(len(self.train_x), epoch, cfg.seed, self.rank, self.world,
                                 cfg.train.batch_size):
            idx = np.sort(idx)
            loss, accuracy = self.terms(self.train_x[idx], self.train_y[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            sums.add(len(idx), loss.item(), accuracy)
        metrics, count = sums.means(self.device)
        return {**metrics, "images": count}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        sums = Sums("val/loss", "val/accuracy")
        for i in range(0, len(self.val_x), 1024):
            loss, accuracy = self.terms(self.val_x[i:i + 1024], self.val_y[i:i + 1024])
            sums.add(len(self.val_x[i:i + 1024]), loss.item(), accuracy)
        return sums.means(self.device)[0]

    @staticmethod
    def line(metrics: dict) -> str:
        return (f"loss={metrics['train/loss']:.4g} "
                f"val/accuracy={metrics['val/accuracy']:.4f}")

    def pictures(self, epoch: int) -> dict[str, np.ndarray]:
        return {}

    def result(self) -> dict:
        return {}


def classifier_inputs(cfg: ExperimentConfig) -> tuple[ExperimentConfig, Inputs]:
    """A dataset's splits with their labels, and the class count from them."""
    cfg, inputs = dataset_inputs(cfg)
    labels = np.concatenate([inputs.train_labels, inputs.val_labels])
    if (labels < 0).any():
        raise UserError(f"data: {cfg.data.name!r} has no class labels; a classifier needs them")
    classes = int(labels.max()) + 1
    if cfg.model.num_classes is not None and cfg.model.num_classes < classes:
        raise UserError(f"model.num_classes: {cfg.model.num_classes}, but {cfg.data.name!r} "
                        f"has labels up to {classes - 1}")
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(
        update={"num_classes": cfg.model.num_classes or classes})})
    inputs.data.update(train_labels=inputs.train_labels, val_labels=inputs.val_labels)
    return cfg, inputs


def register_classifier(trained: Trained) -> Published:
    """A new version of `classifier-<dataset>` in the model registry: the FID extractor by
    that name (latentatlas.quality) resolves to it."""
    from latentatlas import model_store
    from latentatlas.features import classifier_name

    cfg = trained.cfg
    registered = model_store.register_model(
        trained.model_uri, classifier_name(cfg.data.name),
        {"val_accuracy": f"{trained.metrics['val/accuracy']:.4f}",
         "val_split": cfg.data.val_split, "run_id": trained.run_id})
    return Published(Record("train", "", tags={"latentatlas.registered": registered}),
                     registered=registered)


CLASSIFIER = Family("classifier", ClassifierObjective, classifier_inputs,
                    after=register_classifier)
