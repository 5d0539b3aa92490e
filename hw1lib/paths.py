"""Where things live: every default path of the project is derived here, from this file's location.

Nothing depends on the current working directory (notebooks run from ``notebooks/``, papermill and the
CLI from anywhere). Environment variables override the defaults: ``HW1_DATA`` (the real data root),
``HW1_RUNS`` (run folders), ``HW1_FIGURES`` (report figures), ``HW1_CACHE`` (decoded-array cache).
"""

from __future__ import annotations

import os
from pathlib import Path

#: the repository root (the folder holding ``hw1lib/``); in a non-editable install, the current folder
_PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT: Path = _PACKAGE_DIR.parent if (_PACKAGE_DIR.parent / "pyproject.toml").exists() else Path.cwd()


def _from_env(name: str, default: Path) -> Path:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser().resolve() if value else default


def data_dir() -> Path:
    """Folder for the generated stand-in data and the default real-data location (``data/``)."""
    return REPO_ROOT / "data"


def standin_dir(size: str) -> Path:
    """Where the stand-in of a given size is generated (``data/standin-<size>``)."""
    return data_dir() / f"standin-{size}"


def runs_dir() -> Path:
    """Root of the run folders (``runs/`` unless ``HW1_RUNS`` is set)."""
    return _from_env("HW1_RUNS", REPO_ROOT / "runs")


def figures_dir() -> Path:
    """Where report figures are written (``figures/`` unless ``HW1_FIGURES`` is set)."""
    return _from_env("HW1_FIGURES", REPO_ROOT / "figures")


def cache_dir() -> Path:
    """Where decoded arrays are cached (``data/cache`` unless ``HW1_CACHE`` is set)."""
    return _from_env("HW1_CACHE", data_dir() / "cache")
