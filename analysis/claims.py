"""The seed's claims, their published figures (one table, with sources), and the rows that
set what a run measured beside them. Pure functions over metric dicts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SeedFigure", "SEED", "POLICY_NAMES", "setting", "row", "stats_claims", "density_claim"]

@dataclass(frozen=True)
class SeedFigure:
    claim: str
    figure: str  # what the seed reports
    setting: str  # on what (dataset, model, training)
    source: str  # where the figure is written down (shared/RESEARCH.md and its seed post)


SEED: dict[str, SeedFigure] = {
    "variance_loss": SeedFigure(
        "VAEs lose variance ~ their MSE", "delta_var 0.0411 vs mse 0.0413",
        "MNIST, small Keras VAE, BCE + KL", "RESEARCH.md, claims table (variance loss post)"),
    "sparsity_dense": SeedFigure(
        "KL makes latent spaces sparse", "8 of 16 inactive",
        "MNIST, dense 784-256-64-32-16, BCE + KL", "RESEARCH.md, claims table"),
    "sparsity_conv": SeedFigure(
        "KL makes latent spaces sparse", "3 of 16 inactive", "MNIST, conv VAE",
        "RESEARCH.md, claims table"),
    "stationary": SeedFigure(
        "var(mu) + mean(sigma^2) ~ 1", "~1 for active and inactive variables",
        "MNIST, dense and conv VAEs", "RESEARCH.md, claims table"),
    "zero_out": SeedFigure(
        "zeroing inactive variables changes nothing", "indistinguishable samples",
        "MNIST, dense VAE", "RESEARCH.md, claims table"),
    "relocation": SeedFigure(
        "a linear map relocates codes", "M close to the target's own error",
        "CelebA, VAEs / Split-VAE / GAN", "RESEARCH.md, claims table (latent space post)"),
    "support_suffices": SeedFigure(
        "a support set suffices to fit the map", "(no figure)", "CelebA",
        "RESEARCH.md, claims table"),
    "support_far_apart": SeedFigure(
        "support-set images are far apart", "pairwise MSE 0.183 vs 0.116 (random pairs)",
        "CelebA 64x64", "RESEARCH.md, claims table"),
    "density_uneven": SeedFigure(
        "latent density is uneven", "far from uniform", "CelebA, top 7 variables, 128 sectors",
        "RESEARCH.md, claims table"),
    "sampling_regular": SeedFigure(
        "sampling makes the latent space more regular", "more regular with sampling (pictures)",
        "MNIST, 784-256-64-16-3 VAE", "RESEARCH.md, claims table"),
}

POLICY_NAMES = {"elbo": "BCE + KL", "beta": "BCE + beta KL", "balanced": "KL balancing"}


def setting(dataset: str, model: str, policy: str, epochs: int) -> str:
    return (f"{dataset}, {model}, {POLICY_NAMES.get(policy, policy)}, {epochs} "
            f"epoch{'' if epochs == 1 else 's'}")


def row(key: str, model: str, measured_setting: str, measured: str) -> dict:
    seed = SEED[key]
    return {"claim": seed.claim, "model": model, "setting": measured_setting,
            "measured": measured, "seed": seed.figure, "seed setting": seed.setting}


def stats_claims(label: str, measured_setting: str, metrics: dict, latent_dim: int,
                 stationary: np.ndarray, conv: bool = False) -> list[dict]:
    """Variance loss, sparsity, stationarity and zero-out rows of one `stats` run.
    `mse(z=mu)` is the reconstruction error through the posterior mean, not training's
    `val/mse`, which decodes sampled codes."""
    m = metrics
    inactive = int(m["latent/inactive"])
    variance = (f"delta_var {m['variance_loss/delta_var_recon']:.4f} vs mse(z=mu) "
                f"{m['variance_loss/mse_recon']:.4f}")
    if "variance_loss/delta_var_gen" in m:
        variance += f"; prior samples: delta_var {m['variance_loss/delta_var_gen']:.4f}"
    if inactive:
        zero = (f"pixel MSE {m['latent/zero_out_mse']:.2e} with the {inactive} inactive zeroed, "
                f"vs {m['latent/zero_out_baseline_mse']:.2e} with the {inactive} least "
                "informative active zeroed")
    else:
        zero = "no inactive variable: nothing to zero"
    return [
        row("variance_loss", label, measured_setting, variance),
        row("sparsity_conv" if conv else "sparsity_dense", label, measured_setting,
            f"{inactive} of {latent_dim} inactive, {int(m['latent/active_units'])} active "
            "(Burda)"),
        row("stationary", label, measured_setting,
            f"mean {m['latent/stationary_mean']:.3f}, range {np.min(stationary):.3f}-"
            f"{np.max(stationary):.3f}"),
        row("zero_out", label, measured_setting, zero),
    ]


def density_claim(label: str, measured_setting: str, counts: np.ndarray, density: dict) -> dict:
    """Sector counts against what independent Gaussian codes of the same means and variances
    would give: uneven only when the KL exceeds what sampling noise gives 99% of the time."""
    k = int(np.log2(len(counts)))
    used = int((np.asarray(counts) > 0).sum())
    kl, noise = density["kl_to_gaussian"], density["kl_gaussian_p99"]
    verdict = "uneven beyond sampling noise" if kl > noise else "within sampling noise"
    return row("density_uneven", label, measured_setting,
               f"{used} of {2 ** k} sectors used; KL to Gaussian codes {kl:.3f} vs "
               f"{noise:.3f} from noise alone (p99): {verdict}")
