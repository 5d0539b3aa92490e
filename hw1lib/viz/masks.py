"""Segmentation masks: class colours blended over an image (:func:`overlay_mask`), one overlay, a grid of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from hw1lib.data.palette import CLASS_NAMES, PALETTE
from hw1lib.viz.style import legible


def _boundaries(class_map: np.ndarray, width: int = 1) -> np.ndarray:
    """Pixels with a different class within ``width`` steps up, down, left or right (both sides marked)."""
    edge = np.zeros(class_map.shape, dtype=bool)
    for d in range(1, width + 1):
        vertical = class_map[d:, :] != class_map[:-d, :]
        horizontal = class_map[:, d:] != class_map[:, :-d]
        edge[d:, :] |= vertical
        edge[:-d, :] |= vertical
        edge[:, d:] |= horizontal
        edge[:, :-d] |= horizontal
    return edge


def overlay_mask(
    image: np.ndarray,
    class_map: np.ndarray,
    alpha: float = 0.5,
    edges: bool = True,
    edge_width: int = 1,
) -> np.ndarray:
    """Blend the class colours over an image, like the course's mask visualiser, in pure numpy.

    Args:
        image: (H, W, 3) uint8 RGB.
        class_map: (H, W) class indices 0..6.
        alpha: weight of the class colour inside regions.
        edges: paint class boundaries (pixels whose class differs from a 4-neighbour) in their own class
            colour, fully opaque, so region outlines stay visible where the blend is faint.
        edge_width: boundary thickness in pixels on each side; ``image_size // 128`` reads well in print.

    Returns:
        (H, W, 3) uint8.
    """
    image = np.asarray(image)
    class_map = np.asarray(class_map)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != class_map.shape:
        raise ValueError(
            f"overlay_mask: expected an (H, W, 3) image and an (H, W) class map, got "
            f"{image.shape} and {class_map.shape}"
        )
    if class_map.size and (class_map.min() < 0 or class_map.max() >= len(PALETTE)):
        raise ValueError(
            f"overlay_mask: class values must lie in 0..{len(PALETTE) - 1}, found {class_map.min()}..{class_map.max()}"
        )
    colours = PALETTE[class_map.astype(np.intp)].astype(np.float32)
    out = (1 - alpha) * image.astype(np.float32) + alpha * colours
    if edges:
        edge = _boundaries(class_map, edge_width)
        out[edge] = colours[edge]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _class_legend(fig: Figure, ncol: int = 7) -> None:
    handles = [Patch(facecolor=np.asarray(c) / 255, edgecolor="0.4", label=n) for c, n in zip(PALETTE, CLASS_NAMES)]
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, frameon=False)


def _edge_width(class_map: np.ndarray) -> int:
    return max(1, min(class_map.shape) // 128)


def _image_axes(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


@legible
def plot_mask_grid(
    images: Sequence[np.ndarray],
    ground_truths: Sequence[np.ndarray],
    predictions: Mapping[str, Sequence[np.ndarray]],
    ids: Sequence[str],
    title: str | None = None,
) -> Figure:
    """Rows = images; columns = input, ground truth, then one column per entry of ``predictions``.

    Args:
        images: (H, W, 3) uint8 inputs.
        ground_truths: (H, W) class maps.
        predictions: column title -> one (H, W) class map per image, e.g. ``{"epoch 1 (early)": [...]}``.
        ids: row labels, e.g. ``["0013", "0062", "0104"]``.
        title: figure title.
    """
    n = len(images)
    lengths = {"ground_truths": len(ground_truths), "ids": len(ids), **{k: len(v) for k, v in predictions.items()}}
    if any(length != n for length in lengths.values()):
        raise ValueError(f"plot_mask_grid: {n} images but lengths {lengths}; give one entry per image everywhere")
    columns = ["input", "ground truth", *predictions]
    cell = min(2.0, 7.5 / len(columns))
    fig = Figure(figsize=(cell * len(columns), cell * n + 0.7), layout="constrained")
    axes = fig.subplots(n, len(columns), squeeze=False)
    for r in range(n):
        maps = [ground_truths[r], *(predictions[k][r] for k in predictions)]
        panels = [np.asarray(images[r])] + [overlay_mask(images[r], m, edge_width=_edge_width(m)) for m in maps]
        for c, panel in enumerate(panels):
            axes[r, c].imshow(panel, interpolation="antialiased")
            _image_axes(axes[r, c])
            if r == 0:
                axes[r, c].set_title(columns[c])
        axes[r, 0].set_ylabel(str(ids[r]))
    _class_legend(fig, ncol=7 if len(columns) >= 5 else 4)
    if title:
        fig.suptitle(title)
    return fig


@legible
def plot_overlay(image: np.ndarray, class_map: np.ndarray, title: str | None = None) -> Figure:
    """One image with its class map blended over it, and the class legend."""
    fig = Figure(figsize=(5.0, 5.8), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(overlay_mask(image, class_map, edge_width=_edge_width(np.asarray(class_map))))
    _image_axes(ax)
    if title:
        ax.set_title(title)
    _class_legend(fig, ncol=4)
    return fig


def plot_kept_masks(
    images: Mapping[str, np.ndarray],
    ground_truths: Mapping[str, np.ndarray],
    columns: Mapping[str, Mapping[str, np.ndarray]],
    title: str | None = None,
) -> Figure:
    """:func:`plot_mask_grid` from masks keyed by validation id (what a run keeps, ``Run.kept_masks``).

    Why: the notebooks and the report assembled the same per-id lists by hand; here the rows are the ids of
    ``images`` in their order, and each column (title -> ``{id: class map}``) is read in that order.

    Args:
        images: id -> (H, W, 3) uint8 input.
        ground_truths: id -> (H, W) class map.
        columns: column title -> id -> (H, W) predicted class map, e.g. ``{"epoch 1 (early)": {...}}``.
        title: figure title.
    """
    ids = list(images)
    return plot_mask_grid(
        [images[i] for i in ids],
        [ground_truths[i] for i in ids],
        {name: [masks[i] for i in ids] for name, masks in columns.items()},
        ids,
        title=title,
    )
