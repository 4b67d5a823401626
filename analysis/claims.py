"""The seed's claims, their published figures (one table, with sources), and the rows that
set what a run measured beside them. Pure functions over metric dicts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SeedFigure", "SEED", "POLICY_NAMES", "HOLDS", "FAILS", "NOT_COMPARABLE", "RULES",
           "setting", "verdict", "row", "not_measured", "stats_claims", "density_claim",
           "relocation_claim", "support_claims", "sampling_claim", "range_claim",
           "second_stage_claims", "translator_claims"]

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
    "support_beats_random": SeedFigure(
        "a support set is a better fit set than random rows",
        "implied (maps are fitted on support sets); no comparison reported", "CelebA",
        "RESEARCH.md, claims table (support set); measured by the translator study"),
    "support_far_apart": SeedFigure(
        "support-set images are far apart", "pairwise MSE 0.183 vs 0.116 (random pairs)",
        "CelebA 64x64", "RESEARCH.md, claims table"),
    "density_uneven": SeedFigure(
        "latent density is uneven", "far from uniform", "CelebA, top 7 variables, 128 sectors",
        "RESEARCH.md, claims table"),
    "generative_range": SeedFigure(
        "GANs cannot generate part of the data",
        "regeneration MSE 0.026 (own samples) vs 0.251 (support set): x9.7",
        "CelebA 64x64, StyleGAN + recoder", "RESEARCH.md, claims table (StyleGAN post)"),
    "second_stage": SeedFigure(
        "a second stage improves generation", "FID 43.6 (VAE) -> 29.3 (two-stage)",
        "Fashion-MNIST, Inception features, Dai & Wipf's neutral architecture",
        "RESEARCH.md, numbers from the field (Dai & Wipf 2019)"),
    "renormalisation": SeedFigure(
        "renormalising second-stage samples improves them", "better samples (pictures)",
        "CelebA, two-stage VAE (variance-loss post)", "RESEARCH.md, renormalisation"),
    "sampling_regular": SeedFigure(
        "sampling makes the latent space more regular", "more regular with sampling (pictures)",
        "MNIST, 784-256-64-16-3 VAE", "RESEARCH.md, claims table"),
}

POLICY_NAMES = {"elbo": "BCE + KL", "beta": "BCE + beta KL", "balanced": "KL balancing"}


def setting(dataset: str, model: str, policy: str, epochs: int) -> str:
    return (f"{dataset}, {model}, {POLICY_NAMES.get(policy, policy)}, {epochs} "
            f"epoch{'' if epochs == 1 else 's'}")


HOLDS, FAILS, NOT_COMPARABLE = "holds", "does not hold", "not comparable"

# The rule behind each verdict, printed beside it: what "holds" means for this run.
RULES: dict[str, str] = {
    "variance_loss": "delta_var within 25% of mse(z=mu)",
    "sparsity_dense": "at least one variable inactive",
    "sparsity_conv": "at least one variable inactive",
    "stationary": "mean within 0.1 of 1 and every variable within 0.25 of 1",
    "zero_out": "zeroing the inactive changes under 10% of what zeroing as many active does",
    "relocation": "M at most 2x the target's own error",
    "support_suffices": "support-set M at most 1.5x the M of a fit on all rows",
    "support_beats_random": "support-set anchors give the lower M in more than half of the "
                            "(pair, map family, budget) comparisons with as many random rows",
    "support_far_apart": "support pairs farther apart than random pairs",
    "density_uneven": "KL to Gaussian codes above its sampling-noise p99",
    "sampling_regular": "aggregate KL lower with sampling than without",
    "second_stage": "FID of two-stage samples below FID of prior samples (same extractor)",
    "renormalisation": "FID of renormalised two-stage samples below that of raw ones",
    "generative_range": "GAN's support-set error at least 2x its own-sample error, and it "
                        "misses more sectors than a VAE of the same data",
}


def verdict(ok: bool | None) -> str:
    return NOT_COMPARABLE if ok is None else HOLDS if ok else FAILS


def row(key: str, model: str, measured_setting: str, measured: str,
        ok: bool | None) -> dict:
    """One claim: what was measured on what, the seed's figure on what, and the verdict of
    the claim's rule (None: the run cannot tell)."""
    seed = SEED[key]
    return {"claim": seed.claim, "model": model, "setting": measured_setting,
            "measured": measured, "seed": seed.figure, "seed setting": seed.setting,
            "verdict": verdict(ok), "rule": RULES[key]}


