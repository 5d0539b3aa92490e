"""Confusion-matrix heatmaps: every cell numbered up to 15 classes; at 50, a square-root colour scale instead."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import seaborn as sns
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from hw1lib.viz.style import legible


@legible
def plot_confusion_matrix(
    cm: np.ndarray,
    class_names: Sequence[str] | None = None,
    normalize: bool = True,
    title: str | None = None,
) -> Figure:
    """Heatmap of a confusion matrix, rows = true class, columns = predicted class.

    Args:
        cm: (n, n) counts.
        class_names: tick labels; class indices by default.
        normalize: divide each row by its total (a class with no samples keeps a row of zeros).
        title: axes title.

    Up to 15 classes every cell carries its value; beyond that (50 classes) cells are unlabelled, only
    every fifth class is named on the axes, and the colour scale is a square root so that the small
    off-diagonal confusions stay visible next to the diagonal.
    """
    cm = np.asarray(cm, dtype=float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"plot_confusion_matrix: expected a square (n, n) matrix, got shape {cm.shape}")
    n = cm.shape[0]
    names = [str(c) for c in (class_names if class_names is not None else range(n))]
    if len(names) != n:
        raise ValueError(f"plot_confusion_matrix: {len(names)} class names for a {n}x{n} matrix")
    if normalize:
        totals = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    small = n <= 15
    fig = Figure(figsize=(5.6, 4.8) if small else (7.0, 6.0), layout="constrained")
    ax = fig.add_subplot()
    step = 1 if small else 5
    sns.heatmap(
        cm,
        ax=ax,
        cmap="Blues",
        norm=None if small else PowerNorm(0.5, vmin=0, vmax=1 if normalize else cm.max()),
        vmin=0 if small else None,
        vmax=(1 if normalize else None) if small else None,
        square=True,
        annot=small,
        fmt=".2f" if normalize else ".0f",
        annot_kws={"fontsize": 9},
        cbar_kws={"label": "fraction of the true class" if normalize else "count", "shrink": 0.8},
        xticklabels=False,
        yticklabels=False,
    )
    ticks = np.arange(0, n, step)
    ax.set_xticks(ticks + 0.5, [names[i] for i in ticks], rotation=45 if small else 0,
                  ha="right" if small else "center")
    ax.set_yticks(ticks + 0.5, [names[i] for i in ticks], rotation=0)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title)
    return fig
