"""Losses: focal loss (with class weights and label smoothing) and the segmentation criterion.

Focal loss (Lin et al., 2017) scales each sample's cross-entropy by ``(1 - p_t) ** gamma`` so that easy,
confidently right samples count less. At ``gamma = 0`` it is exactly ``F.cross_entropy`` with the same
class weights and label smoothing (tested), including PyTorch's normalisation by the sum of weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """Multi-class focal loss for (N, C) or (N, C, H, W) logits and integer targets.

    Args:
        gamma: focusing parameter; 0 gives cross-entropy.
        weight: optional per-class weights (C,), normalised like ``F.cross_entropy``.
        label_smoothing: as in ``F.cross_entropy``.
    """

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(logits.float(), dim=1)
        log_pt = log_probs.gather(1, target.unsqueeze(1).long()).squeeze(1)
        class_weight = torch.ones(logits.shape[1], device=logits.device) if self.weight is None else self.weight
        sample_weight = class_weight[target.long()]
        nll = -log_pt * sample_weight
        eps = self.label_smoothing
        if eps > 0:  # PyTorch's smoothing term: -sum_c w_c log p_c / C
            smooth = -(log_probs * class_weight.view(1, -1, *([1] * (logits.dim() - 2)))).sum(1) / logits.shape[1]
            nll = (1 - eps) * nll + eps * smooth
        focal = (1 - log_pt.exp()).clamp(min=0) ** self.gamma
        return (focal * nll).sum() / sample_weight.sum()


def build_loss(name: str = "ce", gamma: float = 2.0, label_smoothing: float = 0.0) -> nn.Module:
    """The loss chosen by name: ``"ce"`` (cross-entropy) or ``"focal"``."""
    if name == "ce":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    if name == "focal":
        return FocalLoss(gamma=gamma, label_smoothing=label_smoothing)
    raise ValueError(f"unknown loss {name!r}; valid: 'ce', 'focal'")


class SegmentationCriterion(nn.Module):
    """Loss on ``{"out": logits}`` plus ``aux_weight`` times the loss on ``"aux"`` when the model has one."""

    def __init__(self, loss: nn.Module, aux_weight: float = 0.4) -> None:
        super().__init__()
        self.loss = loss
        self.aux_weight = aux_weight

    def forward(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        total = self.loss(outputs["out"], target)
        if "aux" in outputs and self.aux_weight > 0:
            total = total + self.aux_weight * self.loss(outputs["aux"], target)
        return total