def not_measured(key: str, model: str, measured_setting: str, why: str) -> dict:
    return row(key, model, measured_setting, f"not measured: {why}", None)


def stats_claims(label: str, measured_setting: str, metrics: dict, latent_dim: int,
                 stationary: np.ndarray, conv: bool = False) -> list[dict]:
    """Variance loss, sparsity, stationarity and zero-out rows of one `stats` run.
    `mse(z=mu)` is the reconstruction error through the posterior mean, not training's
    `val/mse`, which decodes sampled codes."""
    m = metrics
    inactive = int(m["latent/inactive"])
    delta, mse = m["variance_loss/delta_var_recon"], m["variance_loss/mse_recon"]
    variance = f"delta_var {delta:.4f} vs mse(z=mu) {mse:.4f}"
    if "variance_loss/delta_var_gen" in m:
        variance += f"; prior samples: delta_var {m['variance_loss/delta_var_gen']:.4f}"
    zero, baseline = m["latent/zero_out_mse"], m["latent/zero_out_baseline_mse"]
    stationary = np.asarray(stationary)
    rows = [
        row("variance_loss", label, measured_setting, variance,
            abs(delta - mse) <= 0.25 * mse),
        row("sparsity_conv" if conv else "sparsity_dense", label, measured_setting,
            f"{inactive} of {latent_dim} inactive, {int(m['latent/active_units'])} active "
            "(Burda)", inactive >= 1),
        row("stationary", label, measured_setting,
            f"mean {m['latent/stationary_mean']:.3f}, range {stationary.min():.3f}-"
            f"{stationary.max():.3f}", abs(m["latent/stationary_mean"] - 1) <= 0.1
            and bool(np.all(np.abs(stationary - 1) <= 0.25))),
    ]
    if inactive:
        rows.append(row("zero_out", label, measured_setting,
                        f"pixel MSE {zero:.2e} with the {inactive} inactive zeroed, vs "
                        f"{baseline:.2e} with the {inactive} least informative active zeroed",
                        zero < 0.1 * baseline))
    else:
        rows.append(row("zero_out", label, measured_setting,
                        "no inactive variable: nothing to zero", None))
    return rows


def density_claim(label: str, measured_setting: str, counts: np.ndarray, density: dict) -> dict:
    """Sector counts against what independent Gaussian codes of the same means and variances
    would give: uneven only when the KL exceeds what sampling noise gives 99% of the time."""
    k = int(np.log2(len(counts)))
    used = int((np.asarray(counts) > 0).sum())
    kl, noise = density["kl_to_gaussian"], density["kl_gaussian_p99"]
    return row("density_uneven", label, measured_setting,
               f"{used} of {2 ** k} sectors used; KL to Gaussian codes {kl:.3f} vs "
               f"{noise:.3f} from noise alone (p99)", kl > noise)


def relocation_claim(label: str, measured_setting: str, metrics: dict) -> dict:
    m, own = metrics["relocation/M"], metrics["relocation/M_target_own"]
    return row("relocation", label, measured_setting,
               f"M {m:.4f} vs own {own:.4f} (x{m / own:.2f}), R {metrics['relocation/R']:.4f}",
               m <= 2 * own)


