"""Cache decoded arrays on disk, keyed by the content of the files they came from.

Decoding 22,500 PNGs or 2,000 JPEG/PNG pairs is the slow part of loading; the arrays it yields are
plain uint8 blocks that ``np.load`` reads back in a fraction of a second. The key hashes every source
file's name and bytes (BLAKE2b; plus a format version and the loader's options), so any change to the
folder (a file added, removed or rewritten) decodes again, even one that keeps the names, sizes and
modification times (``cp -p``, ``rsync -a``, ``tar x`` of an edited copy). Reading the bytes costs a
fraction of decoding them (benchmarks/RESULTS.md). The same key is the run's data fingerprint (a run
folder's name hashes it), so changed data trains a new run.

Entries are written to a temporary folder and renamed into place, so an interrupted run never leaves a
half-written entry; an entry that cannot be read back (truncated by hand, a disk fault) is named, set aside
and decoded again; a full disk while writing an entry is said in one line naming it, and the loader goes on
without caching.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from hw1lib.files import umask

CACHE_VERSION = 2  # 2: keyed by content (1 was names, sizes and modification times)


def files_key(files: Sequence[Path], **options: object) -> str:
    """A short hash of the files' names and contents (BLAKE2b), and of the loader options.

    One file at a time, in one thread: for the homework's files (3 kB PNGs, 70 kB JPEGs) the cost is opening
    the file, and a thread pool measured twice as slow (benchmarks/RESULTS.md).
    """
    digest = hashlib.blake2b(f"v{CACHE_VERSION}|{json.dumps(options, sort_keys=True)}".encode(), digest_size=16)
    for path in files:
        content = hashlib.blake2b(path.read_bytes(), digest_size=16).digest()
        digest.update(f"{path.name}|".encode() + content + b"\n")
    return digest.hexdigest()[:16]


def _read_entry(entry: Path) -> dict[str, np.ndarray]:
    """The arrays of a complete entry; raises ``ValueError`` naming the file that cannot be read back."""
    current = entry / "done"
    try:
        names = json.loads(current.read_text())
        arrays = {}
        for name in names:
            current = entry / f"{name}.npy"
            arrays[name] = np.load(current, allow_pickle=False)
        return arrays
    except (OSError, ValueError, EOFError) as error:  # a truncated .npy raises ValueError/EOFError, naming nothing
        raise ValueError(f"cache file {current} cannot be read ({type(error).__name__}: {error})") from None


def _disk_full(error: OSError, folder: Path, needed: int) -> bool:
    """Whether a write error means a full disk: ENOSPC/EDQUOT, or a short write (NumPy's ``tofile`` reports
    "N requested and M written" with no errno) where the file system has less room than the entry needs."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    try:
        fs = os.statvfs(folder)
    except OSError:
        return False
    return fs.f_bavail * fs.f_frsize < needed


def _note(text: str) -> None:
    print(f"hw1lib cache: {text}", file=sys.stderr)


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
        try:
            return _read_entry(entry), True
        except ValueError as error:
            _note(f"{error}; decoding again")
            shutil.rmtree(entry, ignore_errors=True)
    arrays = decode()
    tmp = None
    try:
        cache_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_root))
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes 0700; the entry is renamed into place: mkdir's mode
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array, allow_pickle=False)
        (tmp / "done").write_text(json.dumps(sorted(arrays)))
        os.replace(tmp, entry)
    except OSError as error:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if _disk_full(error, cache_root, sum(a.nbytes for a in arrays.values())):  # go on uncached, say why
            _note(f"disk full while writing {entry}; continuing without caching (free space, or set HW1_CACHE)")
        elif not (entry / "done").exists():  # else another process won the race: its entry is as good
            raise
    return arrays, False
