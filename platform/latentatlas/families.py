"""The model families, each in one place: what a model of it is (it generates images, it has
an encoder), the loss the claims name its training by, what its training logs per epoch (a
sweep's metrics), the headline columns of `latentatlas runs`, and what a study says when it
trains one and when the training ends. Every registry that lists families derives from
`FAMILIES`: the model schemas declare one of these names (config.py), the training hooks
(train/families.py) and this table must list the same ones (tests/test_config.py).

Imports nothing: `latentatlas runs` and every verb's --help read it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def learning_test(what: str, value: float, scale: float, higher: bool = False) -> dict:
    """The numbers of a component's learning test, judged by the claims
    (analysis.claims.learned): `value` of `what` against `scale`, the variance of what it
    predicts (or, `higher`, the floor of a measure such as accuracy)."""
    return {"what": what, "value": float(value), "scale": float(scale), "higher": higher}


def epochs(cfg) -> str:
    """A training's length as a study says it: 'N epochs', or 'until settled, at most N'."""
    n = cfg.train.epochs
    return f"until settled, at most {n} epochs" if cfg.train.until_settled else f"{n} epochs"


def columns(metrics: dict, group: str) -> dict:
    """A summary row's columns from a group's `group/name` metrics: `name`."""
    return {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith(f"{group}/")}


@dataclass(frozen=True)
class ModelFamily:
    name: str
    generates: bool
    """Decodes codes into images: FID, samples, the generative range apply."""
    encodes: bool
    """Has an encoder (posterior means): a GMM of its codes, latent statistics apply."""
    logs: tuple[str, ...]
    """The metrics its training logs per epoch (what a sweep may rank by)."""
    headline: tuple[str, ...]
    """`latentatlas runs` columns of its trainings."""
    started: Callable[[object, str], str]
    """(config, what its inputs are) -> the line a study says when the training starts."""
    finished: Callable[[dict], tuple[str, dict]]
    """Final metrics -> the line said when it ends, and its summary columns."""
    loss: Callable[[object], str | None] = lambda cfg: None
    """The loss the claims name its training by (None: no setting the claims compare)."""
    has_val_mse: bool = False
    """Its val/mse history tells whether the training settled."""
    reads_dataset: bool = True
    """Trains on a dataset's images (a study's --dataset applies to it)."""
    auxiliary: bool = False
    """A component of a measurement (it inverts, scores or samples for another model): its
    adequacy is checked, its setting is not compared with the seed's."""
    learning: Callable[[dict, float | None], dict | None] = lambda m, variance: None
    """(final metrics, the variance of what it predicts) -> its learning test's numbers."""


VAE_LOGS = ("val/loss", "val/mse", "val/kl", "train/loss", "train/mse", "train/kl")

VAE = ModelFamily(
    "vae", generates=True, encodes=True, logs=VAE_LOGS,
    headline=("model", "policy", "latent", "val/mse", "val/kl", "fid", "fid space"),
    started=lambda cfg, reads: f"{cfg.model.name}, latent {cfg.model.latent_dim}, "
                               f"{cfg.kl.policy}, {epochs(cfg)}",
    finished=lambda m: (f"val/mse={m['val/mse']:.4f}",
                        {"val mse(z~q)": m.get("val/mse"), "val/kl": m.get("val/kl")}),
    loss=lambda cfg: cfg.kl.policy, has_val_mse=True)

SECOND_STAGE = ModelFamily(
    "second_stage", generates=False, encodes=True, logs=VAE_LOGS,
    headline=("model", "latent", "val/mse", "val/kl"),
    started=lambda cfg, reads: f"a second stage on {reads}: width {cfg.model.width}, "
                               f"{epochs(cfg)}",
    finished=lambda m: (f"val latent mse {m['val/mse']:.4f}, val/kl {m['val/kl']:.3f}",
                        {"val mse(z~q)": m["val/mse"], "val/kl": m["val/kl"]}),
    reads_dataset=False, auxiliary=True,
    learning=lambda m, variance: learning_test("val latent MSE", m["val/mse"], variance))

GAN = ModelFamily(
    "gan", generates=True, encodes=False,
    logs=("gan/d_loss", "gan/g_loss", "gan/d_real", "gan/d_fake", "val/d_real"),
    headline=("model", "latent", "gan/d_real", "gan/d_fake", "fid", "fid space"),
    started=lambda cfg, reads: f"noise {cfg.model.latent_dim}, {cfg.train.epochs} epochs on "
                               f"{cfg.data.limit or 'all'} training images",
    finished=lambda m: (f"D(real)={m['gan/d_real']:.3f} D(fake)={m['gan/d_fake']:.3f}",
                        columns(m, "gan")),
    loss=lambda cfg: "non-saturating GAN loss")

RECODER = ModelFamily(
    "recoder", generates=False, encodes=False,
    logs=("train/loss", "train/latent_mse", "inversion/latent_mse", "inversion/pixel_mse"),
    headline=("model", "latent", "inversion/latent_mse", "inversion/pixel_mse"),
    started=lambda cfg, reads: f"the recoder of {reads}: {cfg.train.epochs} x "
                               f"{cfg.invert.steps_per_epoch} steps of "
                               f"{cfg.train.batch_size} generated pairs",
    finished=lambda m: (f"held-out latent mse {m['inversion/latent_mse']:.4f}, regeneration "
                        f"mse {m['inversion/pixel_mse']:.4f} (generated images)",
                        columns(m, "inversion")),
    reads_dataset=False, auxiliary=True,
    learning=lambda m, variance: learning_test("held-out latent MSE", m["inversion/latent_mse"],
                                               m["inversion/code_variance"]))

CLASSIFIER = ModelFamily(
    "classifier", generates=False, encodes=False,
    logs=("val/loss", "val/accuracy", "train/loss", "train/accuracy"),
    headline=("model", "val/accuracy"),
    started=lambda cfg, reads: f"the study's FID features, {cfg.train.epochs} epochs",
    finished=lambda m: (f"val accuracy {m['val/accuracy']:.4f}",
                        {"val_accuracy": m["val/accuracy"]}),
    auxiliary=True,
    # the floor is analysis.claims.CLASSIFIER_ACCURACY's, stored with the numbers
    learning=lambda m, floor: learning_test("val accuracy", m["val/accuracy"], floor,
                                            higher=True))

FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (VAE, SECOND_STAGE, GAN, RECODER,
                                                         CLASSIFIER)}
