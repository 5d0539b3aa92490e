"""Batch augmentation that runs on the training device (CPU or GPU), not per item in Python.

Random numbers are drawn on the CPU from a seeded ``torch.Generator`` and then moved to the batch's
device, so the same seed gives the same augmentation on any device, and an epoch's augmentation does not
depend on what ran before it (the engine seeds one generator per epoch; this is what makes resuming an
interrupted run exact).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_crop_flip(
    images: torch.Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True
) -> torch.Tensor:
    """Random crop with zero padding plus horizontal flip, per sample, for a (N, C, H, W) batch.

    The classic CIFAR recipe: pad by ``padding``, take a random H x W window, flip half the images.
    Implemented with one gather over per-sample row/column indices, so it costs one pass over the batch.
    """
    n, _, h, w = images.shape
    device = images.device
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(device)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(device)
        rows = (dy[:, None] + torch.arange(h, device=device))[:, None, :, None]  # (N, 1, H, 1)
        cols = (dx[:, None] + torch.arange(w, device=device))[:, None, None, :]  # (N, 1, 1, W)
        batch = torch.arange(n, device=device)[:, None, None, None]
        channel = torch.arange(images.shape[1], device=device)[None, :, None, None]
        images = padded[batch, channel, rows, cols]
    if flip:
        flips = (torch.rand(n, generator=generator) < 0.5).to(device)
        images = torch.where(flips[:, None, None, None], images.flip(-1), images)
    return images


def _dihedral_matrices(n: int, generator: torch.Generator) -> torch.Tensor:
    """(N, 2, 2) random elements of the dihedral group D4: a 90-degree rotation times an optional flip."""
    k = torch.randint(0, 4, (n,), generator=generator)
    angle = k.double() * (math.pi / 2)
    cos, sin = torch.cos(angle).round(), torch.sin(angle).round()
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0).double()
    mirror = torch.diag_embed(torch.stack([flip, torch.ones(n, dtype=torch.double)], -1))
    return rot @ mirror


def random_dihedral_crop_scale(
    images: torch.Tensor,
    masks: torch.Tensor,
    generator: torch.Generator,
    out_size: int | None = None,
    scale: tuple[float, float] = (0.5, 1.0),
    dihedral: bool = True,
    image_mode: str = "bilinear",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply one random geometric transform per sample, identically to images and masks.

    The transform is a dihedral element (flips and 90-degree rotations, exact on square images) composed
    with a random crop covering ``scale`` of the side, resampled to ``out_size``. Everything becomes one
    affine grid per sample and a single ``grid_sample`` for the images (bilinear) and one for the masks
    (nearest), so image and mask see exactly the same geometry.

    Args:
        images: float (N, C, H, W).
        masks: integer class maps (N, H, W).
        generator: CPU generator that decides every random choice.
        out_size: output side; defaults to the input's height.
        scale: range of the crop side as a fraction of the image side (1.0 = no crop).
        dihedral: whether to apply the random flips/rotations.
        image_mode: interpolation of the images (tests use ``"nearest"`` to compare with masks exactly).
    """
    n, _, h, w = images.shape
    out_size = out_size or h
    matrix = _dihedral_matrices(n, generator) if dihedral else torch.eye(2, dtype=torch.double).expand(n, 2, 2)
    side = torch.empty(n, dtype=torch.double).uniform_(scale[0], scale[1], generator=generator)
    # the crop's centre may move so that the crop stays inside the image: |centre| <= 1 - side
    centre = (torch.rand(n, 2, generator=generator, dtype=torch.double) * 2 - 1) * (1 - side)[:, None]
    theta = torch.cat([matrix * side[:, None, None], centre[:, :, None]], dim=2).to(images.device, torch.float32)
    grid = F.affine_grid(theta, [n, 1, out_size, out_size], align_corners=False)
    out_images = F.grid_sample(
        images, grid.to(images.dtype), mode=image_mode, padding_mode="reflection", align_corners=False
    )
    out_masks = F.grid_sample(masks[:, None].float(), grid, mode="nearest", padding_mode="border", align_corners=False)
    return out_images, out_masks[:, 0].to(masks.dtype)
