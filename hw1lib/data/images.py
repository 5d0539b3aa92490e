"""Reading image files: the one decoder every loader, the grader and the metric use, and folder listing.

Any image Pillow can convert to RGB is accepted (RGB, RGBA, L, LA, P, CMYK, I;16, ...): the homework's
files are RGB, but a user's test folder may hold a CMYK JPEG or a 16-bit PNG, and refusing those would
fail a grading run for no reason. Extensions are matched case-insensitively (``.PNG``, ``.JPG``).
Errors name the file and say what was expected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


def list_images(folder: str | Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Files of ``folder`` whose extension is one of ``suffixes`` (any case), sorted by name.

    Raises:
        FileNotFoundError: the folder is missing, not a folder, or holds no such file (each said as such).
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; expected a folder of {'/'.join(suffixes)} images")
    wanted = {s.lower() for s in suffixes}
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in wanted and p.is_file())
    if not files:
        raise FileNotFoundError(f"no {' or '.join('*' + s for s in suffixes)} images in {folder}")
    return files


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any mode to 8-bit RGB; 16/32-bit grey (I;16, I) is scaled to 0..255 first (Pillow clips it)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        image = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return image.convert("RGB")


def read_rgb(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode one image to (H, W, 3) uint8 RGB.

    Args:
        path: the image file.
        size: ``(height, width)`` it must have, or ``None`` for any.

    Raises:
        ValueError: unreadable, truncated or not an image, or of the wrong size (names the file).
    """
    try:
        with Image.open(path) as image:
            image.load()  # decodes fully: a truncated file fails here, not later
            array = np.array(_to_rgb(image))  # a writable copy: torch refuses read-only buffers
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot be read as an image ({error})") from error
    if size is not None and array.shape[:2] != tuple(size):
        raise ValueError(f"{path}: image is {array.shape[1]}x{array.shape[0]}, expected {size[1]}x{size[0]}")
    return array
