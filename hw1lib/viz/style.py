"""What every figure shares: the report's text sizes (:func:`legible`) and the one writer to disk, :func:`save_figure`.

Sizes are chosen for a figure printed at A4 text width (about 16 cm): 9-11 pt text at that width.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib as mpl
from matplotlib.figure import Figure

from hw1lib.files import atomic_write
from hw1lib.paths import figures_dir

#: Text sizes that stay legible once a figure is shrunk to A4 text width.
_RC = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9,
    "figure.titlesize": 12,
}
_TICK_SIZE = 9


def legible(fn: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build the figure under the report's font sizes; tick labels are drawn lazily, so set them explicitly."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        with mpl.rc_context(_RC):
            fig = fn(*args, **kwargs)
        for ax in fig.axes:
            ax.tick_params(labelsize=_TICK_SIZE)
        return fig

    return wrapper


# --------------------------------------------------------------------------------------------- saving


def save_figure(fig: Figure, name: str, folder: Path | None = None, dpi: int = 150) -> Path:
    """Write ``fig`` as ``<folder>/<name>.png`` atomically and return the path.

    Args:
        fig: the figure to write.
        name: a file name without folders; ``.png`` is added unless present.
        folder: where to write; ``figures_dir()`` (``figures/`` or ``$HW1_FIGURES``) by default.
        dpi: resolution; 150 is sharp on paper and keeps files small.

    The PNG is written through :func:`hw1lib.files.atomic_write` (a temporary file, fsync, rename, the
    umask's mode), so a reader (the report build) never sees a half-written figure.
    """
    if not name or "/" in name or os.sep in name:
        raise ValueError(f"save_figure: name must be a plain file name like 'p1_pca', got {name!r}")
    folder = Path(folder) if folder is not None else figures_dir()
    path = folder / (name if name.lower().endswith(".png") else f"{name}.png")
    atomic_write(
        path, lambda handle: fig.savefig(handle, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    )
    return path
