"""Training curves: one panel per metric, train and validation together, the best validation epoch marked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hw1lib.viz.style import legible

_SPLIT_COLORS = {"train": "C0", "val": "C1"}
_METRIC_TITLES = {
    "loss": "loss",
    "acc": "accuracy",
    "miou": "mIoU",
    "lr": "learning rate",
    "seconds": "seconds per epoch",
}


def _read_history(history: pd.DataFrame | str | Path) -> pd.DataFrame:
    if isinstance(history, pd.DataFrame):
        return history
    path = Path(history)
    if not path.exists():
        raise FileNotFoundError(f"history file not found: {path}")
    return pd.read_csv(path)


def _best_row(values: pd.Series, metric: str) -> int | None:
    """Index label of the best finite value: lowest for a loss, highest for anything else."""
    finite = values[np.isfinite(values.astype(float))]
    if finite.empty:
        return None
    return finite.idxmin() if "loss" in metric else finite.idxmax()


@legible
def plot_history(
    history: pd.DataFrame | str | Path,
    metrics: Sequence[str] = ("loss", "acc"),
    title: str | None = None,
) -> Figure:
    """Training curves, one panel per metric, with the best validation epoch marked.

    Args:
        history: one row per epoch (a DataFrame, or a run's history CSV file) with columns such as
            ``epoch, train_loss, val_loss, train_acc, val_acc, val_miou, lr``.
        metrics: for each name ``m``, the panel draws ``train_m`` and ``val_m`` (whichever exist), or the
            column ``m`` itself (e.g. ``lr``, drawn on a log scale).
        title: figure title.

    The best epoch is the lowest ``val_m`` for a loss and the highest otherwise.
    """
    df = _read_history(history)
    epochs = df["epoch"] if "epoch" in df else pd.Series(np.arange(1, len(df) + 1), index=df.index)
    fig = Figure(figsize=(min(3.4, 8.0 / len(metrics)) * len(metrics), 3.3), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    handles: dict[str, Any] = {}
    for ax, metric in zip(axes, metrics):
        columns = [c for c in (f"train_{metric}", f"val_{metric}", metric) if c in df]
        if not columns:
            raise ValueError(
                f"plot_history: no column for metric {metric!r} (looked for train_{metric}, val_{metric}, "
                f"{metric}); the history has {list(df.columns)}. Pass metrics=... naming existing ones."
            )
        marker = "o" if len(df) <= 30 else None
        for column in columns:
            label = column.split("_", 1)[0] if column != metric else _METRIC_TITLES.get(metric, metric)
            (line,) = ax.plot(epochs, df[column], marker=marker, markersize=3, color=_SPLIT_COLORS.get(label, "C2"))
            handles.setdefault(label, line)
        heading = _METRIC_TITLES.get(metric, metric)
        if f"val_{metric}" in df and (best := _best_row(df[f"val_{metric}"], metric)) is not None:
            value, epoch = df.loc[best, f"val_{metric}"], epochs.loc[best]
            ax.axvline(epoch, color="0.5", linestyle=":", linewidth=1)
            (star,) = ax.plot([epoch], [value], "k*", markersize=10)
            handles.setdefault("best validation epoch", star)
            heading += f"\nbest val {value:.3g} (epoch {epoch})"
        if metric == "lr" and (df[metric] > 0).all():
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # a 3-epoch run has no epoch 1.5
        ax.set_title(heading)
        ax.grid(alpha=0.3)
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=len(handles), frameon=False)
    if title:
        fig.suptitle(title)
    return fig
