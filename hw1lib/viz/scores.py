"""Scores per class as bar charts (P1 per-class accuracy, P2 per-class IoU), and examples of confused classes.

The numbers come from the runs (confusion matrices, IoU tables); these functions only draw them. Bars of
several models share one axis so that a reader compares them class by class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from hw1lib.data.palette import PALETTE
from hw1lib.viz.style import legible


@legible
def plot_class_scores(
    scores: Mapping[str, Sequence[float | None]],
    class_names: Sequence[str],
    ylabel: str,
    title: str | None = None,
    class_colours: bool = False,
) -> Figure:
    """Grouped bars: one group per class, one bar per model; a missing score (``None``) is marked "absent".

    Args:
        scores: model label -> one score in [0, 1] (or ``None``) per class, in ``class_names`` order.
        class_names: x tick labels (every fifth one shown beyond 15 classes).
        ylabel: what the score is, e.g. ``"IoU"``.
        title: axes title.
        class_colours: edge the bars with the land-cover palette (P2) so classes read as in the mask figures.
    """
    n = len(class_names)
    for label, values in scores.items():
        if len(values) != n:
            raise ValueError(f"plot_class_scores: {len(values)} scores for {label!r} but {n} class names")
    small = n <= 15
    fig = Figure(figsize=(6.4, 3.0) if small else (7.4, 3.0), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(scores))
    x = np.arange(n)
    for k, (label, values) in enumerate(scores.items()):
        heights = [0.0 if v is None else float(v) for v in values]
        bars = ax.bar(x + (k - (len(scores) - 1) / 2) * width, heights, width, label=label, color=f"C{k}")
        if class_colours:
            for bar, rgb in zip(bars, PALETTE[:n]):
                bar.set_edgecolor(np.asarray(rgb) / 255 * 0.8)
                bar.set_linewidth(1.2)
        for i, v in enumerate(values):
            if v is None:
                ax.text(
                    x[i] + (k - (len(scores) - 1) / 2) * width,
                    0.02,
                    "absent",
                    rotation=90,
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
    step = 1 if small else 5
    ax.set_xticks(
        x[::step],
        [class_names[i] for i in range(0, n, step)],
        rotation=30 if small else 0,
        ha="right" if small else "center",
    )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("class")
    ax.grid(axis="y", alpha=0.3)
    if len(scores) > 1:
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=len(scores), frameon=False)
    if title:
        ax.set_title(title)
    return fig


@legible
def plot_confused_examples(
    images: np.ndarray,
    labels: np.ndarray,
    pairs: Sequence[tuple[int, int]],
    per_class: int = 3,
    title: str | None = None,
) -> Figure:
    """For each (true, predicted) class pair, ``per_class`` images of each class side by side.

    Args:
        images: (N, 3, H, W) uint8 (the validation set).
        labels: (N,) class of each image.
        pairs: the confused pairs, most confused first.
        per_class: images shown of each class of a pair.
        title: figure title.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if not pairs:
        raise ValueError("plot_confused_examples: no class pairs to show")
    columns = 2 * per_class
    fig = Figure(figsize=(0.95 * columns + 0.4, 1.05 * len(pairs) + 0.5), layout="constrained")
    axes = fig.subplots(len(pairs), columns, squeeze=False)
    for row, (true, predicted) in enumerate(pairs):
        for side, cls in enumerate((true, predicted)):
            chosen = np.flatnonzero(labels == cls)[:per_class]
            for j in range(per_class):
                ax = axes[row, side * per_class + j]
                ax.set_xticks([])
                ax.set_yticks([])
                if j < len(chosen):
                    ax.imshow(images[chosen[j]].transpose(1, 2, 0), interpolation="nearest")
                for spine in ax.spines.values():
                    spine.set_edgecolor("C3" if side else "C0")
                    spine.set_linewidth(2)
                if j == 0:
                    ax.set_title(f"class {cls}" + (" (true)" if side == 0 else " (predicted)"), fontsize=9, loc="left")
    if title:
        fig.suptitle(title)
    return fig
