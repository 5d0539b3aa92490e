"""Cache decoded arrays on disk, keyed by the files they came from.

Decoding 22,500 PNGs or 2,000 JPEG/PNG pairs is the slow part of loading; the arrays it yields are
plain uint8 blocks that ``np.load`` reads back in a fraction of a second. The key hashes every source
file's name, size and modification time (plus a format version and the loader's options), so any
change to the folder (a file added, removed or rewritten) decodes again. Entries are written to a
temporary folder and renamed into place, so an interrupted run never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from hw1lib.io import umask

CACHE_VERSION = 1


def files_key(files: Sequence[Path], **options: object) -> str:
    """A short hash of the files' names, sizes and mtimes, and of the loader options."""
    digest = hashlib.sha1(f"v{CACHE_VERSION}|{json.dumps(options, sort_keys=True)}".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def cached_arrays(
    cache_root: Path | None,
    key: str,
    decode: Callable[[], dict[str, np.ndarray]],
) -> tuple[dict[str, np.ndarray], bool]:
    """Return the arrays for ``key`` from the cache, or decode them and store them there.

    Args:
        cache_root: the cache folder; ``None`` disables caching.
        key: the entry's name (see :func:`files_key`).
        decode: builds the arrays when the entry is missing.

    Returns:
        ``(arrays, hit)`` where ``hit`` says whether the cache answered (nothing was decoded).
    """
    if cache_root is None:
        return decode(), False
    entry = cache_root / key
    if (entry / "done").exists():
        names = json.loads((entry / "done").read_text())
        return {name: np.load(entry / f"{name}.npy") for name in names}, True
    arrays = decode()
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_root))
    os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes 0700; the entry is renamed into place, so give it mkdir's mode
    try:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array, allow_pickle=False)
        (tmp / "done").write_text(json.dumps(sorted(arrays)))
        os.replace(tmp, entry)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race, or the disk is full
        if not (entry / "done").exists():
            raise
    return arrays, False
