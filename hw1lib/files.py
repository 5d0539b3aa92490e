"""Writing files safely: atomic replacement, write-through to devices and FIFOs, output-path checks.

Every file the project writes goes through :func:`atomic_write`: the content goes to a temporary name in
the target's folder, is flushed to disk (``fsync``), given the mode a plain ``open`` would give it (the
user's umask, not ``mkstemp``'s 0600), and only then renamed over the target. A reader, or a run after a
crash or a full disk, sees the previous complete file or the new complete file, never a half-written one.
Temporary names start with ``.`` and contain :data:`TMP_MARK`, so :func:`remove_stale_temps` can clear
those a killed process left behind.

What this is not: a serialisation format. It writes what callers hand it (bytes, text, JSON, ``.npz``,
``torch.save``).
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

#: part of every temporary file name written here: ``.<name>.tmp<pid>``
TMP_MARK = ".tmp"


def umask() -> int:
    """The process's umask (read without changing it for longer than two calls)."""
    current = os.umask(0)
    os.umask(current)
    return current


def _fsync_dir(folder: Path) -> None:
    """Persist a rename: the folder entry itself must reach the disk (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


#: names that stand for an already-open descriptor of this process: written through that descriptor
_FD_PATH = re.compile(r"^/(?:dev/(?:stdout|stderr|fd/(\d+))|proc/self/fd/(\d+))$")
_FD_NAMES = {"/dev/stdout": 1, "/dev/stderr": 2}


def _descriptor_of(path: Path) -> int | None:
    """The descriptor ``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N`` or ``/proc/self/fd/N`` names, else None."""
    text = os.path.abspath(path)
    match = _FD_PATH.match(text)
    if match is None:
        return None
    return _FD_NAMES.get(text, int(match.group(1) or match.group(2) or -1))


def _special_kind(mode: int) -> str | None:
    """What a non-regular file is, in words (``None`` for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    for test, name in (
        (stat.S_ISDIR, "folder"),
        (stat.S_ISFIFO, "named pipe (FIFO)"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"


def write_target(path: str | Path) -> str:
    """How :func:`atomic_write` would write ``path``: ``"replace"`` (a regular file or nothing: temp file and
    rename), ``"through"`` (a FIFO, a character device, ``/dev/stdout``: written in place, left what it is).

    Why: renaming a temporary file over ``/dev/stdout`` or a FIFO would turn the device node or pipe into a
    regular file for every process on the machine; a user naming one means "send the output there".

    Raises:
        ValueError: anything else that is not a regular file (a folder, a socket, a block device), naming it.
    """
    path = Path(path)
    if _descriptor_of(path) is not None:
        return "through"
    try:
        mode = os.stat(path).st_mode  # follows symbolic links: what a write would reach
    except (FileNotFoundError, NotADirectoryError):  # nothing there (or a file in the way: said by the caller)
        return "replace"
    except OSError as error:
        raise ValueError(f"cannot write {path}: {error.strerror}") from None
    kind = _special_kind(mode)
    if kind is None:
        return "replace"
    if kind in ("named pipe (FIFO)", "character device"):
        return "through"
    if kind == "folder":
        raise ValueError(f"{path} is a folder; expected the path of a file to write")
    raise ValueError(f"{path} is a {kind}; expected a regular file (or a FIFO, a character device, /dev/stdout)")


def _write_through(path: Path, data: bytes) -> None:
    """Write ``data`` into an existing FIFO/device or an open descriptor of this process, leaving it as it is."""
    fd = _descriptor_of(path)
    if fd is not None:
        for stream in (sys.stdout, sys.stderr):  # what Python buffered for that descriptor goes out first
            if stream is not None and not stream.closed and _stream_fd(stream) == fd:
                stream.flush()
        _write_all(fd, data)
        return
    fd = os.open(path, os.O_WRONLY)  # a FIFO blocks here until a reader opens it, as `cat > fifo` does
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)


def _stream_fd(stream) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, fsync it and rename it onto ``path``.

    Only a regular file (or nothing) is ever replaced: a FIFO, a character device or ``/dev/stdout`` receives the
    complete content (produced in memory first) written through, and stays what it was; a folder, socket or block
    device is refused (:func:`write_target`); a symbolic link stays a link, and the file it points to is replaced.

    Args:
        path: the file to (re)place; its folder is created.
        write: writes the content to an open binary handle.

    Returns:
        ``path``. On any error the temporary file is removed and ``path`` is left as it was.

    Raises:
        ValueError: ``path`` is a folder, socket or block device.
        OSError: the disk is full (``ENOSPC``, re-raised naming ``path``: "disk full while writing PATH"), or
            another write error.
    """
    path = given = Path(path)
    if write_target(path) == "through":
        buffer = io.BytesIO()
        write(buffer)
        _write_through(path, buffer.getvalue())
        return path
    if path.is_symlink():  # replace the file the link points to, not the link itself
        path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)  # 0o666 & ~umask, like open()
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(path) from None
        raise
    _fsync_dir(path.parent)
    return given


def disk_full(path: str | Path) -> OSError:
    """The error a full disk (or quota) raises here: it names the file being written and says the disk is full."""
    return OSError(errno.ENOSPC, "disk full while writing", str(path))


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    return atomic_write(path, lambda handle: handle.write(data))


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def save_json(obj: object, path: str | Path) -> Path:
    """Atomically write ``obj`` as indented JSON (non-JSON values as ``str``)."""
    return write_text(path, json.dumps(obj, indent=2, default=str))


def save_npz(arrays: dict[str, np.ndarray], path: str | Path) -> Path:
    """Atomically write a compressed ``.npz`` (a handle keeps NumPy from appending ``.npz`` to the temp name)."""
    return atomic_write(path, lambda handle: np.savez_compressed(handle, **arrays))


def save_torch(obj: object, path: str | Path) -> Path:
    """Atomically ``torch.save`` ``obj``."""
    import torch

    return atomic_write(path, lambda handle: torch.save(obj, handle))


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_creatable(path: Path) -> None:
    """Raise ``ValueError`` naming ``path`` when it cannot be created (a file in the way, no write permission)."""
    ancestor = _existing_ancestor(path.parent)
    if not ancestor.is_dir():
        raise ValueError(f"cannot create {path}: {ancestor} is a file, not a folder")
    if ancestor == path.parent and not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {path}: no permission to write into {ancestor}")
    if ancestor != path.parent and not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"cannot create {path.parent}: no permission to write into {ancestor}")


def check_output_file(path: str | Path, what: str = "file") -> None:
    """Check before any work that ``path`` can be written as a file (not a folder, a writable place)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; expected the path of a {what} to write")
    through = write_target(path) == "through"  # a FIFO, a device, /dev/stdout: written in place, not replaced
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"cannot write {path}: no permission to {'write' if through else 'replace'} it")
    if not through:
        _check_creatable(path)


def check_output_dir(path: str | Path) -> None:
    """Check before any work that ``path`` is or can become a writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file; expected a folder to write the masks into")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"cannot write into {path}: no permission")
        return  # the staging folder is made inside it (a mount point's parent may be read-only)
    _check_creatable(path)


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files a killed writer left in ``folder`` and its sub-folders; return them.

    Only names this module makes (``.<name>.tmp<digits>``) are touched; call it when a run starts, before
    anything writes, so no live writer of the same run can own them.
    """
    removed = []
    for tmp in Path(folder).rglob(f".*{TMP_MARK}*"):
        if tmp.is_file() and tmp.name.rsplit(TMP_MARK, 1)[-1].isdigit():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
