"""The grader's interfaces: classify a folder to a CSV, segment a folder to palette PNGs, score masks.

Formats (the course's grader interfaces): ``classify`` writes ``filename,label`` rows (basenames) for every ``*.png``;
``segment`` writes ``<stem>.png`` in the exact palette, at the input's size, for every ``*.jpg``; ``miou``
scores a prediction folder against ground-truth masks with the official formula. Outputs are written
through temporary files and renames, so a failure never leaves a half-written CSV or mask behind.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from hw1lib.checkpoints import load_model
from hw1lib.data.classification import load_classification_folder
from hw1lib.data.images import list_images, read_rgb
from hw1lib.data.palette import CLASS_NAMES, SCORED_CLASSES, decode_mask, encode_mask
from hw1lib.io import TMP_MARK, check_output_dir, check_output_file, write_text
from hw1lib.metrics import ConfusionMatrix
from hw1lib.precision import autocast, resolve_device, resolve_precision, to_input
from hw1lib.runs import latest_checkpoint


def natural_key(name: str) -> list:
    """Sort key that orders ``2.png`` before ``10.png`` (digit runs compared as numbers)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


@torch.no_grad()
def classify_folder(
    image_dir: str | Path,
    out_csv: str | Path,
    checkpoint: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 256,
) -> int:
    """Predict a label for every ``*.png`` in ``image_dir`` and write ``filename,label`` rows.

    Every image is decoded and classified before the CSV is written (atomically), so a bad image leaves
    an existing CSV as it was. Rows follow the natural order of the file names (``2.png`` before ``10.png``).

    Returns:
        the number of rows written.
    """
    check_output_file(out_csv, "CSV file")
    device = resolve_device(device)
    model, _ = load_model(checkpoint or latest_checkpoint("classification"), device, task="classification")
    data = load_classification_folder(image_dir, labelled=False, cache=False)
    labels = []
    for start in range(0, len(data), batch_size):
        with autocast(device, resolve_precision(None, device)):  # the policy training and validation use
            logits = model(to_input(data.images[start : start + batch_size], device))
        labels += logits.argmax(1).tolist()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["filename", "label"])
    writer.writerows(sorted(zip(data.names, labels), key=lambda row: natural_key(row[0])))
    write_text(out_csv, buffer.getvalue())
    return len(labels)


def _pad_to_multiple(x: torch.Tensor, multiple: int = 32) -> torch.Tensor:
    """Pad (N, C, H, W) at the bottom/right to sides divisible by ``multiple`` (reflect where possible)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


@torch.no_grad()
def predict_mask(model: torch.nn.Module, image: np.ndarray, device: torch.device) -> np.ndarray:
    """(H, W, 3) uint8 image -> (H, W) uint8 class map at the image's own size (any size)."""
    x = to_input(torch.from_numpy(image).permute(2, 0, 1)[None], device)
    h, w = x.shape[-2:]
    with autocast(device, resolve_precision(None, device)):  # the policy training and validation use
        logits = model(_pad_to_multiple(x))["out"][..., :h, :w]
    return logits.argmax(1)[0].to(torch.uint8).cpu().numpy()


