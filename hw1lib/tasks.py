"""What differs between the two problems, in one small object each: loss, augmentation, prediction, metric.

The engine (:mod:`hw1lib.engine`) is written once against this interface; a classifier returns logits
(N, C), a segmenter returns ``{"out": logits (N, C, H, W), "aux": ...}``. Augmentation is split in two:
``augment_params(n, generator)`` draws a batch's random values on the CPU (the engine draws a whole epoch's
and copies them to the device at once), ``apply_augment(x, y, params)`` applies them on the device.
"""

from __future__ import annotations

from typing import Protocol

import torch

from hw1lib.data.augment import (
    apply_crop_flip,
    apply_dihedral_crop_scale,
    crop_flip_params,
    dihedral_crop_scale_params,
)
from hw1lib.data.palette import SCORED_CLASSES
from hw1lib.losses import SegmentationCriterion, build_loss
from hw1lib.metrics import ConfusionMatrix


class Task(Protocol):
    """What the engine, the benchmarks and the memory estimate call on a problem's task; a new problem's task
    provides these (the two below are its implementations)."""

    name: str  # "classification", "segmentation": the config's ``task``
    metric: str  # the key of the model-selection metric in ``summarize``'s result ("acc", "miou")

    def augment_params(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The random values of one batch of ``n``, drawn from ``generator`` on the CPU (empty without augmentation)."""
        ...

    def apply_augment(
        self, images: torch.Tensor, targets: torch.Tensor, params: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, targets)`` augmented with ``params`` (:meth:`augment_params`'s, on their device)."""
        ...

    def augment(
        self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw and apply one batch's augmentation at once."""
        ...

    def loss(self, outputs, targets: torch.Tensor) -> torch.Tensor:
        """The training (and validation) loss of the model's ``outputs``, a 0-d tensor."""
        ...

    def predict(self, outputs) -> torch.Tensor:
        """Predicted classes of the model's ``outputs`` (labels (N,) or class maps (N, H, W))."""
        ...

    def summarize(self, matrix: ConfusionMatrix) -> dict:
        """The metrics of a confusion matrix; holds at least :attr:`metric`."""
        ...


def _checked_augment(augment: dict | None, valid: set[str]) -> dict:
    """The augmentation arguments of a recipe, refusing a name the task's augmentation does not take."""
    unknown = sorted(set(augment or {}) - valid)
    if unknown:
        raise ValueError(f"unknown augmentation argument(s) {unknown}; valid: {sorted(valid)}")
    return dict(augment or {})


class _Task:
    """What both tasks share: augmenting one batch from a generator."""

    criterion: torch.nn.Module

    def augment(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
        """Augment one batch with values drawn from ``generator`` now (the benchmark's per-batch data path)."""
        params = {k: v.to(images.device) for k, v in self.augment_params(len(images), generator).items()}
        return self.apply_augment(images, targets, params)


class ClassificationTask(_Task):
    """Problem 1: cross-entropy/focal on logits, crop+flip augmentation, accuracy."""

    name = "classification"
    metric = "acc"

    def __init__(
        self,
        loss: str = "ce",
        focal_gamma: float = 2.0,
        label_smoothing: float = 0.0,
        augment: dict | None = None,
    ) -> None:
        self.criterion = build_loss(loss, focal_gamma, label_smoothing)
        self.augment_args = _checked_augment(augment, {"padding", "flip"})

    def augment_params(self, n: int, generator: torch.Generator) -> dict:
        """The random values of one batch of ``n`` (CPU tensors; empty without augmentation)."""
        return crop_flip_params(n, generator, **self.augment_args) if self.augment_args else {}

    def apply_augment(self, images: torch.Tensor, targets: torch.Tensor, params: dict):
        if not params:
            return images, targets
        return apply_crop_flip(images, params, self.augment_args.get("padding", 4)), targets

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.criterion(outputs.float(), targets)

    @staticmethod
    def predict(outputs: torch.Tensor) -> torch.Tensor:
        return outputs.argmax(1)

    @staticmethod
    def summarize(matrix: ConfusionMatrix) -> dict:
        return {"acc": matrix.accuracy()}


class SegmentationTask(_Task):
    """Problem 2: loss on ``out`` (+ weighted ``aux``), dihedral crop/scale augmentation, official mIoU."""

    name = "segmentation"
    metric = "miou"

    def __init__(
        self,
        loss: str = "ce",
        focal_gamma: float = 2.0,
        label_smoothing: float = 0.0,
        aux_weight: float = 0.4,
        augment: dict | None = None,
    ) -> None:
        self.criterion = SegmentationCriterion(build_loss(loss, focal_gamma, label_smoothing), aux_weight)
        self.augment_args = _checked_augment(augment, {"out_size", "scale", "dihedral", "image_mode"})

    def augment_params(self, n: int, generator: torch.Generator) -> dict:
        """The random values of one batch of ``n`` (CPU tensors; empty without augmentation)."""
        if not self.augment_args:
            return {}
        draw = {k: v for k, v in self.augment_args.items() if k in ("scale", "dihedral")}
        return dihedral_crop_scale_params(n, generator, **draw)

    def apply_augment(self, images: torch.Tensor, targets: torch.Tensor, params: dict):
        if not params:
            return images, targets
        apply = {k: v for k, v in self.augment_args.items() if k in ("out_size", "image_mode")}
        return apply_dihedral_crop_scale(images, targets, params, **apply)

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


def build_task(config) -> Task:
    """The task object of a ``TrainConfig``, given only the fields it uses; an unknown task lists the valid ones."""
    if config.task not in TASKS:
        raise ValueError(f"unknown task {config.task!r}; valid: {sorted(TASKS)}")
    fields = {
        "loss": config.loss,
        "focal_gamma": config.focal_gamma,
        "label_smoothing": config.label_smoothing,
        "augment": config.augment,
    }
    if config.task == "segmentation":
        fields["aux_weight"] = config.aux_weight
    return TASKS[config.task](**fields)
