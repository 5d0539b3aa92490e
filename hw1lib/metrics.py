"""One confusion matrix for both problems: accuracy for classification, the official mIoU for segmentation.

The matrix is accumulated on the device (rows = ground truth, columns = prediction) by adding ones into
a preallocated flat view of it, and everything else is derived from it. Why not ``torch.bincount``: its
output size depends on the data, so on CUDA it waits for the device to learn that size (even with
``minlength``), once per training and evaluation step; ``index_add_`` into a fixed-size tensor never waits.

The official Problem 2 metric (the course's ``mean_iou_evaluate.py``): for each class i in 0..5, over all pixels of all
images pooled, ``IoU_i = tp / (tp_fp + tp_fn - tp)``, and ``mIoU`` is the mean over the six classes.
Pixels whose ground truth is ``unknown`` (6) are NOT ignored: predicting class i there counts in
``tp_fp`` of class i. This is exactly what a 7x7 confusion matrix gives when its row/column sums are used.

Absent classes (our documented choice): when a scored class appears in neither the prediction nor the
ground truth, the official script computes 0/0 = NaN and its mean becomes NaN. We report such a class
explicitly in ``absent_classes`` with ``iou = None`` and average over the remaining classes; when no
class is absent (always the case on the real validation set) the value equals the official one exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


class ConfusionMatrix:
    """An n x n confusion matrix accumulated on its device without waiting for it (see the module docstring)."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of integer predictions and targets of the same shape."""
        if prediction.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(prediction.shape)} != target shape {tuple(target.shape)}")
        device = self.matrix.device
        truth, predicted = (t.reshape(-1).to(device, torch.int64) for t in (target, prediction))
        index = truth * self.num_classes + predicted
        self.matrix.view(-1).index_add_(0, index, torch.ones_like(index))

    def accuracy(self) -> float:
        """Fraction of correct predictions over everything seen."""
        total = int(self.matrix.sum())
        return float(self.matrix.diagonal().sum()) / total if total else float("nan")

    def iou(self) -> list[float | None]:
        """Per-class IoU (tp / (tp_fp + tp_fn - tp)); ``None`` where the class is absent from both."""
        m = self.matrix.double()
        tp = m.diagonal()
        union = m.sum(0) + m.sum(1) - tp
        return [None if u == 0 else float(t / u) for t, u in zip(tp.tolist(), union.tolist())]

    def miou(self, classes: Sequence[int]) -> dict:
        """The official mIoU over ``classes`` plus the per-class values and the absent classes.

        Returns:
            ``{"miou": float, "iou": {class: float | None}, "absent_classes": [class, ...]}``; ``miou`` is
            NaN only when every class is absent.
        """
        per_class = self.iou()
        scores = {c: per_class[c] for c in classes}
        present = [v for v in scores.values() if v is not None]
        return {
            "miou": float(np.mean(present)) if present else float("nan"),
            "iou": scores,
            "absent_classes": [c for c, v in scores.items() if v is None],
        }

    def to_numpy(self) -> np.ndarray:
        """The matrix as an int64 NumPy array (rows = ground truth, columns = prediction)."""
        return self.matrix.cpu().numpy()
