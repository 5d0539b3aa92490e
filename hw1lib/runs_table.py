"""The runs table (``hw1 runs``) and the comparison of two runs (``hw1 compare``), as DataFrames.

Why a module of its own: run folders are named by a hash, so without a table a user hand-reads JSON to learn
which folder is which. Everything here is read from run folders through :mod:`hw1lib.runs` (their one owner):
one row per folder from :func:`hw1lib.run_summary.summarize`, which never raises, so a half-written or
unreadable run is a row that says so instead of a crash. The CLI only prints what these functions return.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from hw1lib.paths import runs_dir
from hw1lib.run_summary import PROFILE_ORDER, SUMMARY_KEYS, summarize
from hw1lib.runs import BEST, HISTORY, LAST, METRICS, PARAMS, RunFolder

#: the table's columns, in order (``overrides`` as ``lr=0.001 augment.flip=False``): a run folder's summary without
#: what the status and the profile already say, or what only ``--csv`` needs
COLUMNS = [key for key in SUMMARY_KEYS if key not in ("epochs_planned", "task", "fast_dev_run", "run_dir")]


#: the widest status shown in the text table (an unreadable file's full reason is in ``--csv``)
STATUS_WIDTH = 60


def format_overrides(overrides: dict | None) -> str:
    """``lr=0.001 augment.flip=False`` (sorted dotted keys); ``""`` for the recipe, ``"?"`` when unknown."""
    if overrides is None:
        return "?"
    return " ".join(f"{key}={value}" for key, value in sorted(_flat(overrides).items()))


def find_run_dirs(root: str | Path | None = None) -> list[Path]:
    """Every run folder under ``root`` (default: ``runs/``): a folder holding any of a run's own files, so a run
    killed after its first file is found too."""
    root = Path(root) if root is not None else runs_dir()
    found = {path.parent for name in (PARAMS, HISTORY, METRICS, LAST, BEST) for path in root.rglob(name)}
    return sorted(found)


def runs_table(
    root: str | Path | None = None, profile: str | None = None, experiment: str | None = None
) -> pd.DataFrame:
    """One row per run folder under ``root``: :data:`COLUMNS` plus ``run_dir``, the most complete profile first.

    Args:
        root: the folder of profile folders (default: ``runs/``, or ``$HW1_RUNS``).
        profile: keep the runs of this profile (its fast dev runs included: their status says ``fast dev``).
        experiment: keep the runs of this experiment.
    """
    rows = [summarize(RunFolder(path)) for path in find_run_dirs(root)]
    if profile is not None:
        rows = [row for row in rows if row["profile"] == profile]
    if experiment is not None:
        rows = [row for row in rows if row["experiment"] == experiment]
    table = pd.DataFrame(rows, columns=[*COLUMNS, "run_dir"])
    table["overrides"] = [format_overrides(row.get("overrides")) for row in rows]
    order = {name: i for i, name in enumerate(PROFILE_ORDER)}
    table["_order"] = table["profile"].map(lambda p: order.get(p, len(order)))
    table = table.sort_values(["_order", "experiment", "finished", "folder"], na_position="last", kind="stable")
    return table.drop(columns="_order").reset_index(drop=True)


def format_runs_table(table: pd.DataFrame) -> str:
    """The table as text for a terminal: scores to 4 decimals, training time as ``12m 05s``, no run_dir column."""
    if table.empty:
        return "no run folders"
    shown = table.drop(columns="run_dir").copy()
    shown["best"] = [f"{v:.4f}" if _is_number(v) else "" for v in shown["best"]]
    shown["best_epoch"] = [str(int(v)) if _is_number(v) else "" for v in shown["best_epoch"]]
    shown["epochs"] = [str(int(v)) if _is_number(v) else "" for v in shown["epochs"]]
    shown["train_seconds"] = [_duration(v) for v in shown["train_seconds"]]
    shown["status"] = [
        text if len(text) <= STATUS_WIDTH else text[: STATUS_WIDTH - 3] + "..." for text in shown["status"]
    ]
    shown = shown.rename(columns={"train_seconds": "train time"}).fillna("")
    return shown.to_string(index=False)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not math.isnan(float(value))


def _duration(seconds: object) -> str:
    if not _is_number(seconds):
        return ""
    minutes, rest = divmod(int(round(float(seconds))), 60)
    return f"{minutes}m {rest:02d}s" if minutes else f"{rest}s"


def resolve_run(run: str | Path, root: str | Path | None = None) -> Path:
    """A run folder from a path, or from a folder name (``p1_model_a-0123abcdef``) found once under ``root``.

    Raises:
        FileNotFoundError: neither a folder nor a run folder name under ``root``.
        ValueError: the name matches run folders in several profile folders (lists them).
    """
    path = Path(run)
    if path.is_dir():
        return path
    matches = [p for p in find_run_dirs(root) if p.name == path.name]
    if len(matches) == 1:
        return matches[0]
    where = Path(root) if root is not None else runs_dir()
    if not matches:
        raise FileNotFoundError(f"run {run} is neither a folder nor a run folder's name under {where} (see `hw1 runs`)")
    raise ValueError(f"run {run} names several run folders; give a path: {', '.join(map(str, matches))}")


def _flat(values: dict, prefix: str = "") -> dict[str, object]:
    """Nested dicts as dotted keys (``augment.flip``); lists are kept whole."""
    out: dict[str, object] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _read(path: Path) -> dict:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def _per_class(run_dir: Path, metrics: dict) -> pd.Series:
    """The best epoch's per-class IoU (segmentation, named classes) or accuracy (classification, from the
    best epoch's confusion matrix); empty where the run does not record it."""
    iou = (metrics.get("best") or {}).get("iou")
    if isinstance(iou, dict):
        from hw1lib.data.palette import CLASS_NAMES

        return pd.Series({f"IoU {k} {CLASS_NAMES[int(k)]}": v for k, v in iou.items()}, dtype=float)
    confusion = metrics.get("best_confusion")
    if confusion:
        matrix = np.asarray(confusion, dtype=float)
        counts = matrix.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy = np.where(counts > 0, matrix.diagonal() / counts, np.nan)
        return pd.Series({f"accuracy class {c}": v for c, v in enumerate(accuracy)}, dtype=float)
    return pd.Series(dtype=float)


