"""The studies' defaults and the names a command line offers, in a module that imports
nothing heavy but pydantic: a verb's `--help` shows them without loading numpy, torch or
Ray. The studies read them from here (tests check the names against the registries they
stand for)."""

from __future__ import annotations

from pydantic import Field, model_validator

from latentatlas.config import Strict

# sectors and support sets: the k most informative variables, |z_i| > threshold
DEFAULT_K, DEFAULT_THRESHOLD = 7, 0.5

# relocation: the estimators `relocate` fits and its fits. The authors' map first, the
# headline (relocation/M, relocation/L); then the other closed forms; `sgd_authors` (2000
# optimiser steps per fit) is asked for by name.
DEFAULT_ESTIMATORS = ("ridge_authors", "ols", "ols_nobias", "ridge", "procrustes",
                      "lstsq_ortho")
FITS = ("all", "support", "indices", "generated", "random")
GENERATED_PAIRS = 10000  # the authors fit a GAN's side on fresh samples, not on real rows
# Fresh generated images a map is scored on (scored_on generated): as many as the held-out
# rows (every fifth) of a 10,000-image test split.
GENERATED_SCORED = 2000
SCORED_ON = ("held_out", "generated")

# the translator study's translators (the authors' map first; any of
# analysis.linear_maps.ESTIMATORS or FIELD_TRANSLATORS may be asked for: the field's,
# latentis' four and the relative one, cost 1.6x the default set), anchor choices and budgets
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


# the sparsity post's experiment (analysis.sparsity runs it); the `sparsity` verb's and step's
# options (jobs/kinds/sparsity.py)
class SparsityPlan(Strict):
    epochs: int = Field(default=20, gt=0)
    """Training before the noise. On Fashion-MNIST epochs 18-22 each moved the probe's val/mse
    by under 1%, the claims' settled rule (bench/RESULTS.md, "The sparsity verb")."""
    every: int = Field(default=25, gt=0)
    """Minibatches between two points of the per-variable curves."""
    probe: int = Field(default=2000, gt=0)
    """Validation images every measurement runs on."""
    noise_step: float = Field(default=0.25, gt=0)
    """Noise std added per increment."""
    max_increments: int = Field(default=20, gt=0)
    """Noise increments, at most, before the variable collapses."""
    hold_epochs: int = Field(default=5, gt=0)
    """Epochs at the last noise, at most, waiting for the collapse."""
    revival_epochs: int = Field(default=10, gt=0)
    """Epochs without noise, at most, waiting for the revival."""
    variable: int | None = Field(default=None, ge=0)
    """The variable to damage (unset: the least informative active one whose gain exceeds
    its KL)."""
    hidden: tuple[int, ...] = (256, 64, 32)
    """The dense VAE's hidden widths."""
    latent_dim: int = Field(default=16, gt=0)
    """Its latent variables."""
    batch_size: int = Field(default=128, gt=0)
    """Images per minibatch."""
    lr: float = Field(default=1e-3, gt=0)
    """Adam's learning rate."""
    seed: int = Field(default=0, ge=0)
    """Seed of the training and the noise."""

    @model_validator(mode="after")
    def variable_is_latent(self):
        if self.variable is not None and self.variable >= self.latent_dim:
            raise ValueError(f"variable {self.variable} is not one of the {self.latent_dim} "
                             "latent variables")
        return self
