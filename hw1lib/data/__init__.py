"""Data loading for both problems: root discovery, decoding with an on-disk cache, augmentation, stand-in.

Typical use (what the notebooks do)::

    root = prepare_data_root(data_root="", profile="demo")   # "" = generate/use the stand-in (data_seed 0)
    train, val = load_problem1(root)
"""

from __future__ import annotations

import numbers
from pathlib import Path

from hw1lib.data.classification import ClassificationSet, load_classification_folder
from hw1lib.data.roots import DataRoot, find_data_root
from hw1lib.data.segmentation import SegmentationSet, load_segmentation_folder
from hw1lib.paths import standin_dir

__all__ = [
    "ClassificationSet",
    "DataRoot",
    "SegmentationSet",
    "data_source",
    "find_data_root",
    "load_classification_folder",
    "load_problem1",
    "load_problem2",
    "load_segmentation_folder",
    "prepare_data_root",
    "standin_folder",
]


def prepare_data_root(
    data_root: str | Path = "", profile: str = "demo", data_seed: int = 0, *, fast_dev_run: bool = False
) -> DataRoot:
    """Resolve the user's data root, or generate (once) the stand-in of the profile's size when it is empty.

    Args:
        data_root: a real data folder (any of the layouts :func:`find_data_root` accepts), or ``""``.
        profile: ``smoke``/``demo``/``full``: the stand-in size when ``data_root`` is empty.
        data_seed: the stand-in's content seed (ignored for real data). It is not the training ``seed``: a
            second training seed trains on the same data. Each data seed has its own folder
            (:func:`standin_folder`), so changing it never meets "a different stand-in" in the folder.
        fast_dev_run: generate the profile's fast dev stand-in (``full-fastdev``: only the images a fast dev
            run reads, at the profile's sizes) where it has one; a real ``data_root`` is used whole.
    """
    check_profile_and_seed(profile, data_seed, "data_seed")
    if str(data_root).strip():
        return find_data_root(data_root)
    from hw1lib.data.standin import generate_standin, standin_size  # only needed when no real data is given

    size = standin_size(profile, fast_dev_run)
    out = standin_folder(size, data_seed)
    generate_standin(out, size=size, seed=data_seed)
    return find_data_root(out)


def standin_folder(size: str, data_seed: int = 0) -> Path:
    """``data/standin-<size>`` for the default data seed 0, ``data/standin-<size>-seed<N>`` otherwise (``size``: a
    profile, or a fast dev run's stand-in size such as ``full-fastdev``)."""
    out = standin_dir(size)
    return out if data_seed == 0 else out.with_name(f"{out.name}-seed{data_seed}")


def check_profile_and_seed(profile: object, seed: object, name: str = "seed") -> None:
    """Refuse a bad ``profile`` or ``seed`` (papermill ``-p``, a notebook's parameters cell) in one line, first.

    Why here: these two choose the stand-in, so a wrong value would otherwise surface as a stand-in error
    ("unknown stand-in size", or "a different stand-in exists: overwrite it") that misleads.
    """
    from hw1lib.config import PROFILES

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"{name} must be a whole number (e.g. -p {name} 0), got {seed!r} ({type(seed).__name__})")


def data_source(where: DataRoot | str | Path) -> str:
    """``"stand-in"`` when a data root, or a problem's split folder under it, belongs to a generated stand-in
    (its root carries the generator's manifest), else ``"real"``."""
    from hw1lib.data.standin import MANIFEST_NAME

    folder = Path(where.root if isinstance(where, DataRoot) else where)
    candidates = [folder, *list(folder.parents)[:2]]  # the root itself, or <root>/p1_data/train_50
    return "stand-in" if any((c / MANIFEST_NAME).exists() for c in candidates) else "real"


def _require(folder: Path | None, what: str, root: DataRoot) -> Path:
    if folder is None:
        raise FileNotFoundError(f"{root.root} has no {what}: expected {root.root / what}")
    return folder


def load_problem1(root: DataRoot) -> tuple[ClassificationSet, ClassificationSet]:
    """Decode ``p1_data/train_50`` and ``p1_data/val_50`` (cached)."""
    p1 = _require(root.p1, "p1_data", root)
    return load_classification_folder(p1 / "train_50", labelled=True), load_classification_folder(
        p1 / "val_50", labelled=True
    )


def load_problem2(root: DataRoot) -> tuple[SegmentationSet, SegmentationSet]:
    """Decode ``p2_data/train`` and ``p2_data/validation`` (cached)."""
    p2 = _require(root.p2, "p2_data", root)
    return load_segmentation_folder(p2 / "train"), load_segmentation_folder(p2 / "validation")