def compare_runs(run_a: str | Path, run_b: str | Path, root: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """Two runs side by side: what differs in their parameters, their metrics, and per-class numbers.

    Returns:
        ``{"parameters": rows where the runs differ (config fields as dotted keys, experiment, profile,
        label, data fingerprints, precision), "metrics": best/final score, epochs, stop reason, training time,
        "per_class": the best epoch's per-class IoU or accuracy}``, columns named after the two run folders.
    """
    dirs = [resolve_run(run_a, root), resolve_run(run_b, root)]
    names = [d.name for d in dirs]
    if names[0] == names[1]:
        names = [f"{tag}: {d.parent.name}/{d.name}" for tag, d in zip("AB", dirs)]
    parameters, metrics, per_class = zip(*(_run_facts(run_dir) for run_dir in dirs))
    keys = list(dict.fromkeys([*parameters[0], *parameters[1]]))
    differ = [k for k in keys if parameters[0].get(k) != parameters[1].get(k)]
    table = pd.DataFrame({name: [p.get(k, "(absent)") for k in differ] for name, p in zip(names, parameters)})
    table.index = pd.Index(differ, name="parameter")
    side_by_side = pd.DataFrame(metrics, index=names).T.rename_axis("metric")
    classes = pd.concat(per_class, axis=1, keys=names) if any(len(s) for s in per_class) else pd.DataFrame()
    if not classes.empty:
        classes["B - A"] = classes[names[1]] - classes[names[0]]
        classes.index.name = "class"
    return {"parameters": table, "metrics": side_by_side, "per_class": classes}


def _run_facts(run_dir: Path) -> tuple[dict, dict, pd.Series]:
    """One run's ``(parameters as flat text, metrics, per-class numbers)`` for :func:`compare_runs`."""
    summary = summarize(RunFolder(run_dir))
    params, run_metrics = _read(run_dir / PARAMS), _read(run_dir / METRICS)
    flat = {
        "experiment": summary["experiment"],
        "profile": summary["profile"],
        "label": summary["label"],
        **{f"config.{k}": v for k, v in _flat(params.get("config") or {}).items()},
        **{f"data.{k}": v for k, v in (params.get("data") or {}).items()},
        "precision": params.get("precision"),
    }
    metric = summary["metric"]
    metrics = {
        "status": summary["status"],
        f"best val {metric}": summary["best"],
        "best epoch": summary["best_epoch"],
        f"final val {metric}": run_metrics.get(f"final_val_{metric}"),
        "epochs": summary["epochs"],
        "epochs planned": summary["epochs_planned"],
        "stop reason": run_metrics.get("stop_reason"),
        "train seconds": summary["train_seconds"],
        "finished": summary["finished"],
    }
    return {k: _text(v) for k, v in flat.items()}, metrics, _per_class(run_dir, run_metrics)


def _text(value: object) -> object:
    """Lists as their text, so two lists compare and print as one cell."""
    return str(value) if isinstance(value, list) else value


def format_comparison(tables: dict[str, pd.DataFrame]) -> str:
    """The comparison as text: parameters that differ, metrics, per-class numbers (4 decimals)."""
    parts = ["parameters that differ:"]
    parts.append(tables["parameters"].to_string() if not tables["parameters"].empty else "  (none)")
    parts += ["", "metrics:", tables["metrics"].to_string(float_format=lambda v: f"{v:.4f}")]
    if not tables["per_class"].empty:
        parts += ["", "per class (best epoch):", tables["per_class"].to_string(float_format=lambda v: f"{v:.4f}")]
    return "\n".join(parts)
