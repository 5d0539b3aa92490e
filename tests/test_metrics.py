"""The confusion matrix and the official mIoU, checked against a direct NumPy transcription."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hw1lib.data.palette import SCORED_CLASSES
from hw1lib.metrics import ConfusionMatrix


def official_miou(pred: np.ndarray, labels: np.ndarray) -> tuple[float, list[float]]:
    """The course's formula, transcribed: dataset-level, classes 0-5, unknown ground truth not ignored."""
    ious = []
    for i in range(6):
        tp_fp = np.sum(pred == i)
        tp_fn = np.sum(labels == i)
        tp = np.sum((pred == i) * (labels == i))
        with np.errstate(invalid="ignore", divide="ignore"):
            ious.append(tp / (tp_fp + tp_fn - tp))
    return sum(ious) / 6, ious


def test_miou_equals_the_official_formula_on_random_masks_with_unknown_pixels():
    rng = np.random.default_rng(0)
    for _ in range(5):
        labels = rng.integers(0, 7, size=(4, 33, 29))  # includes unknown (6) ground truth
        pred = np.where(rng.random(labels.shape) < 0.6, labels, rng.integers(0, 7, size=labels.shape))
        matrix = ConfusionMatrix(7)
        for p, t in zip(pred, labels):  # accumulated image by image: must equal the pooled value
            matrix.update(torch.from_numpy(p), torch.from_numpy(t))
        result = matrix.miou(SCORED_CLASSES)
        expected, per_class = official_miou(pred, labels)
        assert result["miou"] == pytest.approx(expected, abs=1e-12)
        assert [result["iou"][c] for c in range(6)] == pytest.approx(per_class, abs=1e-12)
        assert result["absent_classes"] == []


def test_predicting_a_class_on_unknown_ground_truth_is_a_false_positive():
    labels = np.array([[0, 6]])
    pred = np.array([[0, 0]])
    matrix = ConfusionMatrix(7)
    matrix.update(torch.from_numpy(pred), torch.from_numpy(labels))
    assert matrix.iou()[0] == 0.5  # 1 / (2 + 1 - 1)


def test_absent_class_is_reported_explicitly_and_excluded_from_the_mean():
    labels = np.array([[0, 1, 2, 3, 4, 6]])
    pred = np.array([[0, 1, 2, 3, 3, 6]])  # barren (5) absent from both
    matrix = ConfusionMatrix(7)
    matrix.update(torch.from_numpy(pred), torch.from_numpy(labels))
    result = matrix.miou(SCORED_CLASSES)
    official, per_class = official_miou(pred, labels)
    assert math.isnan(official) and math.isnan(per_class[5])
    assert result["absent_classes"] == [5] and result["iou"][5] is None
    assert result["miou"] == pytest.approx(np.mean([1, 1, 1, 0.5, 0]))


def test_accuracy_and_matrix_layout():
    matrix = ConfusionMatrix(3)
    matrix.update(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2]))
    assert matrix.accuracy() == 0.75
    assert matrix.to_numpy().tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]  # rows = ground truth
    with pytest.raises(ValueError, match="shape"):
        matrix.update(torch.zeros(2), torch.zeros(3))


def test_matrix_equals_numpy_counts_on_random_batches():
    rng = np.random.default_rng(1)
    matrix, expected = ConfusionMatrix(7), np.zeros((7, 7), dtype=np.int64)
    for shape in [(3, 17, 5), (64,), (1, 1), (2, 8, 8)]:
        truth, pred = rng.integers(0, 7, size=shape), rng.integers(0, 7, size=shape)
        matrix.update(torch.from_numpy(pred).to(torch.uint8), torch.from_numpy(truth))  # mixed dtypes, as in training
        np.add.at(expected, (truth.ravel(), pred.ravel()), 1)
    assert matrix.matrix.dtype == torch.int64
    np.testing.assert_array_equal(matrix.to_numpy(), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the point is that CUDA never waits")
def test_update_never_waits_for_the_gpu():
    matrix = ConfusionMatrix(7, "cuda")
    truth, pred = torch.randint(0, 7, (4, 64, 64), device="cuda"), torch.randint(0, 7, (4, 64, 64), device="cuda")
    torch.cuda.set_sync_debug_mode("error")  # any host-device synchronisation raises
    try:
        matrix.update(pred, truth)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert int(matrix.matrix.sum()) == truth.numel()
