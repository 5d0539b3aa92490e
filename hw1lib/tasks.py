"""What differs between the two problems, in one small object each: loss, augmentation, prediction, metric.

The engine (:mod:`hw1lib.engine`) is written once against this interface; a classifier returns logits
(N, C), a segmenter returns ``{"out": logits (N, C, H, W), "aux": ...}``.
"""

from __future__ import annotations

import torch

from hw1lib.data.augment import random_crop_flip, random_dihedral_crop_scale
from hw1lib.data.palette import SCORED_CLASSES
from hw1lib.losses import SegmentationCriterion, build_loss
from hw1lib.metrics import ConfusionMatrix


class ClassificationTask:
    """Problem 1: cross-entropy/focal on logits, crop+flip augmentation, accuracy."""

    name = "classification"
    metric = "acc"

    def __init__(
        self,
        loss: str = "ce",
        focal_gamma: float = 2.0,
        label_smoothing: float = 0.0,
        class_weights: list[float] | None = None,
        augment: dict | None = None,
    ) -> None:
        self.criterion = build_loss(loss, focal_gamma, class_weights, label_smoothing)
        self.augment_args = dict(augment or {})

    def augment(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        if not self.augment_args:
            return images, targets
        return random_crop_flip(images, generator, **self.augment_args), targets

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.criterion(outputs.float(), targets)

    @staticmethod
    def predict(outputs: torch.Tensor) -> torch.Tensor:
        return outputs.argmax(1)

    @staticmethod
    def summarize(matrix: ConfusionMatrix) -> dict:
        return {"acc": matrix.accuracy()}


class SegmentationTask:
    """Problem 2: loss on ``out`` (+ weighted ``aux``), dihedral crop/scale augmentation, official mIoU."""

    name = "segmentation"
    metric = "miou"

    def __init__(
        self,
        loss: str = "ce",
        focal_gamma: float = 2.0,
        label_smoothing: float = 0.0,
        class_weights: list[float] | None = None,
        aux_weight: float = 0.4,
        augment: dict | None = None,
    ) -> None:
        self.criterion = SegmentationCriterion(
            build_loss(loss, focal_gamma, class_weights, label_smoothing), aux_weight
        )
        self.augment_args = dict(augment or {})

    def augment(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        if not self.augment_args:
            return images, targets
        return random_dihedral_crop_scale(images, targets, generator, **self.augment_args)

    def loss(self, outputs: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        return self.criterion({k: v.float() for k, v in outputs.items()}, targets.long())

    @staticmethod
    def predict(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return outputs["out"].argmax(1)

    @staticmethod
    def summarize(matrix: ConfusionMatrix) -> dict:
        result = matrix.miou(SCORED_CLASSES)
        return {
            "miou": result["miou"],
            "acc": matrix.accuracy(),
            "iou": {str(k): v for k, v in result["iou"].items()},
            "absent_classes": result["absent_classes"],
        }


TASKS = {"classification": ClassificationTask, "segmentation": SegmentationTask}


def build_task(config):
    """The task object of a ``TrainConfig``, given only the fields it uses; an unknown task lists the valid ones."""
    if config.task not in TASKS:
        raise ValueError(f"unknown task {config.task!r}; valid: {sorted(TASKS)}")
    fields = {
        "loss": config.loss,
        "focal_gamma": config.focal_gamma,
        "label_smoothing": config.label_smoothing,
        "class_weights": config.class_weights,
        "augment": config.augment,
    }
    if config.task == "segmentation":
        fields["aux_weight"] = config.aux_weight
    return TASKS[config.task](**fields)
