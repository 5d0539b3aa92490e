"""The grader's interfaces: classify a folder to a CSV, segment a folder to palette PNGs, score masks.

Formats (the course's grader interfaces): ``classify`` writes ``filename,label`` rows (basenames) for every ``*.png``;
``segment`` writes ``<stem>.png`` in the exact palette, at the input's size, for every ``*.jpg``; ``miou``
scores a prediction folder against ground-truth masks with the official formula. Outputs are written
through temporary files and renames, so a failure never leaves a half-written CSV or mask behind.

Large images are segmented in tiles (:func:`predict_mask`): sliding windows of :data:`TILE` pixels with
:data:`TILE_OVERLAP` pixels of overlap, the class scores averaged where windows overlap (the "slide" inference
of segmentation toolboxes such as MMSegmentation), so the model's memory is bounded by one tile whatever the
image's size: a 2448x2448 satellite tile segments within 4 GB on the CPU.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from hw1lib.checkpoints import load_model
from hw1lib.data.classification import load_classification_folder
from hw1lib.data.images import check_header, image_mode, list_images, read_rgb
from hw1lib.data.palette import CLASS_NAMES, SCORED_CLASSES, decode_mask, encode_mask
from hw1lib.files import TMP_MARK, check_output_dir, check_output_file, disk_full, write_text
from hw1lib.grader_checkpoint import Choice, checkpoint_choice
from hw1lib.metrics import ConfusionMatrix
from hw1lib.precision import autocast, resolve_device, resolve_precision, to_input


def natural_key(name: str) -> list:
    """Sort key that orders ``2.png`` before ``10.png`` (digit runs compared as numbers)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def say_checkpoint(choice: Choice) -> None:
    """Name the checkpoint used, in one line on stderr, so that a grade never comes from an unnamed model.

    Said once the outputs are written: a failure stays one line (the error), and a failure about the
    checkpoint itself names the file anyway.
    """
    print(f"hw1: {choice.task} checkpoint {choice.describe()}", file=sys.stderr)


@torch.inference_mode()
def classify_folder(
    image_dir: str | Path,
    out_csv: str | Path,
    checkpoint: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 256,
    run: str | Path | None = None,
) -> int:
    """Predict a label for every ``*.png`` in ``image_dir`` and write ``filename,label`` rows.

    Every image is decoded and classified before the CSV is written (atomically), so a bad image leaves
    an existing CSV as it was. Rows follow the natural order of the file names (``2.png`` before ``10.png``).

    Returns:
        the number of rows written.
    """
    check_output_file(out_csv, "CSV file")
    device = resolve_device(device)
    choice = checkpoint_choice("classification", checkpoint, run)  # the given file or run, or the grader's rule
    model, _ = load_model(choice.path, device, task="classification")
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
    say_checkpoint(choice)
    return len(labels)


def _pad_to_multiple(x: torch.Tensor, multiple: int = 32) -> torch.Tensor:
    """Pad (N, C, H, W) at the bottom/right to sides divisible by ``multiple`` (reflect where possible)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


#: side of the windows large images are segmented in (the training crops' size) and their overlap
TILE = 512
TILE_OVERLAP = 128


def _model_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits (N, C, h, w) of a (N, 3, h, w) input of any size (padded to a multiple of 32 and cropped back)."""
    h, w = x.shape[-2:]
    with autocast(x.device, resolve_precision(None, x.device)):  # the policy training and validation use
        return model(_pad_to_multiple(x))["out"][..., :h, :w]


