"""Problem 1 data: scan, validate and decode the 32x32 classification folders into tensors.

A labelled folder (``train_50``, ``val_50``) holds ``{label}_{id}.png``; an unlabelled (test) folder
holds ``xxxx.png``. Every image is decoded once into one uint8 tensor (N, 3, 32, 32) that the training
engine indexes on the device; the decoded arrays are cached on disk (see :mod:`hw1lib.data.cache`).

Choice for wrong-sized images: they are an error, not resized. The real data is 32x32 throughout, so a
different size means the wrong folder or a damaged file, and silently resizing would hide that.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hw1lib.data.cache import cached_arrays, files_key
from hw1lib.data.images import list_images, read_rgb
from hw1lib.paths import cache_dir

NUM_CLASSES = 50
IMAGE_SIZE = 32
_LABELLED = re.compile(r"^(\d+)_(\d+)\.png$", re.IGNORECASE)


@dataclass
class ClassificationSet:
    """A decoded classification folder.

    Attributes:
        images: uint8 (N, 3, 32, 32).
        labels: int64 (N,), or ``None`` for an unlabelled folder.
        names: file basenames, in the order of ``images``.
        folder: where the files came from.
        key: the cache key (a fingerprint of the folder's files).
        from_cache: whether the arrays came from the on-disk cache (nothing was decoded).
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    names: list[str]
    folder: Path
    key: str
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.names)


def parse_label(name: str, num_classes: int = NUM_CLASSES) -> int:
    """Return the label of ``{label}_{id}.png``; raise ``ValueError`` naming the file otherwise."""
    match = _LABELLED.match(name)
    if match is None:
        raise ValueError(f"{name}: expected a file name of the form {{label}}_{{id}}.png, e.g. 7_123.png")
    label = int(match.group(1))
    if not 0 <= label < num_classes:
        raise ValueError(f"{name}: label {label} is out of range 0..{num_classes - 1}")
    return label


def list_pngs(folder: Path) -> list[Path]:
    """All ``*.png`` files in ``folder`` (any case), sorted by name; a clear error if there are none."""
    return list_images(folder, (".png",))


def _decode_all(files: list[Path]) -> np.ndarray:
    """Decode the files into (N, 3, 32, 32) uint8; threads overlap file I/O with PNG decoding."""
    out = np.empty((len(files), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)

    def work(i: int) -> None:
        out[i] = read_rgb(files[i], (IMAGE_SIZE, IMAGE_SIZE)).transpose(2, 0, 1)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(work, range(len(files))))
    return out


def load_classification_folder(
    folder: str | Path, labelled: bool | None = None, cache: Path | None | bool = True
) -> ClassificationSet:
    """Scan, validate and decode a Problem 1 folder.

    Args:
        folder: ``train_50``, ``val_50`` or an unlabelled test folder.
        labelled: whether file names carry labels; ``None`` decides from the first file name (and then
            every name must agree).
        cache: ``True`` for the default cache folder, a path for another, ``False``/``None`` for none.
    """
    files = list_pngs(Path(folder))
    if labelled is None:
        labelled = _LABELLED.match(files[0].name) is not None
    labels = np.array([parse_label(p.name) for p in files], dtype=np.int64) if labelled else None
    root = cache_dir() if cache is True else (cache or None)
    key = files_key(files, kind="p1", size=IMAGE_SIZE)
    arrays, hit = cached_arrays(root, f"p1-{key}", lambda: {"images": _decode_all(files)})
    return ClassificationSet(
        images=torch.from_numpy(arrays["images"]),
        labels=None if labels is None else torch.from_numpy(labels),
        names=[p.name for p in files],
        folder=Path(folder),
        key=key,
        from_cache=hit,
    )
