"""Writing the stand-in: sizes, jobs, per-image random generators, manifest, workers, atomic move into place."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from hw1lib.data.classification import IMAGE_SIZE as P1_IMAGE_SIZE
from hw1lib.data.classification import NUM_CLASSES as P1_CLASSES
from hw1lib.data.palette import encode_mask
from hw1lib.data.standin.p1 import render_p1_image
from hw1lib.data.standin.p2 import render_p2_pair
from hw1lib.files import umask

#: bump when the generated content changes, so an old stand-in is not silently reused
GENERATOR_VERSION = 2
MANIFEST_NAME = "standin.json"
#: the manifest's ``generator`` field: the package, as written before the split into modules, so existing
#: stand-ins are still reused (``__name__`` here would be the submodule's name)
_GENERATOR_NAME = "hw1lib.data.standin"

P1_VAL_FIRST_ID = 450  # as in the real archive: train ids 0..449, val ids 450..499 per class
JPEG_QUALITY = 90


@dataclass(frozen=True)
class StandinSize:
    """How much stand-in data to write.

    Attributes:
        p1_train_per_class: P1 training images per class (ids ``0..n-1``).
        p1_val_per_class: P1 validation images per class (ids ``450..450+n-1``).
        p2_train_count: P2 training pairs (ids ``0000..n-1``).
        p2_val_ids: P2 validation pair ids (the report shows 0013, 0062 and 0104).
        p2_image_size: side of the square P2 images and masks, in pixels.
    """

    p1_train_per_class: int
    p1_val_per_class: int
    p2_train_count: int
    p2_val_ids: tuple[int, ...]
    p2_image_size: int


STANDIN_SIZES: dict[str, StandinSize] = {
    "smoke": StandinSize(8, 2, 8, (0, 1, 2, 13, 62, 104, 256), 64),
    "demo": StandinSize(40, 10, 96, (*range(28), 62, 104, 150, 256), 128),
    "full": StandinSize(450, 50, 2000, tuple(range(257)), 512),  # the real archive's counts and size
    # what a fast dev run of `full` reads (config.FAST_DEV_RUN: 2 batches, 1 validation batch), at full's sizes:
    # P1 2 batches of 250 (model A) and 21 validation images per class (model A's one batch of 1024); P2 2 batches
    # of 8 and one validation batch of 16 that holds the kept masks 0013, 0062 and 0104 (0000-0013, 0062, 0104),
    # then 0256 (the archive's last id, not evaluated); `full`'s other 23,450 images and 2,224 pairs proved nothing
    "full-fastdev": StandinSize(10, 21, 16, (*range(14), 62, 104, 256), 512),
}

#: the stand-in size a fast dev run of a profile uses, where it is smaller than the profile's own
FAST_DEV_SIZES: dict[str, str] = {"full": "full-fastdev"}


def standin_size(profile: str, fast_dev_run: bool = False) -> str:
    """The key of :data:`STANDIN_SIZES` that ``profile`` generates (its fast dev size under ``fast_dev_run``)."""
    return FAST_DEV_SIZES.get(profile, profile) if fast_dev_run else profile


_PROBLEM_TAG = {"p1": 1, "p2": 2}
_SPLIT_TAG = {"train": 0, "val": 1}


def _image_rng(seed: int, problem: str, split: str, *ints: int) -> np.random.Generator:
    """The generator of one image: independent of order and of the worker that draws it."""
    return np.random.default_rng([seed, _PROBLEM_TAG[problem], _SPLIT_TAG[split], *ints])


@dataclass(frozen=True)
class _Job:
    """A batch of images that one worker writes: one P1 class of a split, or a run of P2 ids."""

    problem: str
    split: str
    folder: str
    seed: int
    ids: tuple[int, ...]
    label: int = 0
    size: int = P1_IMAGE_SIZE


def _run_job(job: _Job) -> int:
    folder = Path(job.folder)
    for i in job.ids:
        rng = _image_rng(job.seed, job.problem, job.split, job.label, i)
        if job.problem == "p1":
            Image.fromarray(render_p1_image(job.label, rng)).save(folder / f"{job.label}_{i}.png")
        else:
            image, cmap = render_p2_pair(rng, job.size)
            Image.fromarray(image).save(folder / f"{i:04d}_sat.jpg", quality=JPEG_QUALITY)
            Image.fromarray(encode_mask(cmap)).save(folder / f"{i:04d}_mask.png")
    return len(job.ids)


def _jobs(root: Path, spec: StandinSize, seed: int) -> list[_Job]:
    """All the work, largest first so that worker processes finish together."""
    p1_train, p1_val = root / "p1_data" / "train_50", root / "p1_data" / "val_50"
    p2_train, p2_val = root / "p2_data" / "train", root / "p2_data" / "validation"
    chunk = 8
    p2_ids = {"train": tuple(range(spec.p2_train_count)), "val": spec.p2_val_ids}
    jobs = [
        _Job("p2", split, str(folder), seed, ids[k : k + chunk], size=spec.p2_image_size)
        for split, folder in (("train", p2_train), ("val", p2_val))
        for ids in [p2_ids[split]]
        for k in range(0, len(ids), chunk)
    ]
    train_ids = tuple(range(spec.p1_train_per_class))
    val_ids = tuple(range(P1_VAL_FIRST_ID, P1_VAL_FIRST_ID + spec.p1_val_per_class))
    for label in range(P1_CLASSES):
        jobs.append(_Job("p1", "train", str(p1_train), seed, train_ids, label=label))
        jobs.append(_Job("p1", "val", str(p1_val), seed, val_ids, label=label))
    return jobs


def _write_val_gt(root: Path, spec: StandinSize) -> None:
    """``val_gt.csv`` as in the archive: header ``filename,label``, CRLF line endings."""
    rows = ["filename,label"] + [
        f"{label}_{i}.png,{label}"
        for label in range(P1_CLASSES)
        for i in range(P1_VAL_FIRST_ID, P1_VAL_FIRST_ID + spec.p1_val_per_class)
    ]
    (root / "p1_data" / "val_gt.csv").write_bytes(("\r\n".join(rows) + "\r\n").encode())


def _expected_counts(spec: StandinSize) -> dict[str, int]:
    """Files per folder of a complete stand-in (relative folder -> count)."""
    return {
        "p1_data/train_50": P1_CLASSES * spec.p1_train_per_class,
        "p1_data/val_50": P1_CLASSES * spec.p1_val_per_class,
        "p2_data/train": 2 * spec.p2_train_count,
        "p2_data/validation": 2 * len(spec.p2_val_ids),
    }


def _manifest(size: str, seed: int, spec: StandinSize) -> dict:
    spec_dict = asdict(spec)
    spec_dict["p2_val_ids"] = list(spec.p2_val_ids)
    return {"generator": _GENERATOR_NAME, "version": GENERATOR_VERSION, "size": size, "seed": seed, **spec_dict}


def _read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None


def _is_complete(folder: Path, spec: StandinSize) -> bool:
    """Every folder holds the expected number of files (a cheap check against later deletions)."""
    if not (folder / "p1_data" / "val_gt.csv").is_file():
        return False
    for sub, count in _expected_counts(spec).items():
        path = folder / sub
        if not path.is_dir() or sum(1 for _ in os.scandir(path)) != count:
            return False
    return True


def _existing_state(out_dir: Path, manifest: dict, spec: StandinSize, overwrite: bool) -> str:
    """``'absent'``, ``'reuse'`` (same complete stand-in) or ``'replace'``; raise when it may not be replaced."""
    if not out_dir.exists():
        return "absent"
    if not out_dir.is_dir():
        raise FileExistsError(f"stand-in output {out_dir} exists and is not a folder; choose another path")
    if not any(out_dir.iterdir()):
        return "replace"
    found = _read_manifest(out_dir)
    if found == manifest and _is_complete(out_dir, spec):
        return "reuse"
    if found is None:
        raise FileExistsError(
            f"{out_dir} is not empty and holds no {MANIFEST_NAME}, so it is not a generated stand-in "
            "(it may be real data). Refusing to write there, even with overwrite=True: choose another folder "
            "or remove it yourself."
        )
    if not overwrite:
        what = {k: found.get(k) for k in ("size", "seed", "p2_image_size", "version")}
        want = {k: manifest[k] for k in what}
        state = "an incomplete stand-in" if found == manifest else f"a different stand-in {what}"
        raise FileExistsError(
            f"{out_dir} already holds {state}; asked for {want}. "
            "Pass overwrite=True (CLI: --overwrite) to replace it, or choose another folder."
        )
    return "replace"


def _summary(out_dir: Path, manifest: dict, spec: StandinSize, seconds: float, reused: bool, workers: int) -> dict:
    return {
        "out_dir": str(out_dir),
        "size": manifest["size"],
        "seed": manifest["seed"],
        "reused": reused,
        "p1": {
            "classes": P1_CLASSES,
            "train": P1_CLASSES * spec.p1_train_per_class,
            "val": P1_CLASSES * spec.p1_val_per_class,
            "image_size": P1_IMAGE_SIZE,
        },
        "p2": {"train": spec.p2_train_count, "validation": len(spec.p2_val_ids), "image_size": spec.p2_image_size},
        "workers": workers,
        "seconds": round(seconds, 3),
    }


def _default_workers(spec: StandinSize) -> int:
    """One process for small stand-ins (start-up costs more than it saves), all cores for large ones."""
    pixels = spec.p2_image_size**2 * (spec.p2_train_count + len(spec.p2_val_ids))
    pixels += P1_IMAGE_SIZE**2 * 8 * P1_CLASSES * (spec.p1_train_per_class + spec.p1_val_per_class)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 1 if pixels < 40_000_000 else max(1, min(cores, 8))


def _execute(jobs: list[_Job], workers: int, progress: bool) -> None:
    from tqdm.auto import tqdm

    total = sum(len(job.ids) for job in jobs)
    with tqdm(total=total, desc="stand-in", unit="img", disable=not progress) as bar:
        if workers <= 1:
            done: Iterator[int] = map(_run_job, jobs)
            for n in done:
                bar.update(n)
            return
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for n in pool.map(_run_job, jobs):
                bar.update(n)


def _move_into_place(tmp: Path, out_dir: Path, state: str) -> None:
    """Rename the finished folder to ``out_dir``; an old stand-in is moved aside first, then deleted."""
    old = None
    if state == "replace":
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, old / "content")
    os.rename(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def generate_standin(
    out_dir: str | Path,
    size: str = "demo",
    seed: int = 0,
    p2_image_size: int | None = None,
    overwrite: bool = False,
    *,
    progress: bool = False,
    workers: int | None = None,
) -> dict:
    """Write a stand-in for ``hw1_data`` (``p1_data/``, ``p2_data/``) into ``out_dir``.

    Args:
        out_dir: the folder to create; it ends up holding ``p1_data``, ``p2_data`` and ``standin.json``.
        size: a key of :data:`STANDIN_SIZES` (``smoke``, ``demo``, ``full``, ``full-fastdev``).
        seed: the same seed and size give byte-identical files.
        p2_image_size: overrides the size's P2 image side (pixels).
        overwrite: replace an existing stand-in made with other parameters. A non-empty folder that is
            not a stand-in (no ``standin.json``) is never replaced.
        progress: show a tqdm bar (on stderr); nothing else is printed.
        workers: processes to use; ``None`` picks one for small sizes and all cores for ``full``.

    Returns:
        A summary: ``out_dir``, ``size``, ``seed``, ``reused`` (an identical stand-in was already
        there and nothing was written), ``p1``/``p2`` counts and image sizes, ``workers``, ``seconds``.

    Raises:
        ValueError: unknown size or bad image size.
        FileExistsError: ``out_dir`` holds something else and may not be replaced (the message says why).
    """
    start = time.perf_counter()
    if size not in STANDIN_SIZES:
        raise ValueError(f"unknown stand-in size {size!r}; valid sizes: {', '.join(STANDIN_SIZES)}")
    spec = STANDIN_SIZES[size]
    if p2_image_size is not None:
        if p2_image_size < 16:
            raise ValueError(f"p2_image_size must be at least 16 pixels, got {p2_image_size}")
        spec = replace(spec, p2_image_size=int(p2_image_size))
    out_dir = Path(out_dir).expanduser().absolute()
    manifest = _manifest(size, seed, spec)
    workers = _default_workers(spec) if workers is None else max(1, int(workers))
    state = _existing_state(out_dir, manifest, spec, overwrite)
    if state == "reuse":
        return _summary(out_dir, manifest, spec, time.perf_counter() - start, True, 0)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    # mkdtemp makes 0700, and the folder is renamed into place: give it the mode that mkdir would have
    os.chmod(tmp, 0o777 & ~umask())
    try:
        for sub in _expected_counts(spec):
            (tmp / sub).mkdir(parents=True)
        _execute(_jobs(tmp, spec, seed), workers, progress)
        _write_val_gt(tmp, spec)
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")  # last: marks it complete
        state = _existing_state(out_dir, manifest, spec, overwrite)  # again: another process may have won
        if state == "reuse":
            return _summary(out_dir, manifest, spec, time.perf_counter() - start, True, workers)
        _move_into_place(tmp, out_dir, state)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
    return _summary(out_dir, manifest, spec, time.perf_counter() - start, False, workers)
