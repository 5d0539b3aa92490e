"""Writing files safely, and the facts recorded beside every result (commit, environment).

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

import json
import os
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from hw1lib.paths import REPO_ROOT

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


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, fsync it and rename it onto ``path``.

    Args:
        path: the file to (re)place; its folder is created.
        write: writes the content to an open binary handle.

    Returns:
        ``path``. On any error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)  # 0o666 & ~umask, like open()
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


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
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"cannot write {path}: no permission to replace it")
    _check_creatable(path)


def check_output_dir(path: str | Path) -> None:
    """Check before any work that ``path`` is or can become a writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file; expected a folder to write the masks into")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"cannot write into {path}: no permission")
        _check_creatable(path)  # the staging folder is made beside it
        return
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


def git_commit() -> str:
    """The repository's commit (``+changes`` when tracked files differ from it), or ``unknown``."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout

    try:
        head = git("rev-parse", "--short=12", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head + (" +changes" if dirty else "")) if head else "unknown"


def cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_info(device: object) -> dict:
    """Device and library versions, recorded with every run and every benchmark.

    Args:
        device: a ``torch.device`` (or its string).
    """
    import torch

    import hw1lib

    device = torch.device(device)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {
        "device": str(device),
        "torch": torch.__version__,
        "hw1lib": hw1lib.__version__,
        "python": platform.python_version(),
        "host_cpus": os.cpu_count(),
        "cpu_cores": cores,
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    else:
        info["device_name"] = cpu_name()
    return info
