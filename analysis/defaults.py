"""The studies' defaults and the names a command line offers, in a module that imports
nothing heavy: a verb's `--help` shows them without loading numpy, torch or Ray. The studies
read them from here (tests check the names against the registries they stand for)."""

from __future__ import annotations

from dataclasses import dataclass

from latentatlas.errors import UserError

# sectors and support sets: the k most informative variables, |z_i| > threshold
DEFAULT_K, DEFAULT_THRESHOLD = 7, 0.5

# relocation: the estimators `relocate` fits and its fits. The authors' map first, the
# headline (relocation/M, relocation/L); then the other closed forms; `sgd_authors` (2000
# optimiser steps per fit) is asked for by name.
DEFAULT_ESTIMATORS = ("ridge_authors", "ols", "ols_nobias", "ridge", "procrustes",
                      "lstsq_ortho")
FITS = ("all", "support", "indices", "generated", "random")
GENERATED_PAIRS = 10000  # the authors fit a GAN's side on fresh samples, not on real rows

# the translator study's translators (the authors' map first; any of
# analysis.linear_maps.ESTIMATORS may be asked for), anchor choices and budgets
TRANSLATORS = ("ridge_authors", "ols", "procrustes", "lstsq_ortho", "sgd_authors")
ANCHOR_NAMES = ("support", "random", "fps")
ANCHOR_CHOICES = (*ANCHOR_NAMES, "all")
BUDGETS = (0.25, 0.5, 1.0, 2.0, 4.0)  # anchor rows, in multiples of the source's dimension

# neighbours of precision / recall / density / coverage (the prdc package's)
PRDC_K = 5

# the seed's 3-D regularisation experiment: epochs of the 3-D models. On Fashion-MNIST each
# of epochs 13-15 moved val/mse by under SETTLED_CHANGE (1%) in both (bench/RESULTS.md,
# "The 3-D regularisation models").
REGULARISATION_EPOCHS = 15


# the sparsity post's experiment (analysis.sparsity runs it)
@dataclass(frozen=True)
class SparsityPlan:
    # training before the experiment: on Fashion-MNIST epochs 18-22 each moved the probe's
    # val/mse by under 1%, the claims' settled rule (bench/RESULTS.md, "The sparsity verb")
    epochs: int = 20
    every: int = 25  # minibatches between two points of the per-variable curves
    probe: int = 2000  # validation images every measurement runs on
    noise_step: float = 0.25  # noise std added per increment
    max_increments: int = 20
    hold_epochs: int = 5  # at most, at the last strength, for the variable to go inactive
    revival_epochs: int = 10  # at most, without noise, for it to come back
    variable: int | None = None  # None: the least informative active one whose gain > KL
    hidden: tuple[int, ...] = (256, 64, 32)
    latent_dim: int = 16
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "every", "probe", "max_increments", "hold_epochs",
                     "revival_epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"sparsity: --{name.replace('_', '-')} "
                                f"{getattr(self, name)} must be >= 1")
        if self.noise_step <= 0 or self.lr <= 0:
            raise UserError(f"sparsity: --noise-step {self.noise_step} and --lr {self.lr} "
                            "must be > 0")
        if self.variable is not None and not 0 <= self.variable < self.latent_dim:
            raise UserError(f"sparsity: --variable {self.variable} is not one of the "
                            f"{self.latent_dim} latent variables")
