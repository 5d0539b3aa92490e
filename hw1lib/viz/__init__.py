"""Figures of the report: training curves, confusion matrices, architecture diagrams, mask overlays, embeddings.

Every ``plot_*`` function returns a :class:`matplotlib.figure.Figure` built without pyplot, so nothing is
shown, nothing piles up in pyplot's figure list, and any backend (Agg included) can render it; Jupyter
displays a returned figure. :func:`save_figure` is the one place that writes a figure to disk.
Numbers are computed elsewhere (metrics, features, engine); the only computation here is what a picture
needs: blending a mask over an image, and tracing a model's modules for its diagram.

Submodules:

- ``style``: the report's text sizes (:func:`legible`) and :func:`save_figure`.
- ``curves``: :func:`plot_history`, training curves with the best validation epoch.
- ``confusion``: :func:`plot_confusion_matrix`, :func:`plot_confusion_matrices` (side by side).
- ``scores``: :func:`plot_class_scores` (per-class accuracy or IoU bars), :func:`plot_confused_examples`.
- ``masks``: :func:`overlay_mask`, :func:`plot_mask_grid`, :func:`plot_kept_masks` (masks keyed by id),
  :func:`plot_overlay`.
- ``embeddings``: :func:`class_colors`, :func:`plot_embeddings`.
- ``architecture``: :func:`trace_architecture` and :func:`plot_architecture` (model block diagrams).
"""

from __future__ import annotations

from hw1lib.data.palette import CLASS_NAMES, PALETTE
from hw1lib.viz.architecture import KIND_COLORS, plot_architecture, trace_architecture
from hw1lib.viz.confusion import plot_confusion_matrices, plot_confusion_matrix
from hw1lib.viz.curves import plot_history
from hw1lib.viz.embeddings import class_colors, plot_embeddings
from hw1lib.viz.masks import overlay_mask, plot_kept_masks, plot_mask_grid, plot_overlay
from hw1lib.viz.scores import plot_class_scores, plot_confused_examples
from hw1lib.viz.style import legible, save_figure

__all__ = [
    "CLASS_NAMES",
    "KIND_COLORS",
    "PALETTE",
    "class_colors",
    "legible",
    "overlay_mask",
    "plot_architecture",
    "plot_class_scores",
    "plot_confused_examples",
    "plot_confusion_matrices",
    "plot_confusion_matrix",
    "plot_embeddings",
    "plot_history",
    "plot_kept_masks",
    "plot_mask_grid",
    "plot_overlay",
    "save_figure",
    "trace_architecture",
]
