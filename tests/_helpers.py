"""Helpers shared by test modules: pretrained-weight files planted where torchvision's weights API reads them, and
the random images the bad-input catalogues write.

Why planted files: no test touches the network, yet the builders of the ``full`` profile load real torchvision
checkpoints. A planted file has exactly the keys and shapes torchvision publishes, under the exact cache path
(:func:`hw1lib.models.weights.expected_cache_path`, under the ``TORCH_HOME`` a test sets).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hw1lib.models.weights import expected_cache_path, required_weights  # imports hw1lib first: see _compat.py


def plant(weights, builder, **kwargs) -> dict[str, torch.Tensor]:
    """Write a small checkpoint for ``weights`` at the exact cache path torchvision reads, and return it.

    The keys and shapes come from the torchvision model built on the meta device (no memory, no init);
    each tensor is one random row broadcast to its shape (stride 0), so the file stays a few MB even for
    VGG16 while every row still differs along its last axis, which is what a reshape check needs. Not for
    training: batch-norm variances drawn this way can be negative.
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


def _builder_of(weights):
    """The torchvision builder whose weights enum ``weights`` belongs to, and the arguments that make its
    state dict match the published file (its class count; the auxiliary head of segmentation checkpoints)."""
    import torchvision

    name = next(n for n in torchvision.models.list_models() if torchvision.models.get_model_weights(n) is type(weights))
    builder = torchvision.models.get_model_builder(name)
    kwargs: dict = {"num_classes": len(weights.meta["categories"])}
    if "aux_loss" in inspect.signature(builder).parameters:  # torchvision builds these with the aux head
        kwargs.update(aux_loss=True, weights_backbone=None)
    return builder, kwargs


def plant_initialised(weights) -> Path:
    """Write the state dict of the torchvision model of ``weights`` as built with ``weights=None`` (its own
    random initialisation, nothing perturbed) under the file name torchvision expects; return the path.

    Unlike :func:`plant`, a model loaded from it trains sanely (positive BN variances, the builder's init).
    """
    builder, kwargs = _builder_of(weights)
    torch.manual_seed(0)
    state = builder(weights=None, **kwargs).state_dict()
    path = expected_cache_path(weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def plant_profile_weights(profile: str) -> list[Path]:
    """Plant (:func:`plant_initialised`) every torchvision file the experiments of ``profile`` need."""
    import torchvision

    paths = []
    for row in required_weights(profile):
        if row["url"]:
            paths.append(plant_initialised(torchvision.models.get_weight(row["weights"])))
    return paths


#: the random pixels of the images the bad-input catalogues write
RNG = np.random.default_rng(0)


def save_image(path: Path, size=(32, 32), mode="RGB", fmt=None) -> Path:
    """A random image at ``path`` in ``mode`` (``I;16`` too) and format ``fmt`` (default: from the suffix)."""
    image = Image.fromarray(RNG.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 257)
    elif mode != "RGB":
        image = image.convert(mode)
    image.save(path, format=fmt)
    return path
