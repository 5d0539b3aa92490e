"""What a run folder is, read lightly and never raising: its recipe record and the row ``hw1 runs`` shows.

:func:`recipe_of` tells how a run was asked for (experiment, profile, overrides, fast dev run, label), also for
runs written before ``params.json`` recorded it; :func:`summarize` gives one folder's row, whatever state the
folder is in (finished, interrupted, half written, unreadable). ``hw1 runs``/``compare`` (:mod:`hw1lib.runs_table`),
``hw1 evaluate`` and the grader's checkpoint rule (:mod:`hw1lib.grader_checkpoint`) read runs through these;
the file names and the writing stay :mod:`hw1lib.runs`'s.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from hw1lib.checkpoints import CheckpointError, read_checkpoint
from hw1lib.runs import FASTDEV_SUFFIX, HISTORY, LAST, RunFolder

#: the profiles the grader's rule considers, the most complete first
PROFILE_ORDER = ("full", "demo", "smoke")


def read_json(path: Path) -> tuple[dict | None, str]:
    """``(content, "")``, or ``(None, why)`` for a missing, unreadable or non-object JSON file (never raises)."""
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        return None, f"{path.name} is missing"
    except (OSError, ValueError) as error:
        return None, f"{path.name} is unreadable ({type(error).__name__}: {error})"
    if not isinstance(content, dict):
        return None, f"{path.name} is unreadable (not a JSON object)"
    return content, ""


def is_fast_dev_run(run_dir: Path, params: dict) -> bool:
    """Whether a run is a fast dev run (a few batches, meaningless weights): its ``recipe`` says so, it lies in a
    ``<profile>-fastdev`` folder, or its config caps the validation batches (``max_eval_batches``)."""
    recipe = params.get("recipe") if isinstance(params.get("recipe"), dict) else {}
    config = params.get("config") if isinstance(params.get("config"), dict) else {}
    return (
        bool(recipe.get("fast_dev_run"))
        or Path(run_dir).parent.name.endswith(FASTDEV_SUFFIX)
        or config.get("max_eval_batches") is not None
    )


def recipe_of(run_dir: str | Path, params: dict) -> dict:
    """What a run is relative to its recipe: ``{"experiment", "profile", "overrides", "fast_dev_run", "label"}``.

    From ``params["recipe"]`` when the run has it; for a run written before that key, the profile is the name of
    the run folder's parent (``runs/<profile>/...``), or else the profile whose recipe the config matches, and
    the overrides are :func:`hw1lib.config.recipe_diff` of the stored config. ``profile`` or ``overrides`` is
    ``None`` where they cannot be told (an experiment without a recipe, a foreign folder).
    """
    run_dir = Path(run_dir)
    stored = params.get("recipe")
    fast = is_fast_dev_run(run_dir, params)
    if isinstance(stored, dict):
        overrides = stored.get("overrides")
        return {
            "experiment": stored.get("experiment") or params.get("name") or RunFolder(run_dir).name,
            "profile": stored.get("profile"),
            "overrides": overrides if isinstance(overrides, dict) else None,
            "fast_dev_run": fast,
            "label": stored.get("label"),
        }
    experiment = params.get("name") or RunFolder(run_dir).name
    config = params.get("config") if isinstance(params.get("config"), dict) else {}
    row = {"experiment": experiment, "profile": None, "overrides": None, "fast_dev_run": fast, "label": None}
    parent = run_dir.parent.name.removesuffix(FASTDEV_SUFFIX)
    if parent in PROFILE_ORDER:
        return {**row, "profile": parent, "overrides": _recipe_diff_or_none(experiment, parent, config)}
    for profile in PROFILE_ORDER:  # a folder of its own (--out-dir): the profile whose recipe the config is
        if _recipe_diff_or_none(experiment, profile, config) == {}:
            return {**row, "profile": profile, "overrides": {}}
    return row


def _recipe_diff_or_none(experiment: str, profile: str, config: dict) -> dict | None:
    """:func:`hw1lib.config.recipe_diff`, or None for an experiment without a recipe or a foreign config."""
    from hw1lib.config import recipe_diff

    try:
        return recipe_diff(experiment, profile, config)
    except (ValueError, TypeError, KeyError):
        return None


#: the keys of :func:`summarize`, in the order ``hw1 runs`` shows them
SUMMARY_KEYS = (
    "experiment",
    "profile",
    "folder",
    "label",
    "overrides",
    "seed",
    "status",
    "epochs",
    "epochs_planned",
    "metric",
    "best",
    "best_epoch",
    "train_seconds",
    "finished",
    "task",
    "fast_dev_run",
    "run_dir",
)


def _date(stamp: object) -> str | None:
    """``2026-12-05 09:40`` from metrics.json's ``finished`` (``%Y-%m-%dT%H:%M:%S%z``); the text as is otherwise."""
    if not isinstance(stamp, str):
        return None
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return stamp


