"""Focal loss: hand-computed values, equality with cross-entropy at gamma 0; segmentation criterion."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hw1lib.losses import FocalLoss, SegmentationCriterion, build_loss


def test_focal_loss_by_hand():
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # p = (0.75, 0.25) and (0.5, 0.5)
    target = torch.tensor([0, 1])
    expected = (0.25**2 * -math.log(0.75) + 0.5**2 * -math.log(0.5)) / 2
    assert FocalLoss(gamma=2.0)(logits, target).item() == pytest.approx(expected, rel=1e-6)
    weighted = (2 * 0.25**2 * -math.log(0.75) + 1 * 0.5**2 * -math.log(0.5)) / 3
    assert FocalLoss(2.0, weight=torch.tensor([2.0, 1.0]))(logits, target).item() == pytest.approx(weighted, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs", [{}, {"weight": True}, {"label_smoothing": 0.1}, {"weight": True, "label_smoothing": 0.2}]
)
@pytest.mark.parametrize("shape", [(12, 5), (3, 5, 4, 6)])
def test_focal_loss_at_gamma_zero_is_cross_entropy(kwargs, shape):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(*shape, generator=generator)
    target = torch.randint(0, 5, (shape[0], *shape[2:]), generator=generator)
    if kwargs.get("weight"):
        kwargs = {**kwargs, "weight": torch.rand(5, generator=generator) + 0.1}
    assert FocalLoss(gamma=0.0, **kwargs)(logits, target).item() == pytest.approx(
        F.cross_entropy(logits, target, **kwargs).item(), rel=1e-5
    )


def test_focal_loss_down_weights_easy_samples():
    easy = torch.tensor([[10.0, 0.0]])
    target = torch.tensor([0])
    assert FocalLoss(2.0)(easy, target) < F.cross_entropy(easy, target) * 1e-3


def test_segmentation_criterion_adds_weighted_aux_loss():
    out, aux = torch.randn(2, 7, 4, 4), torch.randn(2, 7, 4, 4)
    target = torch.randint(0, 7, (2, 4, 4))
    criterion = SegmentationCriterion(build_loss("ce"), aux_weight=0.5)
    expected = F.cross_entropy(out, target) + 0.5 * F.cross_entropy(aux, target)
    assert criterion({"out": out, "aux": aux}, target).item() == pytest.approx(expected.item(), rel=1e-6)
    assert criterion({"out": out}, target).item() == pytest.approx(F.cross_entropy(out, target).item(), rel=1e-6)


def test_unknown_loss_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'ce', 'focal'"):
        build_loss("dice")
