"""Matplotlib figures from arrays (no IO): the pictures the analyses log to MLflow."""

from __future__ import annotations

import matplotlib

__all__ = ["latent_bars", "sorted_bars", "variance_vs_mse", "heatmap", "support_sweep", "scatter3d",
           "error_ecdfs", "sector_shares_bars", "sample_grids",
           "translator_grid", "budget_curves", "variance_curves", "collapse_curves"]

matplotlib.use("Agg")
import matplotlib.colors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402


def latent_bars(stats: dict[str, np.ndarray]):
    """var(mu) and mean(sigma^2) per variable, stacked: each bar should reach ~1."""
    fig, ax = plt.subplots(figsize=(max(6, 0.4 * len(stats["variable"])), 3.5))
    v = stats["variable"]
    ax.bar(v, stats["var_mu"], label="var(mu)", color="tab:blue")
    ax.bar(v, stats["mean_sigma2"], bottom=stats["var_mu"], label="mean(sigma^2)",
           color="tab:orange")
    for i in v[stats["inactive"]]:
        ax.annotate("inactive", (i, 0.02), rotation=90, ha="center", fontsize=7)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set(xlabel="latent variable", ylabel="variance",
           title="latent statistics: var(mu) + mean(sigma^2) ~ 1")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def sorted_bars(values: np.ndarray, title: str, ylabel: str):
    order = np.argsort(-values, kind="stable")
    fig, ax = plt.subplots(figsize=(max(6, 0.4 * len(values)), 3.5))
    ax.bar(range(len(values)), values[order], color="tab:green")
    ax.set_xticks(range(len(values)), [str(i) for i in order], fontsize=7)
    ax.set(xlabel="latent variable (sorted)", ylabel=ylabel, title=title)
    fig.tight_layout()
    return fig


def variance_vs_mse(points: list[tuple[float, float, str]]):
    """The seed's figure: delta_var against mse, one point per run, with the diagonal."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if points:
        mse, dv, names = zip(*points, strict=True)
        ax.scatter(mse, dv, color="tab:red")
        for m, d, n in points:
            ax.annotate(n, (m, d), fontsize=6)
        hi = max(max(mse), max(dv)) * 1.1
        ax.plot([0, hi], [0, hi], "k--", lw=0.8, label="delta_var = mse")
        ax.set(xlim=(0, hi), ylim=(0, hi))
        ax.legend(fontsize=8)
    ax.set(xlabel="mse (reconstruction)", ylabel="delta_var (reconstruction)",
           title="variance loss vs mse")
    fig.tight_layout()
    return fig


def heatmap(matrix: np.ndarray, labels: list[str], title: str):
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(labels), 1 + 0.7 * len(labels)))
    im = ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w", fontsize=8)
    ax.set(xlabel="target", ylabel="source", title=title)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def support_sweep(sizes, m_support, m_full: float, m_own: float, estimator: str):
    """How M falls as the support set grows, against the full-data fit and the target."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(sizes, m_support, "o-", label=f"{estimator} on a support set")
    ax.axhline(m_full, color="tab:green", ls="--", label=f"{estimator} on all fit rows")
    ax.axhline(m_own, color="k", ls=":", label="target's own reconstruction")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="support set size", ylabel="M (held-out pixel MSE)",
           title="relocation error vs support set size")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def scatter3d(codes: np.ndarray, labels: np.ndarray, title: str):
    """3-D latent codes coloured by class."""
    fig = plt.figure(figsize=(5.5, 5))
    ax = fig.add_subplot(projection="3d")
    ax.scatter(codes[:, 0], codes[:, 1], codes[:, 2], c=labels % 10, cmap="tab10", s=2,
               alpha=0.6)
    ax.set(xlabel="z0", ylabel="z1", zlabel="z2", title=title)
    fig.tight_layout()
    return fig