def summarize(folder: RunFolder) -> dict:
    """What ``hw1 runs`` shows of this folder, read lightly (no checkpoint opened unless history.csv is
    missing) and never raising: a half-written or unreadable run gives a row whose ``status`` says so.

    Returns:
        ``experiment, profile, folder, label, overrides (dict or None), seed, status, epochs (done),
        epochs_planned, metric, best, best_epoch, train_seconds, finished, task, fast_dev_run, run_dir``.
    """
    row = dict.fromkeys(SUMMARY_KEYS) | {
        "experiment": folder.name,
        "folder": folder.path.name,
        "fast_dev_run": folder.path.parent.name.endswith(FASTDEV_SUFFIX),
        "run_dir": str(folder.path),
    }
    params, problem = read_json(folder.file("params"))
    if params is None:
        return {**row, "status": problem}
    config = params.get("config") if isinstance(params.get("config"), dict) else {}
    recipe = recipe_of(folder.path, params)
    row.update({k: recipe[k] for k in ("experiment", "profile", "overrides", "label", "fast_dev_run")})
    row.update(seed=config.get("seed"), epochs_planned=config.get("epochs"), task=config.get("task"))
    row["metric"] = {"classification": "acc", "segmentation": "miou"}.get(row["task"])
    return _finished_row(folder, row) if folder.is_finished() else _unfinished_row(folder, row)


def _finished_row(folder: RunFolder, row: dict) -> dict:
    """A finished run's row: everything from ``metrics.json``."""
    metrics, problem = read_json(folder.file("metrics"))
    if metrics is None:
        return {**row, "status": problem}
    metric = metrics.get("metric", row["metric"])
    row.update(
        metric=metric,
        best=metrics.get(f"best_val_{metric}"),
        best_epoch=metrics.get("best_epoch"),
        epochs=metrics.get("final_epoch"),
        train_seconds=metrics.get("train_seconds"),
        finished=_date(metrics.get("finished")),
    )
    return {**row, "status": "fast dev" if row["fast_dev_run"] else "finished"}


def _unfinished_row(folder: RunFolder, row: dict) -> dict:
    """An interrupted (or still running) run's row: its progress from ``history.csv``, else ``last.pt``."""
    try:
        history = pd.read_csv(folder.file("history"))
        done, problem = len(history), ""
        column = history.get(f"val_{row['metric']}")
        if column is not None and column.notna().any() and "epoch" in history:
            best = int(column.idxmax())
            row.update(best=float(column.iloc[best]), best_epoch=int(history["epoch"].iloc[best]))
        if "seconds" in history:
            row["train_seconds"] = float(history["seconds"].sum())
    except FileNotFoundError:
        done, problem = _last_epoch(folder), f"{HISTORY} is missing"
    except (OSError, ValueError, KeyError, TypeError) as error:  # pandas' read errors are ValueErrors
        done, problem = _last_epoch(folder), f"{HISTORY} is unreadable ({type(error).__name__})"
    row["epochs"] = done
    if done is None:
        status = f"{problem}; {LAST} is unreadable"
    elif done == 0:
        status = f"interrupted before epoch 1 of {row['epochs_planned']} finished"
    else:
        status = f"interrupted at epoch {done} of {row['epochs_planned']}"
    return {**row, "status": f"fast dev, {status}" if row["fast_dev_run"] else status}


def _last_epoch(folder: RunFolder) -> int | None:
    """The epoch of ``last.pt`` (0 when there is none yet), or None when it cannot be read."""
    if not folder.file("last").exists():
        return 0
    try:
        return int(read_checkpoint(folder.file("last")).get("epoch", 0))
    except (CheckpointError, OSError, ValueError):
        return None
