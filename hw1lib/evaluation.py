"""``hw1 evaluate``: a checkpoint's accuracy (P1) or mIoU (P2) on a labelled folder, as its run measured it.

Why the training's own path: the number must be the one the run recorded for its validation set, so this uses
the same loaders (:mod:`hw1lib.data`: labels from ``{label}_{id}.png`` names, ``{id}_sat.jpg``/``{id}_mask.png``
pairs), the same :func:`hw1lib.engine.evaluate` (task loss, prediction and ``summarize``), and the run's own
evaluation settings from its ``params.json``: batch size, memory format and precision. A checkpoint outside a
run folder is evaluated in fp32 at the default batch size.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hw1lib import engine
from hw1lib.checkpoints import load_model
from hw1lib.config import TrainConfig
from hw1lib.data.classification import load_classification_folder
from hw1lib.data.palette import SCORED_CLASSES
from hw1lib.data.segmentation import load_segmentation_folder
from hw1lib.metrics import ConfusionMatrix
from hw1lib.precision import memory_format, resolve_device
from hw1lib.run_summary import summarize
from hw1lib.runs import BEST, RunFolder
from hw1lib.tasks import build_task


def _checkpoint_and_run(checkpoint_or_run: str | Path) -> tuple[Path, RunFolder | None]:
    """``(checkpoint file, its run folder or None)`` from a run folder (its ``best.pt``) or a checkpoint file."""
    path = Path(checkpoint_or_run)
    if path.is_dir():
        if not (path / BEST).exists():
            raise FileNotFoundError(f"{path / BEST} is missing: {path} is not a run folder, or no epoch finished")
        return path / BEST, RunFolder(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: expected a checkpoint file or a run folder")
    folder = RunFolder(path.parent)
    return path, folder if folder.file("params").exists() else None


def _run_config(folder: RunFolder | None, meta: dict) -> tuple[TrainConfig, str, dict]:
    """The run's config, precision and params (the checkpoint's model with defaults outside a run folder)."""
    if folder is None:
        config = TrainConfig(
            task=meta["task"], model=meta["model"], num_classes=meta["num_classes"], model_kwargs=meta["model_kwargs"]
        )
        return config, "fp32", {}
    try:
        params = json.loads(folder.file("params").read_text())
        config = TrainConfig.from_dict(params["config"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{folder.file('params')} cannot be read as a run's parameters ({error})") from None
    return config, params.get("precision", "fp32"), params


def evaluate_checkpoint(checkpoint_or_run: str | Path, data_dir: str | Path, device: str = "auto") -> dict:
    """Evaluate a checkpoint (or a run folder's ``best.pt``) on a labelled P1 or P2 folder.

    Args:
        checkpoint_or_run: a checkpoint file, or a run folder (its ``best.pt``, its settings).
        data_dir: a labelled P1 folder (``{label}_{id}.png``) for a classifier, or a P2 folder of
            ``{id}_sat.jpg``/``{id}_mask.png`` pairs for a segmenter.
        device: ``auto``, ``cpu``, ``cuda``...

    Returns:
        ``{"task", "metric" ("acc"/"miou"), "value", "loss", "images", "per_class" (DataFrame), "miou_result"
        (P2: what :func:`hw1lib.grading.format_miou` prints), "checkpoint", "run_dir", "precision",
        "recorded" (the run's best validation score and epoch, or None), "same_folder" (whether ``data_dir`` is
        the run's validation folder)}``.

    Raises:
        FileNotFoundError, ValueError: a missing path, an unlabelled folder or one of the other problem.
    """
    checkpoint, folder = _checkpoint_and_run(checkpoint_or_run)
    device = resolve_device(device)
    model, meta = load_model(checkpoint, device)
    config, precision, params = _run_config(folder, meta)
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        precision = "fp32"
    images, targets = _labelled(config.task, data_dir)
    model = model.to(memory_format=memory_format(config.channels_last))
    task = build_task(config)
    # what fit's validation calls, with the run's batch size, precision and format, on every image (no fast dev cap)
    whole = dataclasses.replace(config, max_eval_batches=None)
    result = engine.evaluate(model, task, engine.Data(images, targets), whole, device, precision=precision)
    out = {
        "task": config.task,
        "metric": task.metric,
        "value": result[task.metric],
        "loss": result["loss"],
        "images": len(images),
        "checkpoint": checkpoint,
        "run_dir": folder.path if folder else None,
        "precision": precision,
        **_per_class(result["confusion"], config, len(images)),
        "recorded": None,
        "same_folder": False,
    }
    if folder is not None:
        row = summarize(folder)
        if row["best"] is not None and checkpoint.name == BEST:
            out["recorded"] = {"value": row["best"], "epoch": row["best_epoch"], "metric": row["metric"]}
        val = (params.get("data_folders") or {}).get("val")
        out["same_folder"] = bool(val) and Path(val).resolve() == Path(data_dir).resolve()
    return out


def _labelled(task: str, data_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels or masks)`` of a labelled folder of ``task``, through the training's loaders."""
    if task == "classification":
        data = load_classification_folder(data_dir, labelled=True)
        return data.images, data.labels
    data = load_segmentation_folder(data_dir)
    if data.masks is None:
        raise ValueError(
            f"{data_dir} has no {{id}}_mask.png masks: evaluate needs ground truth (to predict, use `hw1 segment`)"
        )
    return data.images, data.masks


def _per_class(confusion: np.ndarray, config: TrainConfig, images: int) -> dict:
    """``{"per_class": DataFrame}`` (per-class accuracy, or IoU) plus, for P2, ``"miou_result"`` in the form
    :func:`hw1lib.grading.format_miou` prints."""
    if config.task == "segmentation":
        matrix = ConfusionMatrix(config.num_classes)
        matrix.matrix = torch.from_numpy(confusion)
        miou = {**matrix.miou(SCORED_CLASSES), "images": images}
        return {"miou_result": miou, "per_class": pd.DataFrame({"iou": miou["iou"]}).rename_axis("class")}
    counts = confusion.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(counts > 0, confusion.diagonal() / counts, np.nan)
    return {"per_class": pd.DataFrame({"images": counts, "accuracy": accuracy}).rename_axis("class")}


def format_evaluation(result: dict) -> str:
    """The command's output: what was evaluated, the score, per-class numbers, and the run's recorded score."""
    from hw1lib.grading import format_miou

    name = {"acc": "accuracy", "miou": "mIoU"}[result["metric"]]
    lines = [f"checkpoint {result['checkpoint']} ({result['task']}, precision {result['precision']})"]
    if result["metric"] == "miou":
        lines.append(format_miou(result["miou_result"]))
    else:
        table = result["per_class"].copy()
        table["accuracy"] = table["accuracy"].map(lambda v: "" if np.isnan(v) else f"{v:.4f}")
        lines += ["per-class accuracy:", table.to_string()]
    lines.append(f"\n{name}: {result['value']:.6f} on {result['images']} images (loss {result['loss']:.6f})")
    recorded = result["recorded"]
    if recorded is not None:
        where = "this folder" if result["same_folder"] else "its own validation folder (not this one)"
        lines.append(
            f"the run recorded best val {recorded['metric']} {recorded['value']:.6f} at epoch {recorded['epoch']} "
            f"on {where}"
        )
    return "\n".join(lines)