def error_ecdfs(curves: dict[str, tuple[np.ndarray, np.ndarray]], threshold: float):
    """Cumulative distributions of per-image regeneration errors, one line per image set
    (dashed: the first guess before refinement), with the reach threshold."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, (x, y) in curves.items():
        ax.step(x, y, where="post", label=label, ls="--" if "guess" in label else "-")
    ax.axvline(threshold, color="k", lw=0.8, ls=":", label=f"reach threshold {threshold:.3g}")
    ax.set(xscale="log", xlabel="regeneration MSE per image (log)",
           ylabel="share of images <= x", title="generative range: regeneration errors")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def sector_shares_bars(shares: dict[str, np.ndarray], judged: np.ndarray, missed: np.ndarray):
    """Data share vs generator share per judged sector, most crowded first; missed sectors
    marked."""
    order = judged[np.argsort(-shares["data_share"][judged], kind="stable")]
    x = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(order)), 3.8))
    ax.bar(x - 0.2, shares["data_share"][order], 0.4, label="real images")
    ax.bar(x + 0.2, shares["generator_share"][order], 0.4, label="generated samples")
    for i, sector in enumerate(order):
        if sector in set(missed.tolist()):
            ax.annotate("missed", (i, shares["data_share"][sector]), rotation=90,
                        ha="center", va="bottom", fontsize=7, color="tab:red")
    ax.set_xticks(x, [str(s) for s in order], fontsize=6, rotation=90)
    ax.set(xlabel="sector (reference latent space)", ylabel="share",
           title="where the data is vs where the generator puts its samples")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def sample_grids(grids: dict[str, np.ndarray]):
    """Sample grids of several samplers side by side (the same seeds for each)."""
    fig, axes = plt.subplots(1, len(grids), figsize=(3.2 * len(grids), 3.6), squeeze=False)
    for ax, (name, grid) in zip(axes[0], grids.items(), strict=True):
        ax.imshow(grid)
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    return fig


def translator_grid(translator: str, labels: list[str], panels: dict, every_row: np.ndarray | None):
    """One map translator: M / M_target_own for every ordered pair (rows: source), a block per
    (anchor choice, budget) and one for the fit on every row, on one log colour scale. One
    axes holds every block (a grid of axes costs seconds to lay out)."""
    anchors = list(dict.fromkeys(a for a, _ in panels))
    budgets = list(dict.fromkeys(b for _, b in panels))
    place = {(a, b): (r, c) for r, a in enumerate(anchors) for c, b in enumerate(budgets)}
    if every_row is not None:
        place[("all", "all")] = (len(anchors), 0)
        panels = {**panels, ("all", "all"): every_row}
    n, step = len(labels), len(labels) + 1
    rows, cols = len(anchors) + (every_row is not None), max(len(budgets), 1)
    mosaic = np.full((rows * step - 1, cols * step - 1), np.nan)
    for key, m in panels.items():
        r, c = place[key]
        mosaic[r * step:r * step + n, c * step:c * step + n] = m
    finite = mosaic[np.isfinite(mosaic)]
    norm = matplotlib.colors.LogNorm(max(finite.min(), 1e-3) if len(finite) else 1e-3,
                                     max(finite.max(), 1.01) if len(finite) else 10)
    fig, ax = plt.subplots(figsize=(1.5 + 0.42 * mosaic.shape[1], 1.2 + 0.42 * mosaic.shape[0]))
    im = ax.imshow(mosaic, cmap="viridis_r", norm=norm)
    for (i, j), v in np.ndenumerate(mosaic):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2g}", ha="center", va="center", color="w", fontsize=6)
    for (anchor, budget), (r, c) in place.items():
        ax.text(c * step + (n - 1) / 2, r * step - 0.7, f"{anchor}, {budget}", ha="center",
                va="bottom", fontsize=7)
    ax.set_yticks([r * step + i for r in range(rows) for i in range(n)], labels * rows,
                  fontsize=6)
    ax.set_xticks([c * step + j for c in range(cols) for j in range(n)], labels * cols,
                  fontsize=6, rotation=90)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(f"{translator}: M / M_target_own (rows: source, columns: target)", fontsize=9,
                 pad=22)
    fig.colorbar(im, ax=ax, shrink=0.6)
    return fig


def budget_curves(multiples: list[float], curves: dict[str, dict[str, list[float]]],
                  every_row: dict[str, float]):
    """Mean M / M_target_own over the pairs against the anchor budget, one panel per
    translator, one line per anchor choice; dashed: the fit on every row."""
    fig, axes = plt.subplots(1, len(curves), figsize=(3.2 * len(curves), 3.2), squeeze=False,
                             sharey=True)
    for ax, (translator, lines) in zip(axes[0], curves.items(), strict=True):
        for anchor, values in lines.items():
            ax.plot(multiples, values, "o-", ms=3, label=anchor)
        if translator in every_row:
            ax.axhline(every_row[translator], color="k", ls="--", lw=0.8, label="all fit rows")
        ax.axhline(1.0, color="grey", ls=":", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set(title=translator, xlabel="anchors / source dimension")
    axes[0, 0].set_ylabel("M / M_target_own (mean over pairs)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def variance_curves(steps: np.ndarray, var_mu: np.ndarray, inactive: np.ndarray,
                    batch_size: int, damaged: int, noise_from: int):
    """The sparsity post's Figure 1: var(mu) of every variable along training, the variables
    inactive at the end of training in red; then the collapse experiment on `damaged`."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i in range(var_mu.shape[1]):
        color = "tab:green" if i == damaged else "tab:red" if inactive[i] else "tab:blue"
        ax.plot(steps, var_mu[:, i], lw=1.4 if i == damaged else 1, color=color)
    for color, label in (("tab:blue", "active after training"),
                         ("tab:red", "inactive after training"),
                         ("tab:green", f"variable {damaged}, damaged by noise")):
        ax.plot([], [], color=color, label=label)
    ax.axvline(noise_from, color="k", lw=0.8, ls="--")
    ax.annotate(" noise from here", (noise_from, ax.get_ylim()[1] * 0.95), fontsize=7,
                va="top")
    ax.set(xlabel=f"minibatches of {batch_size}", ylabel="var(mu) over the probe",
           title=f"variance of the {var_mu.shape[1]} latent variables along training")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def collapse_curves(epochs: list[dict], variable: int):
    """The sparsity post's Figure 3: the damaged variable's reconstruction gain and KL term
    (nats) per epoch, its var(mu) and mean(sigma^2) on a second axis, the phases shaded."""
    fig, ax = plt.subplots(figsize=(8, 4))
    x = [r["epoch"] for r in epochs]
    ax.plot(x, [r["gain_nats"] for r in epochs], "o-", ms=3, label="reconstruction gain")
    ax.plot(x, [r["kl"] for r in epochs], "s-", ms=3, label="KL term")
    ax.set(xlabel="epoch", ylabel="nats per item",
           title=f"variable {variable}: noise added, held, removed")
    right = ax.twinx()
    right.plot(x, [r["var_mu"] for r in epochs], ":", color="tab:green", label="var(mu)")
    right.plot(x, [r["mean_sigma2"] for r in epochs], ":", color="tab:red",
               label="mean(sigma^2)")
    right.set_ylabel("variance")
    shades = {"increase": "0.9", "hold": "0.8", "revive": "#e6f2e6"}
    for phase, color in shades.items():
        at = [r["epoch"] for r in epochs if r["phase"] == phase]
        if at:
            ax.axvspan(min(at) - 0.5, max(at) + 0.5, color=color, zorder=0, label=phase)
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig
