"""Confusion-matrix heatmaps: every cell numbered up to 15 classes; at 50, a square-root colour scale instead."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import seaborn as sns
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from hw1lib.viz.style import legible


def _normalised(cm: np.ndarray, names: Sequence[str] | None, normalize: bool) -> tuple[np.ndarray, list[str]]:
    cm = np.asarray(cm, dtype=float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"plot_confusion_matrix: expected a square (n, n) matrix, got shape {cm.shape}")
    n = cm.shape[0]
    names = [str(c) for c in (names if names is not None else range(n))]
    if len(names) != n:
        raise ValueError(f"plot_confusion_matrix: {len(names)} class names for a {n}x{n} matrix")
    if normalize:
        totals = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    return cm, names


def _draw(ax, cm: np.ndarray, names: list[str], normalize: bool, colorbar: bool) -> None:
    """One heatmap on ``ax``: numbered cells up to 15 classes, a square-root colour scale beyond."""
    n = cm.shape[0]
    small = n <= 15
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
        cbar=colorbar,
        cbar_kws={"label": "fraction of the true class" if normalize else "count", "shrink": 0.8},
        xticklabels=False,
        yticklabels=False,
    )
    ticks = np.arange(0, n, step)
    ax.set_xticks(
        ticks + 0.5, [names[i] for i in ticks], rotation=45 if small else 0, ha="right" if small else "center"
    )
    ax.set_yticks(ticks + 0.5, [names[i] for i in ticks], rotation=0)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")


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
    cm, names = _normalised(cm, class_names, normalize)
    fig = Figure(figsize=(5.6, 4.8) if len(names) <= 15 else (7.0, 6.0), layout="constrained")
    ax = fig.add_subplot()
    _draw(ax, cm, names, normalize, colorbar=True)
    if title:
        ax.set_title(title)
    return fig


@legible
def plot_confusion_matrices(
    matrices: Mapping[str, np.ndarray],
    class_names: Sequence[str] | None = None,
    normalize: bool = True,
    title: str | None = None,
) -> Figure:
    """Several confusion matrices side by side on one colour scale (e.g. model A next to model B).

    Args:
        matrices: panel title -> (n, n) counts; all of one size.
        class_names, normalize: as in :func:`plot_confusion_matrix`.
        title: figure title.
    """
    panels = {label: _normalised(cm, class_names, normalize) for label, cm in matrices.items()}
    sizes = {cm.shape for cm, _ in panels.values()}
    if len(sizes) != 1:
        raise ValueError(f"plot_confusion_matrices: matrices of different sizes {sorted(sizes)}")
    fig = Figure(figsize=(3.7 * len(panels) + 0.6, 3.9), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for k, (ax, (label, (cm, names))) in enumerate(zip(axes, panels.items())):
        _draw(ax, cm, names, normalize, colorbar=k == len(panels) - 1)
        ax.set_title(label)
        if k:
            ax.set_ylabel("")
    if title:
        fig.suptitle(title)
    return fig
