"""Problem 2 data: pair satellite images with masks, decode both once, hold them as uint8 tensors.

A labelled folder (``train``, ``validation``) holds ``{id}_sat.jpg`` + ``{id}_mask.png`` pairs; an
unlabelled (test) folder holds ``{id}.jpg`` (and possibly masks, which are then ignored). Masks are
decoded the official way (:func:`hw1lib.data.palette.decode_mask`). All images of a folder must share
one size, since they are stacked into one tensor: a different size is an error naming the file.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hw1lib.data.cache import cached_arrays, files_key
from hw1lib.data.images import check_unique, read_rgb
from hw1lib.data.palette import decode_mask
from hw1lib.paths import cache_dir


@dataclass
class SegmentationSet:
    """A decoded segmentation folder.

    Attributes:
        images: uint8 (N, 3, H, W).
        masks: uint8 class maps (N, H, W) with values 0..6, or ``None`` for an unlabelled folder.
        ids: the image ids (``0013``), in the order of ``images``.
        image_files: the image files.
        folder: where the files came from.
        key: the cache key (a fingerprint of the folder's files).
        from_cache: whether the arrays came from the on-disk cache (nothing was decoded).
    """

    images: torch.Tensor
    masks: torch.Tensor | None
    ids: list[str]
    image_files: list[Path]
    folder: Path
    key: str
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.ids)


def scan_pairs(folder: Path) -> tuple[list[str], list[Path], list[Path] | None]:
    """Find ``{id}_sat.jpg``/``{id}_mask.png`` pairs, or plain ``{id}.jpg`` test images.

    Returns:
        ``(ids, image_files, mask_files)``; ``mask_files`` is ``None`` for an unlabelled folder.

    Raises:
        FileNotFoundError: no images at all.
        ValueError: a satellite image without its mask or a mask without its image (naming the id).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"image folder {folder} does not exist"
            if not folder.exists()
            else f"{folder} is not a folder; expected a folder of *.jpg images"
        )
    found = [p for p in folder.iterdir() if p.is_file()]
    check_unique(
        [p for p in found if p.name.lower().endswith(("_sat.jpg", "_mask.png"))], lambda p: p.name.lower(), folder
    )
    files = {p.name.lower(): p for p in found}  # extensions in any case (each name once: checked above)
    sats = sorted(n[: -len("_sat.jpg")] for n in files if n.endswith("_sat.jpg"))
    masks = sorted(n[: -len("_mask.png")] for n in files if n.endswith("_mask.png"))
    if sats:
        missing_mask = sorted(set(sats) - set(masks))
        missing_image = sorted(set(masks) - set(sats))
        if missing_mask or missing_image:
            parts = [f"id {i}: {i}_sat.jpg has no {i}_mask.png" for i in missing_mask[:5]]
            parts += [f"id {i}: {i}_mask.png has no {i}_sat.jpg" for i in missing_image[:5]]
            raise ValueError(f"unpaired files in {folder}: " + "; ".join(parts))
        return (
            [files[f"{i}_sat.jpg"].name[: -len("_sat.jpg")] for i in sats],
            [files[f"{i}_sat.jpg"] for i in sats],
            [files[f"{i}_mask.png"] for i in sats],
        )
    plain = sorted((files[n] for n in files if n.endswith((".jpg", ".jpeg"))), key=lambda p: p.name)
    if not plain:
        raise FileNotFoundError(f"no *.jpg images (or {{id}}_sat.jpg/{{id}}_mask.png pairs) in {folder}")
    check_unique(plain, lambda p: p.stem.lower(), folder)  # 0001.jpg and 0001.JPEG: one id for two images
    return [p.stem for p in plain], plain, None


def _decode_all(images: list[Path], masks: list[Path] | None) -> dict[str, np.ndarray]:
    """Decode every image (and mask) into stacked uint8 arrays; threads overlap JPEG/PNG decoding."""
    first = read_rgb(images[0])
    height, width = first.shape[:2]
    out = {"images": np.empty((len(images), 3, height, width), dtype=np.uint8)}
    if masks is not None:
        out["masks"] = np.empty((len(images), height, width), dtype=np.uint8)

    def work(i: int) -> None:
        out["images"][i] = read_rgb(images[i], (height, width)).transpose(2, 0, 1)
        if masks is not None:
            out["masks"][i] = decode_mask(read_rgb(masks[i], (height, width)))

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(work, range(len(images))))
    return out


def load_segmentation_folder(folder: str | Path, cache: Path | None | bool = True) -> SegmentationSet:
    """Scan, pair, validate and decode a Problem 2 folder (labelled or not).

    Args:
        folder: ``train``, ``validation`` or an unlabelled test folder.
        cache: ``True`` for the default cache folder, a path for another, ``False``/``None`` for none.
    """
    folder = Path(folder)
    ids, image_files, mask_files = scan_pairs(folder)
    root = cache_dir() if cache is True else (cache or None)
    key = files_key(image_files + (mask_files or []), kind="p2", labelled=mask_files is not None)
    arrays, hit = cached_arrays(root, f"p2-{key}", lambda: _decode_all(image_files, mask_files))
    return SegmentationSet(
        images=torch.from_numpy(arrays["images"]),
        masks=torch.from_numpy(arrays["masks"]) if "masks" in arrays else None,
        ids=ids,
        image_files=image_files,
        folder=folder,
        key=key,
        from_cache=hit,
    )
