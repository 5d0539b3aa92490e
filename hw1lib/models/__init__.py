"""The model registry: every model of the report, built by name from one plain dict.

``build_model("vgg_like")`` works like torchvision's ``get_model`` or segmentation_models.pytorch's
``create_model``. All models take float images in [0, 1], shape (N, 3, H, W), and normalise internally.
Classifiers expose ``forward_features`` / ``forward_head(x, pre_logits=False)`` (timm's interface);
segmenters return ``{"out": logits}`` (plus ``"aux"``) at the input resolution. Every built model carries
``weights_source``, a sentence saying where its initial weights came from, for the report.

What this is not: the training engine, or the place weights are found (``weights.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from torch import nn

from hw1lib.models.classifiers import build_efficientnet_lite0, build_efficientnet_v2_s, build_vgg_like
from hw1lib.models.segmenters import build_deeplabv3_lite0, build_deeplabv3_resnet50, build_fcn32s
from hw1lib.models.weights import WeightsUnavailableError

__all__ = ["WeightsUnavailableError", "build_model", "list_models", "model_label", "model_task"]

TASKS: tuple[str, ...] = ("classification", "segmentation")
#: classes of each problem: 50 image classes; 6 land-cover classes + unknown
DEFAULT_NUM_CLASSES: dict[str, int] = {"classification": 50, "segmentation": 7}


class _Entry(NamedTuple):
    task: str
    builder: Callable[..., nn.Module]
    label: str  # the name figures and the report use


_REGISTRY: dict[str, _Entry] = {
    "vgg_like": _Entry("classification", build_vgg_like, "VGG-like CNN"),
    "efficientnet_v2_s": _Entry("classification", build_efficientnet_v2_s, "EfficientNetV2-S"),
    "efficientnet_lite0": _Entry("classification", build_efficientnet_lite0, "EfficientNet-Lite0"),
    "fcn32s": _Entry("segmentation", build_fcn32s, "VGG16-FCN32s"),
    "deeplabv3_resnet50": _Entry("segmentation", build_deeplabv3_resnet50, "DeepLabV3-ResNet50"),
    "deeplabv3_lite0": _Entry("segmentation", build_deeplabv3_lite0, "DeepLabV3-EfficientNet-Lite0"),
}


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown model {name!r}; valid names: {', '.join(sorted(_REGISTRY))}") from None


def list_models(task: str | None = None) -> list[str]:
    """Return the registered model names (sorted), optionally only those of one task.

    Args:
        task: ``"classification"``, ``"segmentation"`` or ``None`` for all.
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    return sorted(name for name, entry in _REGISTRY.items() if task is None or entry.task == task)


def model_label(name: str) -> str:
    """The name figures and the report give a registered model, e.g. ``"DeepLabV3-ResNet50"``."""
    return _entry(name).label


def model_task(name: str) -> str:
    """Return ``"classification"`` or ``"segmentation"`` for a registered model name."""
    return _entry(name).task


def build_model(name: str, num_classes: int | None = None, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build a registered model by name.

    Args:
        name: one of :func:`list_models`.
        num_classes: output classes; ``None`` means the problem's (50 for classifiers, 7 for segmenters).
        pretrained: start from the pretrained weights the model's builder names (see ``weights_source``).
        **kwargs: model options, e.g. ``input_size`` (pretrained classifiers), ``widths``/``hidden``/
            ``dropout`` (``vgg_like``), ``aux_loss``/``pretrained_backbone_only`` (``deeplabv3_resnet50``).

    Raises:
        ValueError: unknown name (the message lists the valid ones).
        WeightsUnavailableError: ``pretrained`` weights are neither cached nor downloadable.
    """
    entry = _entry(name)
    if num_classes is None:
        num_classes = DEFAULT_NUM_CLASSES[entry.task]
    return entry.builder(num_classes=num_classes, pretrained=pretrained, **kwargs)
