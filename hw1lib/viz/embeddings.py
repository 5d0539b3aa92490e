"""2-D embeddings (PCA, t-SNE) as scatter plots coloured by class, with a colour per class that stays put."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from hw1lib.viz.style import legible


def class_colors(n: int) -> np.ndarray:
    """(n, 3) RGB in 0..1: tab10 up to 10 classes, tab20 up to 20, tab20 + tab20b + tab20c up to 60."""
    if n <= 10:
        names = ["tab10"]
    elif n <= 20:
        names = ["tab20"]
    else:
        names = ["tab20", "tab20b", "tab20c"]
    colours = np.concatenate([np.asarray(mpl.colormaps[c].colors)[:, :3] for c in names])
    if n > len(colours):
        raise ValueError(f"class_colors: at most {len(colours)} distinguishable colours, asked for {n}")
    return colours[:n]


@legible
def plot_embeddings(
    embeddings: Mapping[str, np.ndarray],
    labels: np.ndarray,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """Side-by-side 2-D scatter plots (one per key, e.g. ``"epoch 1"``), coloured by class.

    Args:
        embeddings: panel title -> (N, 2) points, all for the same N samples.
        labels: (N,) integer classes; a class keeps its colour in every panel.
        title: figure title.
        class_names: names for the legend; class indices by default.

    Up to 12 classes get a legend; more (50) get a colour strip under the panels as the class key.
    """
    labels = np.asarray(labels).astype(int)
    n_classes = int(labels.max()) + 1 if class_names is None else len(class_names)
    names = [str(c) for c in (class_names if class_names is not None else range(n_classes))]
    colours = class_colors(n_classes)
    order = np.random.default_rng(0).permutation(len(labels))  # no class is always drawn on top
    panels = len(embeddings)
    side = min(3.2, 7.8 / panels)
    strip = n_classes > 12
    fig = Figure(figsize=(side * panels, side + (0.9 if strip else 0.6)), layout="constrained")
    grid = fig.add_gridspec(2 if strip else 1, panels, height_ratios=[1, 0.06] if strip else [1])
    for k, (name, points) in enumerate(embeddings.items()):
        points = np.asarray(points)
        if points.shape != (len(labels), 2):
            raise ValueError(f"plot_embeddings: {name!r} has shape {points.shape}, expected ({len(labels)}, 2)")
        ax = fig.add_subplot(grid[0, k])
        ax.scatter(
            points[order, 0],
            points[order, 1],
            c=colours[labels[order]],
            s=6 if len(labels) > 500 else 14,
            linewidths=0,
            alpha=0.85,
        )
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name)
    if strip:
        _class_strip(fig.add_subplot(grid[1, :]), colours, names)
    else:
        handles = [Patch(facecolor=c, label=n) for c, n in zip(colours, names)]
        fig.legend(
            handles=handles, loc="outside lower center", ncol=min(n_classes, 8 if panels > 1 else 4), frameon=False
        )
    if title:
        fig.suptitle(title)
    return fig


def _class_strip(ax: Any, colours: np.ndarray, names: Sequence[str]) -> None:
    """A colourbar-like key: one cell per class, every fifth named."""
    n = len(colours)
    ax.imshow(np.arange(n)[None, :], cmap=ListedColormap(colours), aspect="auto", interpolation="nearest")
    ticks = np.arange(0, n, 5)
    ax.set_xticks(ticks, [names[i] for i in ticks])
    ax.set_yticks([])
    ax.set_xlabel("class")
