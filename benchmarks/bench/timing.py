"""Small measuring tools: timed calls (device synchronised), interleaved timing, a matrix-multiply peak.

Also the two things every row records about its moment: the machine's load average, and a progress line.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on the CPU, where calls return when done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones (device synchronised)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        tic = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - tic)
    return times


def time_interleaved(
    fns: dict[str, Callable[[], object]], device: torch.device, warmup: int, repeats: int
) -> dict[str, list[float]]:
    """:func:`time_calls` for several functions at once, one call of each per round (the order rotating).

    Why: on a shared machine a burst of other work lasts seconds to minutes; timed round by round, the
    variants being compared meet it alike, so their ratio stays meaningful even when absolute figures move.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            times[name] += time_calls(fns[name], device, 0, 1)
    return times


def matmul_peak(
    device: torch.device, dtype: torch.dtype | None = None, size: int = 2048, repeats: int = 10
) -> float | None:
    """The best matrix-multiply rate measured on ``device``, in FLOP/s (bf16 on CUDA, fp32 on the CPU).

    Returns ``None`` when the dtype cannot be multiplied there.
    """
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    inner = 20 if device.type == "cuda" else 1  # CUDA: many launches per timing, so launch latency hides
    try:
        a, b, c = (torch.randn(size, size, device=device).to(dtype) for _ in range(3))

        def multiply() -> None:
            for _ in range(inner):
                torch.mm(a, b, out=c)

        times = time_calls(multiply, device, 2, repeats)
    except RuntimeError:
        return None
    return 2 * size**3 * inner / min(times)


def load_average() -> float | None:
    """The 1-minute load average (how busy the machine was), where the OS reports one."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def log(message: str) -> None:
    """A time-stamped progress line on stderr (stdout carries the tables)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
