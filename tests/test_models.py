"""Every registered model: forward and backward on tiny inputs, output shapes, gradients, registry errors."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

import hw1lib
from hw1lib.config import PROFILES, get_config, has_recipe
from hw1lib.experiments import experiment_names
from hw1lib.models import _entry, build_model, list_models, model_task

# read from the registry: a model registered later is tested without an edit here
CLASSIFIERS = list_models("classification")
SEGMENTERS = list_models("segmentation")


def small_size(name: str) -> dict:
    """``{"input_size": 64}`` for a classifier that resizes its input on the device (a pretrained-style one; a
    small working size keeps the test fast), else ``{}``."""
    return {"input_size": 64} if "input_size" in inspect.signature(_entry(name).builder).parameters else {}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_registry_lists_every_model_by_task():
    assert CLASSIFIERS and SEGMENTERS
    assert list_models() == sorted(CLASSIFIERS + SEGMENTERS)
    assert {model_task(name) for name in CLASSIFIERS} == {"classification"}
    assert {model_task(name) for name in SEGMENTERS} == {"segmentation"}


@pytest.mark.parametrize("profile", PROFILES)
def test_every_recipe_names_a_registered_model_of_its_task(profile):
    for experiment in experiment_names():
        if has_recipe(experiment, profile):
            config = get_config(experiment, profile)
            assert config.model in list_models(config.task), (experiment, profile)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as error:
        build_model("resnet9000")
    for name in list_models():
        assert name in str(error.value)
    with pytest.raises(ValueError, match="vgg_like"):
        model_task("resnet9000")
    with pytest.raises(ValueError, match="segmentation"):
        list_models("detection")


def test_vgg_like_has_no_pretrained_weights():
    with pytest.raises(ValueError, match="from-scratch"):
        build_model("vgg_like", pretrained=True)


def _assert_all_trainable_parameters_have_gradients(model: torch.nn.Module) -> None:
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without a gradient: {missing[:5]}"
    bad = [name for name, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad[:5]}"


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_forward_backward(name):
    torch.manual_seed(0)
    small = small_size(name)
    model = build_model(name, num_classes=50, **small)
    assert isinstance(model.weights_source, str) and "random" in model.weights_source
    model.train()
    x = torch.rand(2, 3, 32, 32)
    logits = model(x)
    assert logits.shape == (2, 50)
    F.cross_entropy(logits, torch.tensor([3, 7])).backward()
    _assert_all_trainable_parameters_have_gradients(model)

    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        embedding = model.forward_head(features, pre_logits=True)
        head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]  # the final classifier
        assert embedding.shape == (2, head.in_features) and head.out_features == 50
        # forward is exactly forward_head(forward_features(x)) (eval: no dropout)
        torch.testing.assert_close(model(x), model.forward_head(features))
        if small:  # resized on the device to input_size=64 whatever comes in: stride 32 -> 2x2
            assert features.shape[2:] == (2, 2)
            assert model.forward_features(torch.rand(1, 3, 48, 40)).shape == (1, features.shape[1], 2, 2)


def test_vgg_like_is_configurable():
    model = build_model("vgg_like", num_classes=10, widths=(8, 16), hidden=32, dropout=0.0)
    x = torch.rand(2, 3, 32, 32)
    assert model.forward_features(x).shape == (2, 16, 8, 8)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 32)
    assert model(x).shape == (2, 10)


@pytest.fixture(scope="module", params=SEGMENTERS)
def segmenter(request):
    torch.manual_seed(0)
    return request.param, build_model(request.param)


@pytest.mark.parametrize("size", [(64, 64), (96, 64), (128, 128)])
def test_segmenter_forward_backward(segmenter, size):
    name, model = segmenter
    model.train()
    model.zero_grad(set_to_none=True)
    x = torch.rand(2, 3, *size)
    target = torch.randint(0, 7, (2, *size))
    outputs = model(x)
    assert set(outputs) == ({"out", "aux"} if name.startswith("deeplabv3") else {"out"})
    for logits in outputs.values():
        assert logits.shape == (2, 7, *size)
    # the auxiliary head only learns through its own loss term (torchvision's recipe weights it 0.5)
    loss = sum(F.cross_entropy(logits, target) * (1.0 if key == "out" else 0.5) for key, logits in outputs.items())
    loss.backward()
    _assert_all_trainable_parameters_have_gradients(model)


def test_deeplab_without_aux_head():
    model = build_model("deeplabv3_resnet50", aux_loss=False).eval()
    with torch.no_grad():
        outputs = model(torch.rand(1, 3, 32, 32))
    assert set(outputs) == {"out"}
    assert not any(name.startswith("model.aux_classifier") for name, _ in model.named_parameters())


def test_torchvision_imports_after_hw1lib():
    import torchvision  # must work: hw1lib was imported first

    from hw1lib import _compat

    # the shim is applied exactly when torchvision's compiled ops did not load (a string here, with a
    # CPU torch beside the CUDA torchvision wheel; None where the builds match); models build either way
    assert _compat.SHIM_REASON is None or isinstance(_compat.SHIM_REASON, str)
    assert (_compat.SHIM_REASON is None) == torchvision.extension._has_ops()
    assert hw1lib.__version__


def test_fcn32s_with_batch_norm_variant_for_training_from_scratch():
    model = build_model("fcn32s", batch_norm=True)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert "batch norm" in model.weights_source
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 96))["out"].shape == (1, 7, 64, 96)


def test_fcn32s_at_a_fraction_of_vgg16s_width_keeps_its_layers():
    full, narrow = (
        build_model("fcn32s", batch_norm=True),
        build_model("fcn32s", batch_norm=True, width=0.25, fc_channels=64),
    )
    convs = [m for m in narrow.modules() if isinstance(m, torch.nn.Conv2d)]
    full_convs = [m for m in full.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == len(full_convs) == 13 + 3  # VGG16's 13, fc6, fc7, the score layer
    assert [c.out_channels for c in convs[:13]] == [c.out_channels // 4 for c in full_convs[:13]]
    assert convs[13].in_channels == 128 and convs[13].kernel_size == (7, 7) and convs[14].out_channels == 64
    pools = [m for m in narrow.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 5  # stride 32 stays
    narrow.eval()
    with torch.no_grad():
        assert narrow(torch.rand(1, 3, 64, 96))["out"].shape == (1, 7, 64, 96)
    # initialised as torchvision's VGG is (He normal, zero bias), not PyTorch's default uniform
    assert all(float(c.bias.abs().max()) == 0.0 for c in convs[:13])
    with pytest.raises(ValueError, match="width=0.5 cannot be used with pretrained=True"):
        build_model("fcn32s", pretrained=True, width=0.5)
    with pytest.raises(ValueError, match="width must lie in"):
        build_model("fcn32s", width=0.001)


def test_deeplabv3_lite0_keeps_stride_8_features():
    model = build_model("deeplabv3_lite0").eval()
    body = model.model.backbone.body
    assert body.feature_info.reduction() == [8, 8]  # dilated like torchvision's ResNet50 version
    assert type(model.model.classifier).__name__ == "DeepLabHead"
    assert model.weights_source.startswith("random")