def segment_folder(
    image_dir: str | Path, out_dir: str | Path, checkpoint: str | Path | None = None, device: str = "auto"
) -> int:
    """Write ``out_dir/<stem>.png`` (exact palette, input size) for every ``*.jpg`` in ``image_dir``.

    All-or-nothing: every image is decoded and segmented first, the masks are written into a staging
    folder beside ``out_dir`` and only then moved into it, so a bad image (truncated, unreadable) leaves
    ``out_dir`` exactly as it was.

    Returns:
        the number of masks written.
    """
    image_dir, out_dir = Path(image_dir), Path(out_dir)
    files = list_images(image_dir, (".jpg", ".jpeg"))
    check_output_dir(out_dir)
    device = resolve_device(device)
    model, _ = load_model(checkpoint or latest_checkpoint("segmentation"), device, task="segmentation")
    masks = {f"{path.stem}.png": encode_mask(predict_mask(model, read_rgb(path), device)) for path in files}
    staging = out_dir.parent / f".{out_dir.name}{TMP_MARK}{os.getpid()}"
    try:
        staging.mkdir(parents=True)
        for name, rgb in masks.items():
            Image.fromarray(rgb).save(staging / name, format="PNG")
        if not out_dir.exists():
            staging.rename(out_dir)
        else:
            for name in masks:
                os.replace(staging / name, out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(masks)


def masks_by_id(folder: Path, what: str) -> dict[str, Path]:
    """Map image id -> mask file for every ``*.png`` (any case) of ``folder``.

    Accepts ``{id}.png``, ``{id}_mask.png`` and ``{id}_sat.png`` (what segmenters name their outputs), so
    ground truth named like the validation set (``0013_mask.png``) or like a test set (``0013.png``) pairs
    with predictions named either way.

    Raises:
        FileNotFoundError: the folder is missing or holds no PNG.
        ValueError: two files for one id.
    """
    found: dict[str, Path] = {}
    for path in list_images(folder, (".png",)):
        image_id = path.stem
        for suffix in ("_sat", "_mask"):
            image_id = image_id.removesuffix(suffix)
        if image_id in found:
            raise ValueError(f"two {what} masks for id {image_id} in {folder}: {found[image_id].name} and {path.name}")
        found[image_id] = path
    return found


def score_folders(gt_dir: str | Path, pred_dir: str | Path) -> dict:
    """The official mIoU of a prediction folder against ground-truth masks, paired by id (not by sorted order).

    Equals the course's ``mean_iou_evaluate.py`` wherever that script gives a number; where it would crash or
    silently mis-pair (a missing, extra or mis-sized prediction), this refuses with a message instead.

    Raises:
        FileNotFoundError: a folder is missing or holds no PNG masks.
        ValueError: a missing or extra prediction, or a size mismatch.
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    truths = masks_by_id(gt_dir, "ground-truth")
    predictions = masks_by_id(pred_dir, "predicted")
    missing, extra = sorted(set(truths) - set(predictions)), sorted(set(predictions) - set(truths))
    if missing or extra:
        raise ValueError(
            f"predictions in {pred_dir} do not match the ground truth in {gt_dir}: missing {len(missing)} "
            f"{missing[:10]}, extra {len(extra)} {[predictions[i].name for i in extra[:10]]}"
        )
    matrix = ConfusionMatrix(len(CLASS_NAMES))
    for image_id, truth_file in truths.items():
        truth, prediction = decode_mask(read_rgb(truth_file)), decode_mask(read_rgb(predictions[image_id]))
        if truth.shape != prediction.shape:
            raise ValueError(
                f"{predictions[image_id]} is {prediction.shape[1]}x{prediction.shape[0]}, but its ground "
                f"truth {truth_file.name} is {truth.shape[1]}x{truth.shape[0]}"
            )
        matrix.update(torch.from_numpy(prediction), torch.from_numpy(truth))
    return {**matrix.miou(SCORED_CLASSES), "images": len(truths)}


def format_miou(result: dict) -> str:
    """Per-class IoU and mIoU in the official script's layout, with class names and absent classes marked."""
    lines = []
    for c in SCORED_CLASSES:
        value = result["iou"][c]
        text = (
            "absent from prediction and ground truth (official script: nan); excluded from the mean"
            if value is None
            else f"{value:1.5f}"
        )
        lines.append(f"class #{c} : {text}  ({CLASS_NAMES[c]})")
    scored = len(SCORED_CLASSES) - len(result["absent_classes"])
    lines.append(f"\nmean_iou: {result['miou']:f}  (over {scored} classes, {result['images']} images)")
    return "\n".join(lines)
