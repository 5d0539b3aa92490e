"""The facts recorded beside every result: the repository's commit, the device and the library versions.

What this is not: a place for settings. It only reads what the machine and the repository are.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from hw1lib.paths import REPO_ROOT


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
