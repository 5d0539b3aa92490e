"""Batch augmentation that runs on the training device (CPU or GPU), not per item in Python.

Random numbers are drawn on the CPU from a seeded ``torch.Generator``, so the same seed gives the same
augmentation on any device, and an epoch's augmentation does not depend on what ran before it (the engine
seeds one generator per epoch; this is what makes resuming an interrupted run exact).

Each augmentation is two functions: ``*_params(n, generator)`` draws a batch's random values (small CPU
tensors), ``apply_*(images, params)`` applies them on the images' device. Why split: the engine draws every
batch's values once per epoch and copies them to the GPU in one non-blocking transfer, so a training step
never waits on a host-to-device copy (``random_crop_flip`` and ``random_dihedral_crop_scale`` do both, for
one batch).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def crop_flip_params(n: int, generator: torch.Generator, padding: int = 4, flip: bool = True) -> dict:
    """The random values of :func:`apply_crop_flip` for ``n`` samples: offsets ``dy``, ``dx`` and ``flips``."""
    params = {}
    if padding > 0:
        params["dy"] = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        params["dx"] = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    if flip:
        params["flips"] = torch.rand(n, generator=generator) < 0.5
    return params


def apply_crop_flip(images: torch.Tensor, params: dict, padding: int = 4) -> torch.Tensor:
    """Random crop with zero padding plus horizontal flip, per sample, for a (N, C, H, W) batch.

    The classic CIFAR recipe: pad by ``padding``, take a random H x W window, flip half the images.
    Implemented with one gather over per-sample row/column indices, so it costs one pass over the batch.
    ``params`` (from :func:`crop_flip_params`) must be on the images' device: nothing here copies from the host.
    """
    n, _, h, w = images.shape
    device = images.device
    if "dy" in params:
        padded = F.pad(images, (padding, padding, padding, padding))
        rows = (params["dy"][:, None] + torch.arange(h, device=device))[:, None, :, None]  # (N, 1, H, 1)
        cols = (params["dx"][:, None] + torch.arange(w, device=device))[:, None, None, :]  # (N, 1, 1, W)
        batch = torch.arange(n, device=device)[:, None, None, None]
        channel = torch.arange(images.shape[1], device=device)[None, :, None, None]
        images = padded[batch, channel, rows, cols]
    if "flips" in params:
        images = torch.where(params["flips"][:, None, None, None], images.flip(-1), images)
    return images


def random_crop_flip(
    images: torch.Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True
) -> torch.Tensor:
    """:func:`apply_crop_flip` with values drawn from ``generator`` for this one batch."""
    params = {k: v.to(images.device) for k, v in crop_flip_params(len(images), generator, padding, flip).items()}
    return apply_crop_flip(images, params, padding)


def _dihedral_matrices(n: int, generator: torch.Generator) -> torch.Tensor:
    """(N, 2, 2) random elements of the dihedral group D4: a 90-degree rotation times an optional flip."""
    k = torch.randint(0, 4, (n,), generator=generator)
    angle = k.double() * (math.pi / 2)
    cos, sin = torch.cos(angle).round(), torch.sin(angle).round()
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0).double()
    mirror = torch.diag_embed(torch.stack([flip, torch.ones(n, dtype=torch.double)], -1))
    return rot @ mirror


def dihedral_crop_scale_params(
    n: int, generator: torch.Generator, scale: tuple[float, float] = (0.5, 1.0), dihedral: bool = True
) -> dict:
    """The random transform of each of ``n`` samples as an affine matrix ``theta`` (N, 2, 3), float32.

    The transform is a dihedral element (flips and 90-degree rotations, exact on square images) composed
    with a random crop covering ``scale`` of the side; computed in float64 on the CPU, then rounded once.
    """
    matrix = _dihedral_matrices(n, generator) if dihedral else torch.eye(2, dtype=torch.double).expand(n, 2, 2)
    side = torch.empty(n, dtype=torch.double).uniform_(scale[0], scale[1], generator=generator)
    # the crop's centre may move so that the crop stays inside the image: |centre| <= 1 - side
    centre = (torch.rand(n, 2, generator=generator, dtype=torch.double) * 2 - 1) * (1 - side)[:, None]
    theta = torch.cat([matrix * side[:, None, None], centre[:, :, None]], dim=2)
    return {"theta": theta.to(torch.float32)}


def apply_dihedral_crop_scale(
    images: torch.Tensor,
    masks: torch.Tensor,
    params: dict,
    out_size: int | None = None,
    image_mode: str = "bilinear",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply each sample's transform ``params["theta"]`` (on the images' device) to images and masks alike.

    Everything is one affine grid per sample and a single ``grid_sample`` for the images (bilinear) and one for
    the masks (nearest), so image and mask see exactly the same geometry.
    """
    n = len(images)
    out_size = out_size or images.shape[-2]
    grid = F.affine_grid(params["theta"], [n, 1, out_size, out_size], align_corners=False)
    out_images = F.grid_sample(
        images, grid.to(images.dtype), mode=image_mode, padding_mode="reflection", align_corners=False
    )
    out_masks = F.grid_sample(masks[:, None].float(), grid, mode="nearest", padding_mode="border", align_corners=False)
    return out_images, out_masks[:, 0].to(masks.dtype)


def random_dihedral_crop_scale(
    images: torch.Tensor,
    masks: torch.Tensor,
    generator: torch.Generator,
    *,
    out_size: int | None = None,
    scale: tuple[float, float] = (0.5, 1.0),
    dihedral: bool = True,
    image_mode: str = "bilinear",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply one random geometric transform per sample, identically to images and masks (one batch's draw).

    Args:
        images: float (N, C, H, W).
        masks: integer class maps (N, H, W).
        generator: CPU generator that decides every random choice.
        out_size: output side; defaults to the input's height.
        scale: range of the crop side as a fraction of the image side (1.0 = no crop).
        dihedral: whether to apply the random flips/rotations.
        image_mode: interpolation of the images (tests use ``"nearest"`` to compare with masks exactly).
    """
    params = dihedral_crop_scale_params(len(images), generator, scale, dihedral)
    params = {k: v.to(images.device) for k, v in params.items()}
    return apply_dihedral_crop_scale(images, masks, params, out_size, image_mode)
