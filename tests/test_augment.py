"""On-device batch augmentation: shapes, determinism under a seed, image/mask alignment."""

from __future__ import annotations

import torch

from hw1lib.data.augment import random_crop_flip, random_dihedral_crop_scale


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_crop_flip_keeps_shape_and_is_deterministic():
    x = torch.rand(16, 3, 32, 32)
    a, b = random_crop_flip(x, gen(1)), random_crop_flip(x, gen(1))
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, random_crop_flip(x, gen(2)))


def test_crop_is_a_shifted_window_of_the_padded_image():
    x = torch.arange(1, 1 + 8 * 8, dtype=torch.float32).reshape(1, 1, 8, 8).repeat(32, 1, 1, 1)
    out = random_crop_flip(x, gen(3), padding=2, flip=False)
    for sample in out:
        values = sample[0]
        inside = values[values > 0]
        # the non-padding part is a contiguous block of the original: consecutive along rows
        rows = values[(values > 0).any(1)]
        assert inside.numel() >= 6 * 6
        assert torch.all(torch.diff(rows[:, (rows > 0).all(0)], dim=1) == 1)


def test_dihedral_crop_scale_keeps_image_and_mask_aligned():
    masks = torch.randint(0, 7, (12, 32, 32), generator=gen(0))
    images = masks[:, None].float().repeat(1, 3, 1, 1)  # the image encodes its own mask
    out_images, out_masks = random_dihedral_crop_scale(images, masks, gen(5), out_size=24, image_mode="nearest")
    assert out_images.shape == (12, 3, 24, 24) and out_masks.shape == (12, 24, 24) and out_masks.dtype == masks.dtype
    assert torch.equal(out_images[:, 0], out_masks.float())


def test_pure_dihedral_is_exact_with_bilinear_images():
    masks = torch.randint(0, 7, (16, 20, 20), generator=gen(0))
    images = masks[:, None].float().repeat(1, 3, 1, 1)
    out_images, out_masks = random_dihedral_crop_scale(images, masks, gen(7), scale=(1.0, 1.0))
    assert torch.allclose(out_images[:, 0], out_masks.float(), atol=1e-4)
    d4 = [masks[0].rot90(k, (0, 1)) for k in range(4)] + [masks[0].flip(1).rot90(k, (0, 1)) for k in range(4)]
    assert any(torch.equal(out_masks[0], m) for m in d4)  # one of the eight symmetries, exactly


def test_segmentation_augmentation_is_deterministic():
    masks = torch.randint(0, 7, (4, 16, 16), generator=gen(0))
    images = torch.rand(4, 3, 16, 16, generator=gen(1))
    a = random_dihedral_crop_scale(images, masks, gen(9))
    b = random_dihedral_crop_scale(images, masks, gen(9))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
