"""Progress bars that suit where the code runs: widgets in JupyterLab, plain text in a batch run.

Under papermill (``make report``) a notebook's kernel has no front end, so ipywidgets bars would be saved
frozen at 0%. The report build sets ``HW1_PROGRESS=text`` for its kernels: bars are then tqdm's text bars,
kept (one line per bar) and updated rarely, and the build merges each cell's stream output so the saved
notebook and its HTML show each bar's final 100% line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

#: the variable that selects text bars, and the seconds between a text bar's updates
ENV_VAR, TEXT_INTERVAL_S = "HW1_PROGRESS", 30.0


def text_mode() -> bool:
    """Whether bars are plain text (``HW1_PROGRESS=text``, set by the report build)."""
    return os.environ.get(ENV_VAR, "").strip().lower() == "text"


def progress_bar(iterable: Iterable, desc: str = "", disable: bool = False, leave: bool = False):
    """A tqdm bar over ``iterable``: ipywidgets or terminal (``tqdm.auto``), or kept text bars in text mode."""
    if text_mode():
        from tqdm.std import tqdm

        return tqdm(
            iterable,
            desc=desc,
            disable=disable,
            leave=True,
            file=sys.stdout,
            mininterval=TEXT_INTERVAL_S,
            ascii=True,
            ncols=100,
        )
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, disable=disable, leave=leave)
