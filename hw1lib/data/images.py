"""Reading image files: the one decoder every loader, the grader and the metric use, and folder listing.

Any image Pillow can convert to RGB is accepted (RGB, RGBA, L, LA, P, CMYK, I;16, ...): the homework's
files are RGB, but a user's test folder may hold a CMYK JPEG or a 16-bit PNG, and refusing those would
fail a grading run for no reason. Extensions are matched case-insensitively (``.PNG``, ``.JPG``).
Errors name the file and say what was expected.

Size limit: an image above :data:`MAX_PIXELS` pixels is refused from its header, before anything is decoded
(Pillow reads the header lazily), and so is an image of the wrong size where a size is required: a 20000x20000
PNG (a "decompression bomb", or a wrong file) never costs the gigabytes its pixels would.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

#: the largest image read (width x height): 6000x6000. Real satellite tiles are 2448x2448 (6 Mpx); at the limit,
#: the decoded image takes 108 MB and tiled segmentation's per-class scores 1 GB (7 classes, float32)
MAX_PIXELS = 36_000_000

# Pillow warns from 89 Mpx on: this module's own, lower limit refuses those images with one line instead
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


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
    check_unique(files, lambda p: p.stem.lower(), folder)
    return files


def check_unique(files: list[Path], key, folder: Path) -> None:
    """Refuse files whose names clash once the extension (or its case) is set aside.

    Why: ``0001.jpg``, ``0001.jpeg`` and ``0001.JPG`` would all be written as ``0001.png`` (one mask for three
    images), and a loader keyed by lower-case names would keep one of ``0001_sat.jpg``/``0001_sat.JPG`` silently.

    Args:
        files: the files found.
        key: what must be unique, e.g. the lower-case stem.
        folder: the folder, for the message.

    Raises:
        ValueError: naming the first clashing group (and how many groups clash).
    """
    groups: dict[str, list[str]] = {}
    for path in files:
        groups.setdefault(key(path), []).append(path.name)
    clashes = [sorted(names) for names in groups.values() if len(names) > 1]
    if clashes:
        more = f" (and {len(clashes) - 1} more such groups)" if len(clashes) > 1 else ""
        raise ValueError(
            f"clashing file names in {folder}: {', '.join(clashes[0])}{more} differ only in the extension or its "
            "case; expected one file per name: rename or remove the extra ones"
        )


def open_checked(image: Image.Image, path: str | Path, size: tuple[int, int] | None = None) -> None:
    """Refuse an opened (not yet decoded) image that is too large or not of ``size`` = (height, width)."""
    width, height = image.size
    if size is not None and (height, width) != tuple(size):
        raise ValueError(f"{path}: image is {width}x{height}, expected {size[1]}x{size[0]}")
    if width * height > MAX_PIXELS:
        raise ValueError(
            f"{path}: image is {width}x{height} ({width * height / 1e6:.0f} Mpx), above the limit of "
            f"{MAX_PIXELS / 1e6:.0f} Mpx (hw1lib.data.images.MAX_PIXELS); expected a smaller image"
        )


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
        with Image.open(path) as image:  # reads the header only
            open_checked(image, path, size)  # before decoding: a huge image costs nothing here
            image.load()  # decodes fully: a truncated file fails here, not later
            array = np.array(_to_rgb(image))  # a writable copy: torch refuses read-only buffers
    except Image.DecompressionBombError as error:  # above twice Pillow's own limit: refused by Image.open
        raise ValueError(
            f"{path}: image is too large ({error}); the limit is {MAX_PIXELS / 1e6:.0f} Mpx, expected a smaller image"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot be read as an image ({error})") from error
    if size is not None and array.shape[:2] != tuple(size):  # a format whose decoded size differs from its header
        raise ValueError(f"{path}: image is {array.shape[1]}x{array.shape[0]}, expected {size[1]}x{size[0]}")
    return array


def check_header(path: str | Path, size: tuple[int, int] | None = None) -> None:
    """Refuse, from its header alone, an image that is unreadable, too large or not of ``size``: lets a command
    check every input in milliseconds before it loads a model or decodes anything."""
    try:
        with Image.open(path) as image:
            open_checked(image, path, size)
    except Image.DecompressionBombError as error:
        raise ValueError(
            f"{path}: image is too large ({error}); the limit is {MAX_PIXELS / 1e6:.0f} Mpx, expected a smaller image"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot be read as an image ({error})") from error


def image_mode(path: str | Path) -> str:
    """The Pillow mode of an image file from its header (nothing decoded): ``RGB``, ``L``, ``P``, ``I;16`` ...

    Raises:
        ValueError: not readable as an image (names the file).
    """
    try:
        with Image.open(path) as image:
            return image.mode
    except Image.DecompressionBombError as error:
        raise ValueError(f"{path}: image is too large ({error})") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot be read as an image ({error})") from error
