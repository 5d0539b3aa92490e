"""One writer per run folder: an exclusive lock held for a whole training.

Why: the same run can be started twice (a notebook in JupyterLab and ``make report``, two terminals); both
would train in full, write the same files, and the second one's start clears the first one's in-flight
temporary files. :func:`run_lock` takes ``fcntl.flock`` on ``<run folder>/.lock`` without waiting: the second
trainer stops at once with one line naming the process that holds the lock (the choice: stop, not wait; a
rerun after the first has finished reuses or resumes its run). The lock file records the holder's PID, host
and start time; the kernel releases the lock when the holder exits, however it exits (even ``kill -9``), so
a stale lock file never blocks anyone.

What this is not: a lock across machines on a network file system that does not support ``flock``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: the lock file inside a run folder
LOCK_NAME = ".lock"


class RunBusyError(RuntimeError):
    """Another process is training the same run folder."""


#: errors that mean "no lock can be taken here" (a read-only folder, a file system without flock), not "busy"
_CANNOT_LOCK = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP)


def _open_lock(path: Path) -> int | None:
    """The lock file's descriptor, or None where it cannot be created (a read-only run folder of copied finished
    runs: this process cannot write there either, so it cannot be a second writer)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        if error.errno in _CANNOT_LOCK:
            return None
        raise


def _take(fd: int, folder: Path, path: Path) -> bool:
    """Take the lock without waiting; False where the file system cannot lock (said in one line).

    Raises:
        RunBusyError: another process holds it.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise RunBusyError(
                f"run folder {folder} is being trained by {holder}; wait for it to finish (then the same command "
                "reuses or resumes its run), or stop that process"
            ) from None
        if error.errno not in _CANNOT_LOCK:
            raise
        print(f"hw1lib: cannot lock {path} ({error.strerror}); going on without the one-writer lock", file=sys.stderr)
        return False
    return True


@contextmanager
def run_lock(folder: str | Path) -> Iterator[Path]:
    """Hold the exclusive lock of run folder ``folder`` (created if missing) for the ``with`` block.

    Raises:
        RunBusyError: another process holds it; the message names the process and the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = _open_lock(path)
    if fd is None:
        yield path
        return
    try:
        locked = _take(fd, folder, path)
        if locked:
            os.ftruncate(fd, 0)
            started = time.strftime("%Y-%m-%d %H:%M:%S")
            os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} since {started}\n".encode(), 0)
        try:
            yield path
        finally:
            if locked:
                os.ftruncate(fd, 0)  # the lock goes with the descriptor; an empty file says nobody holds it
    finally:
        os.close(fd)