def support_claims(label: str, measured_setting: str, support: dict, fit: dict,
                   estimator: str) -> list[dict]:
    """`support`: support/* metrics; `fit`: relocation/* of maps fitted on a support set,
    `estimator` first, beside `<estimator>_full` (all fit rows) and plain OLS."""
    near, far = support["support/pairwise_mse"], support["support/random_pairwise_mse"]
    m, full = fit["relocation/M"], fit[f"relocation/M_{estimator}_full"]
    own = fit["relocation/M_target_own"]
    ols = f"; OLS {fit['relocation/M_ols']:.4f}" if "relocation/M_ols" in fit else ""
    return [
        row("support_far_apart", label.split("->")[0], measured_setting,
            f"pairwise MSE {near:.3f} vs {far:.3f} (random pairs)", near > far),
        row("support_suffices", label, measured_setting,
            f"{estimator} M {m:.4f} (x{m / own:.2f} own) on {int(fit['relocation/fit_rows'])} "
            f"support rows vs {full:.4f} on all fit rows{ols}", m <= 1.5 * full),
    ]


def sampling_claim(label: str, measured_setting: str, kl_with: float,
                   kl_without: float) -> dict:
    return row("sampling_regular", label, measured_setting,
               f"aggregate KL {kl_with:.3f} with vs {kl_without:.3f} without sampling (lower = "
               "closer to the prior)", kl_with < kl_without)


def range_claim(label: str, measured_setting: str, gan: dict, vae: dict) -> dict:
    """The seed's ratio of support-set to own-sample regeneration error for a GAN, beside the
    same measures of a VAE used as a generator in the same reference space. The ratio alone
    does not single out GANs (a VAE re-encodes its own blurred samples almost exactly, so
    its ratio is high too): the claim holds when the GAN's ratio is at least 2 and it
    misses sectors of the data that the VAE does not."""
    def part(m: dict) -> str:
        return (f"own {m['range/mse_generated']:.4f} vs support {m['range/mse_support']:.4f} "
                f"(x{m['range/ratio_support']:.1f}), {int(m['range/missed_sectors'])} of "
                f"{int(m['range/judged_sectors'])} sectors missed, latent recall "
                f"{m['range/latent_recall']:.2f}")
    return row("generative_range", label, measured_setting,
               f"GAN: {part(gan)}; VAE as generator: {part(vae)}",
               gan["range/ratio_support"] >= 2
               and gan["range/missed_sectors"] > vae["range/missed_sectors"])


def second_stage_claims(label: str, measured_setting: str, extractor: str,
                        fid: dict[str, float]) -> list[dict]:
    """FID per sampler (prior, two_stage, two_stage_renorm) in one feature space. The seed's
    figures are Inception FIDs: the verdicts compare samplers within this run only."""
    prior, raw, renorm = fid["prior"], fid["two_stage"], fid["two_stage_renorm"]
    where = f"FID in {extractor} features"
    return [row("second_stage", label, measured_setting,
                f"{where}: prior {prior:.2f}, two-stage {raw:.2f}", raw < prior),
            row("renormalisation", label, measured_setting,
                f"{where}: two-stage {raw:.2f}, renormalised {renorm:.2f}", renorm < raw)]


def translator_claims(label: str, measured_setting: str, metrics: dict, family: str,
                      budget: str) -> list[dict]:
    """The translator study's two answers over every ordered pair: does a support set of
    `budget` rows fit `family` as well as every fit row does (the seed's rule), and does it
    beat random rows of the same size (all families and budgets)."""
    ratio = lambda anchor, b: metrics.get(f"translate/ratio/{family}/{anchor}/{b}",  # noqa: E731
                                          float("nan"))
    support, every, random = ratio("support", budget), ratio("all", "all"), ratio("random", budget)
    wins = metrics.get("translate/support_beats_random", float("nan"))
    if np.isnan(support) or np.isnan(wins):
        why = "no source space had an active variable, so no support set"
        return [not_measured(key, label, measured_setting, why)
                for key in ("support_suffices", "support_beats_random")]
    return [
        row("support_suffices", label, measured_setting,
            f"{family} M / M_target_own on {budget} support rows {support:.2f} vs {every:.2f} on "
            "all fit rows (mean over pairs)", support <= 1.5 * every),
        row("support_beats_random", label, measured_setting,
            f"support lower in {wins:.0%} of comparisons; {family} at {budget}: support "
            f"{support:.2f} vs random {random:.2f} (M / M_target_own)", wins > 0.5),
    ]
