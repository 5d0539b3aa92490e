"""Find the homework's data folders from whatever path a user gives.

The course archive unpacks to ``hw1_data/`` and, on some unpackings, to ``hw1_data/hw1_data/``. A user
may point at either, or at the folder that holds ``p1_data`` and ``p2_data`` directly. This module
accepts all three and says precisely what it looked for when it finds neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROBLEM_DIRS = ("p1_data", "p2_data")


@dataclass(frozen=True)
class DataRoot:
    """The resolved data root: ``p1``/``p2`` are the problem folders, ``None`` when absent."""

    root: Path
    p1: Path | None
    p2: Path | None


def _candidates(path: Path) -> list[Path]:
    """The folders that may hold ``p1_data``/``p2_data``, in the order they are tried."""
    return [path, path / "hw1_data", path / "hw1_data" / "hw1_data"]


def find_data_root(path: str | Path) -> DataRoot:
    """Resolve a user's data path to the folder holding ``p1_data`` and/or ``p2_data``.

    Args:
        path: the folder holding the problem folders, ``hw1_data`` itself, or its parent.

    Raises:
        FileNotFoundError: when none of the candidate folders holds a problem folder; the message lists
            every folder that was tried and what the given folder actually contains.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"data root {path} does not exist or is not a folder")
    for folder in _candidates(path):
        found = {name: folder / name for name in PROBLEM_DIRS if (folder / name).is_dir()}
        if found:
            return DataRoot(root=folder.resolve(), p1=found.get("p1_data"), p2=found.get("p2_data"))
    tried = ", ".join(str(c) for c in _candidates(path))
    present = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())[:20]
    raise FileNotFoundError(
        f"no p1_data/ or p2_data/ found under {path}. Looked in: {tried}. "
        f"{path} contains: {', '.join(present) or '(nothing)'}. "
        "Point to the folder that holds p1_data and p2_data (the unpacked hw1_data)."
    )
