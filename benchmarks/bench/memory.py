"""Peak memory of a block of code: CUDA's allocator statistics, or the CPU process's peak resident size.

Why the resident size on the CPU: it counts weights, optimiser state, activations and allocator slack
alike, which is what a machine must have free to train the model.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import re
from collections.abc import Iterator
from pathlib import Path

import torch


def _status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or ``None`` where it cannot be read."""
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict]:
    """Measure the peak memory of the block; the yielded dict gets ``peak_mib`` and ``kind`` on exit.

    CUDA: ``torch.cuda.max_memory_allocated`` above what was allocated before. CPU: the process's peak
    resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) above its size before the block,
    so weights, optimiser state, activations and allocator slack all count.
    """
    result: dict = {}
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield result
        peak = torch.cuda.max_memory_allocated(device)
        result.update(peak_mib=(peak - base) / 2**20, kind="cuda max_memory_allocated")
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, so the baseline is the live size
    base, reset = _status_kib("VmRSS"), True
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    except OSError:
        reset = False
    yield result
    peak = _status_kib("VmHWM") if reset else None
    if base is None or peak is None:
        result.update(peak_mib=None, kind="unavailable (no /proc/self/clear_refs)")
    else:
        result.update(peak_mib=(peak - base) / 1024, kind="CPU peak RSS increase")
