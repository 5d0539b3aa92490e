"""A training stopped by Ctrl-C (SIGINT) or SIGTERM says so in one line, and how to resume.

Why: the run folder already holds every complete epoch (``last.pt``), so an interruption loses at most the
epoch in progress; a 40-line ``KeyboardInterrupt`` traceback hides that. :class:`TrainingInterrupted` carries
the line: ``hw1 train`` prints it and exits 130 (SIGINT) or 143 (SIGTERM), as shells expect of a process
stopped by that signal; in JupyterLab or papermill the cell shows just that line (IPython's
``_render_traceback_`` hook) and the notebook stops, as any interrupted cell does.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by a signal; the message says after which epoch and how to resume.

    Attributes:
        signum: the signal (``SIGINT`` or ``SIGTERM``).
        exit_status: ``128 + signum``: 130 or 143.
    """

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = int(signum)
        self.exit_status = 128 + self.signum

    def _render_traceback_(self) -> list[str]:
        """What IPython (JupyterLab, papermill) shows for this error instead of a traceback: the one line."""
        return [f"TrainingInterrupted: {self}"]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the training is (only inside :func:`sigterm_raises`)."""


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``) like Ctrl-C does.

    Only in the main thread (Python runs signal handlers there; elsewhere the block runs unchanged); the previous
    handler is restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def interrupted(error: KeyboardInterrupt, done: int, planned: int) -> TrainingInterrupted:
    """The one-line error for an interruption after ``done`` complete epochs of ``planned``."""
    signum = signal.SIGTERM if isinstance(error, Terminated) else signal.SIGINT
    what = "interrupted by SIGTERM" if signum == signal.SIGTERM else "interrupted"
    return TrainingInterrupted(
        f"{what} after epoch {done} of {planned}; run the same command (or cell) to resume", signum
    )
