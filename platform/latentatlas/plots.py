"""Pictures of training and tuning (the engine's own; the latent-space science draws its
figures in analysis/figures.py)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def sweep_curves(panels: dict[str, dict[str, tuple[list, list]]], xlabel: str,
                 diagonal: str | None = None):
    """One panel per measured quantity, one line per group of trials (e.g. per KL policy):
    {panel title: {group label: (x values, y values)}}. `diagonal` names the panel that gets
    the y = x line (active units can never exceed the latent size)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (title, lines) in zip(axes[0], panels.items(), strict=True):
        for label, (xs, ys) in lines.items():
            ax.plot(xs, ys, marker="o", label=label)
        if title == diagonal:
            top = max((max(xs) for xs, _ in lines.values()), default=1)
            ax.plot([0, top], [0, top], color="k", lw=0.8, ls="--", label="y = x")
        ax.set(xlabel=xlabel, title=title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def trajectories(codes: np.ndarray, labels: np.ndarray):
    """Paths of a few images' codes (moments, images, latent) through the first epoch, on the
    first two latent variables: circles where they start, filled dots where they end."""
    fig, ax = plt.subplots(figsize=(5, 5))
    colors = plt.get_cmap("tab10")
    for i, label in enumerate(labels):
        path = codes[:, i, :2]
        c = colors(int(label) % 10)
        ax.plot(path[:, 0], path[:, 1], color=c, lw=1, alpha=0.8)
        ax.scatter(*path[0], facecolors="none", edgecolors=[c], s=30)
        ax.scatter(*path[-1], color=c, s=30, label=str(label))
    ax.set(xlabel="z0", ylabel="z1", title=f"codes during the first epoch ({len(codes)} moments)")
    ax.legend(title="class", fontsize=7, loc="best")
    fig.tight_layout()
    return fig