def _starts(length: int, tile: int, stride: int) -> list[int]:
    """Window starts covering ``0..length`` with windows of ``tile`` every ``stride``, the last one flush with
    the end (as MMSegmentation's slide inference places them)."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


@torch.inference_mode()
def predict_mask(
    model: torch.nn.Module, image: np.ndarray, device: torch.device, tile: int = TILE, overlap: int = TILE_OVERLAP
) -> np.ndarray:
    """(H, W, 3) uint8 image -> (H, W) uint8 class map at the image's own size (any size).

    An image no larger than ``tile`` on either side is segmented whole; a larger one in windows of ``tile``
    pixels overlapping by ``overlap``, the logits summed on the CPU and divided by how many windows covered each
    pixel. Memory: one window's activations, plus the image's scores (C x H x W float32: 168 MB at 2448x2448).
    """
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None]
    h, w = pixels.shape[-2:]
    if h <= tile and w <= tile:
        return _model_logits(model, to_input(pixels, device)).argmax(1)[0].to(torch.uint8).cpu().numpy()
    stride = tile - overlap
    total: torch.Tensor | None = None
    count = torch.zeros((h, w), dtype=torch.float32)
    for top in _starts(h, tile, stride):
        for left in _starts(w, tile, stride):
            window = pixels[..., top : top + tile, left : left + tile]
            logits = _model_logits(model, to_input(window, device))[0].float().cpu()
            if total is None:
                total = torch.zeros((logits.shape[0], h, w), dtype=torch.float32)
            th, tw = logits.shape[-2:]
            total[:, top : top + th, left : left + tw] += logits
            count[top : top + th, left : left + tw] += 1
    return total.div_(count).argmax(0).to(torch.uint8).numpy()


#: the staging folder ``segment`` writes into inside an existing output folder: ``.hw1-segment.tmp<pid>``
STAGING = f".hw1-segment{TMP_MARK}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_staging(out_dir: Path) -> list[Path]:
    """Remove the staging folders a killed ``segment`` left (inside ``out_dir``, or beside it when it did not
    exist yet), those of processes no longer alive; return them."""
    removed = []
    candidates = [p for p in out_dir.iterdir() if p.name.startswith(STAGING)] if out_dir.is_dir() else []
    if out_dir.parent.is_dir():  # names compared as text: a folder name may hold glob characters
        candidates += [p for p in out_dir.parent.iterdir() if p.name.startswith(f".{out_dir.name}{TMP_MARK}")]
    for folder in candidates:
        pid = folder.name.rsplit(TMP_MARK, 1)[-1]
        if folder.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _created_parents(folder: Path) -> list[Path]:
    """The missing ancestors of ``folder`` (itself excluded), outermost first: what a failure must remove again."""
    missing = []
    parent = folder.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    return missing[::-1]


def write_masks(out_dir: Path, masks: dict[str, np.ndarray]) -> None:
    """Write ``{name: RGB mask}`` into ``out_dir`` all or nothing, staging on ``out_dir``'s own file system.

    An existing ``out_dir`` (a mount point, a container volume such as ``/output``) gets a hidden staging
    folder inside it, from which each mask is renamed into place: a rename never crosses file systems. A new
    ``out_dir`` is staged beside it, in the folder that will hold it, and renamed as a whole. On any failure the
    staging folder is removed, and so is every folder this call created: ``out_dir`` is exactly as before.
    """
    if out_dir.is_dir():
        in_the_way = [n for n in masks if (out_dir / n).exists() and not (out_dir / n).is_file()]
        if in_the_way:
            raise ValueError(f"{out_dir / in_the_way[0]} is not a regular file; expected a mask file to replace")
        staging, created = out_dir / f"{STAGING}{os.getpid()}", []
    else:
        staging, created = out_dir.parent / f".{out_dir.name}{TMP_MARK}{os.getpid()}", _created_parents(out_dir)
    try:
        staging.mkdir(parents=True)
        for name, rgb in masks.items():
            Image.fromarray(rgb).save(staging / name, format="PNG")
        if out_dir.is_dir():
            for name in masks:
                os.replace(staging / name, out_dir / name)
        else:
            staging.rename(out_dir)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(created):
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(out_dir) from None
        raise
    shutil.rmtree(staging, ignore_errors=True)


def segment_folder(
    image_dir: str | Path,
    out_dir: str | Path,
    checkpoint: str | Path | None = None,
    device: str = "auto",
    run: str | Path | None = None,
) -> int:
    """Write ``out_dir/<stem>.png`` (exact palette, input size) for every ``*.jpg`` in ``image_dir``.

    All-or-nothing: every image is decoded and segmented first (large ones in tiles: :func:`predict_mask`), then
    :func:`write_masks` stages them on ``out_dir``'s file system and moves them in, so a bad image (truncated,
    unreadable, too large) leaves ``out_dir`` exactly as it was. A staging folder a killed run left is removed.

    Returns:
        the number of masks written.
    """
    image_dir, out_dir = Path(image_dir), Path(out_dir)
    files = list_images(image_dir, (".jpg", ".jpeg"))  # refuses 0001.jpg beside 0001.JPEG: one mask name
    check_output_dir(out_dir)
    for path in files:  # headers only: a huge or foreign file is refused before the model is even built
        check_header(path)
    remove_stale_staging(out_dir)
    device = resolve_device(device)
    choice = checkpoint_choice("segmentation", checkpoint, run)  # the given file or run, or the grader's rule
    model, _ = load_model(choice.path, device, task="segmentation")
    masks = {f"{path.stem}.png": encode_mask(predict_mask(model, read_rgb(path), device)) for path in files}
    write_masks(out_dir, masks)
    say_checkpoint(choice)
    return len(masks)


#: Pillow modes of one channel: class indices or grey, never the palette's colours
_SINGLE_CHANNEL = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def read_colour_mask(path: Path, class_indices: bool = False) -> np.ndarray:
    """Decode a mask in the palette's colours to a class map, refusing single-channel files unless asked.

    Why: a mask of class indices (0..6) or a grey rendering would be decoded as colours (all near black:
    "urban" nowhere, "unknown" everywhere) and scored silently near 0; the official script crashes on them.

    Args:
        path: the mask file.
        class_indices: read a single-channel mask as class indices 0..6 (``miou --class-indices``); an RGB mask
            is still read as colours.

    Raises:
        ValueError: a single-channel mask (without ``class_indices``), or one with values above the last class,
            naming the file, what was found and what is expected.
    """
    mode = image_mode(path)
    if mode not in _SINGLE_CHANNEL:
        return decode_mask(read_rgb(path))
    if not class_indices:
        raise ValueError(
            f"{path}: a single-channel ({mode}) mask, e.g. class indices or grey; expected an RGB mask in the "
            f"palette's colours (what `hw1 segment` writes and the ground truth uses, e.g. (0, 255, 255) for urban), "
            "or pass --class-indices to read single-channel masks as class indices"
        )
    with Image.open(path) as image:
        indices = np.asarray(image.getchannel(0) if mode == "LA" else image)
    if indices.max(initial=0) >= len(CLASS_NAMES) or indices.min(initial=0) < 0:
        raise ValueError(
            f"{path}: class indices must lie in 0..{len(CLASS_NAMES) - 1}, found {indices.min()}..{indices.max()}; "
            "is it a grey rendering rather than class indices?"
        )
    return indices.astype(np.uint8)


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


def score_folders(gt_dir: str | Path, pred_dir: str | Path, class_indices: bool = False) -> dict:
    """The official mIoU of a prediction folder against ground-truth masks, paired by id (not by sorted order).

    Equals the course's ``mean_iou_evaluate.py`` wherever that script gives a number; where it would crash or
    silently mis-pair (a missing, extra or mis-sized prediction), this refuses with a message instead.

    Raises:
        FileNotFoundError: a folder is missing or holds no PNG masks.
        ValueError: a missing or extra prediction, a size mismatch, or a single-channel mask (class indices or
            grey, not the palette's RGB colours) unless ``class_indices`` (then read as class indices 0..6).
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
        truth = read_colour_mask(truth_file, class_indices)
        prediction = read_colour_mask(predictions[image_id], class_indices)
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
