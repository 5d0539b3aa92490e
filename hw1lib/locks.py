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

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: the lock file inside a run folder
LOCK_NAME = ".lock"


class RunBusyError(RuntimeError):
    """Another process is training the same run folder."""


@contextmanager
def run_lock(folder: str | Path) -> Iterator[Path]:
    """Hold the exclusive lock of run folder ``folder`` (created if missing) for the ``with`` block.

    Raises:
        RunBusyError: another process holds it; the message names the process and the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise RunBusyError(
                f"run folder {folder} is being trained by {holder}; wait for it to finish (then the same command "
                "reuses or resumes its run), or stop that process"
            ) from None
        os.ftruncate(fd, 0)
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} since {started}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # the lock goes with the descriptor; an empty file says nobody holds it
    finally:
        os.close(fd)
