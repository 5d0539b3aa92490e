"""The data-path comparison: one epoch of an experiment through the project's data path and the conventional one.

Both sides train the same seeded model with the same optimiser, loss and batch size; a pass is set up once
(:func:`_setup_pipeline`) and then timed as a training pass and as a data-only pass (the same data work
without the model). Why data-only too: it isolates what the data path itself costs, which a training pass
hides behind the model's compute on a fast device.
"""

from __future__ import annotations

import dataclasses
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.bench.conventional import (
    CONVENTIONAL_WORKERS,
    conventional_loader,
    conventional_pass,
    data_only_conventional,
    train_side,
)
from benchmarks.bench.plan import ENGINE, Plan, Setting, bench_batch
from benchmarks.bench.timing import load_average, sync, time_interleaved
from hw1lib.config import TrainConfig, get_config
from hw1lib.data.classification import list_pngs, load_classification_folder
from hw1lib.data.segmentation import load_segmentation_folder, scan_pairs
from hw1lib.engine import Data, Training, build_training, epoch_batches, train_one_epoch
from hw1lib.precision import resolve_precision, to_input


def _data_only_project(
    task,
    images: torch.Tensor,
    targets: torch.Tensor,
    config: TrainConfig,
    device: torch.device,
    max_batches: int | None,
) -> int:
    """The engine's data work for one epoch (index, to float on the device, augment), without the model."""
    generator = torch.Generator().manual_seed(0)
    seen = 0
    for index in epoch_batches(len(images), config.batch_size, generator, max_batches):
        x = to_input(images[index], device)
        y = targets[index].to(device, non_blocking=True)
        x, y = task.augment(x, y, generator)
        seen += len(x)
    return seen


def _load_project_data(
    config: TrainConfig, folder: Path, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Decode the folder into a fresh cache, load it again from the cache, and place it as the engine does."""
    cache = Path(tempfile.mkdtemp(prefix="hw1-bench-cache-"))
    load = (
        (lambda: load_classification_folder(folder, labelled=True, cache=cache))
        if config.task == "classification"
        else (lambda: load_segmentation_folder(folder, cache=cache))
    )
    try:
        tic = time.perf_counter()
        load()
        decode = time.perf_counter() - tic
        tic = time.perf_counter()
        data = load()
        cache_load = time.perf_counter() - tic
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    targets = data.labels if config.task == "classification" else data.masks
    tic = time.perf_counter()
    images, targets = data.images.to(device), targets.to(device)  # the engine moves a data set that fits, once
    sync(device)
    one_off = {
        "decode_seconds": decode,
        "cache_load_seconds": cache_load,
        "to_device_seconds": time.perf_counter() - tic,
    }
    return images, targets, one_off


def images_per_pass(n: int, batch_size: int, max_batches: int | None, drops_single: bool) -> int:
    """Images one pass trains on: ``n``, or ``max_batches`` full batches.

    ``drops_single``: the engine's epoch, as :func:`hw1lib.engine.epoch_batches` makes it (a last batch of one
    is dropped); otherwise a ``DataLoader``'s, which keeps every image.
    """
    if drops_single:
        return sum(len(batch) for batch in epoch_batches(n, batch_size, None, max_batches))
    return n if max_batches is None else min(n, max_batches * batch_size)


def _project_passes(training: Training, config: TrainConfig, folder: Path, plan: Plan, max_batches: int | None):
    """(warm-up, training pass, data-only pass, images per pass, one-off costs) of the project's data path."""
    task, device = training.task, training.device
    images, targets, one_off = _load_project_data(config, folder, device)
    epochs = iter(range(1, 1_000_000))

    def train_pass(batches: int | None = max_batches) -> None:
        bounded = dataclasses.replace(config, max_train_batches=batches)
        train_one_epoch(training.model, training, Data(images, targets), bounded, next(epochs), progress=False)

    def data_pass() -> None:
        _data_only_project(task, images, targets, config, device, max_batches)

    per_pass = images_per_pass(len(images), config.batch_size, max_batches, drops_single=True)
    return lambda: train_pass(plan.warmup_steps), train_pass, data_pass, per_pass, one_off


def _conventional_passes(training: Training, config: TrainConfig, folder: Path, plan: Plan, max_batches: int | None):
    """(warm-up, training pass, data-only pass, images per pass, one-off costs) of the conventional data path."""
    loader = conventional_loader(config, folder, training.device)

    def train_pass(batches: int | None = max_batches) -> None:
        conventional_pass(training, loader, config, batches)

    def data_pass() -> None:
        data_only_conventional(loader, training.device, max_batches)

    per_pass = images_per_pass(len(loader.dataset), config.batch_size, max_batches, drops_single=False)
    return lambda: train_pass(plan.warmup_steps), train_pass, data_pass, per_pass, {}


#: the two sides of a comparison, in the order of its rows
PIPELINES = {"conventional": _conventional_passes, "project": _project_passes}


def _folder_size(config: TrainConfig, folder: Path) -> int:
    """Training items in ``folder`` (the length of the learning-rate schedule's epoch; speed does not depend on it)."""
    return len(list_pngs(folder)) if config.task == "classification" else len(scan_pairs(folder)[1])


def _setup_pipeline(
    pipeline: str,
    experiment: str,
    folder: Path,
    device: torch.device,
    plan: Plan,
    max_batches: int | None,
    lever: Setting,
) -> dict:
    """A seeded model, AdamW and the pipeline's passes, ready to time; ``row`` holds what is known before timing."""
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}; valid: {sorted(PIPELINES)}")
    config = get_config(experiment, plan.profile, pretrained=False, keep_mask_ids=[])
    side = train_side(config, folder)
    config = dataclasses.replace(config, batch_size=bench_batch(config.batch_size, side, device, plan))
    setting = lever.resolve(config)
    if setting.compile:
        raise ValueError(f"lever {lever.name!r}: the data-path comparison runs eager models only")
    config = dataclasses.replace(config, cpu_bf16=setting.cpu_bf16, channels_last=setting.channels_last)
    training = build_training(config, device, _folder_size(config, folder))
    warm, train_pass, data_pass, per_pass, one_off = PIPELINES[pipeline](training, config, folder, plan, max_batches)
    row = {
        "experiment": experiment,
        "pipeline": pipeline,
        "lever": lever.name,
        "model": config.model,
        "precision": resolve_precision(config, device),
        "channels_last": config.channels_last,
        "folder": str(folder),
        "images_per_pass": per_pass,
        "whole_epoch": max_batches is None,
        "batch_size": config.batch_size,
        "image_side": side,
        "workers": CONVENTIONAL_WORKERS if pipeline == "conventional" else 0,
        "one_off": one_off,
    }
    return {"row": row, "warm": warm, "train": train_pass, "data": data_pass}


def _finish_row(row: dict, train: list[float], data_only: list[float]) -> dict:
    """A pipeline's row with its timings: medians of the passes, and images/s from them."""
    n = row["images_per_pass"]
    return {
        **row,
        "epoch_seconds": statistics.median(train),
        "epoch_seconds_all": train,
        "train_images_per_s": n / statistics.median(train),
        "data_only_seconds": statistics.median(data_only),
        "data_only_images_per_s": n / statistics.median(data_only),
        "load_average_after": load_average(),
    }


def compare_data_paths(
    experiment: str,
    folder: Path,
    device: torch.device,
    plan: Plan,
    max_batches: int | None = None,
    lever: Setting = ENGINE,
    conventional_lever: Setting | None = None,
) -> dict:
    """One epoch (or ``max_batches`` batches) of ``experiment`` through the conventional and the project data path.

    Both pipelines train the same seeded model with the same optimiser, loss and batch size, in the
    engine's memory format and precision or in those of ``lever`` (a :class:`Setting`);
    ``conventional_lever`` gives the conventional pipeline a setting of its own (``NCHW_FP32``: the
    loop as usually written, against the engine as it trains). Each gets an
    untimed warm-up of ``plan.warmup_steps`` batches; then ``plan.epoch_repeats`` timed passes each,
    alternating between the pipelines, and the medians are reported. A conventional pass includes its
    DataLoader's worker start-up (once per pass, as in every epoch of such a loop); the project's one-off
    costs (decoding, cache load, moving to the device) are reported apart, in ``one_off``.

    Returns:
        ``{"rows": [conventional, project], "ratios": {"train_speedup", "data_only_speedup"}}``, where a
        speed-up is the project's images/s over the conventional one's (higher = the project is faster).
    """
    levers = {"conventional": conventional_lever or lever, "project": lever}
    setups = {p: _setup_pipeline(p, experiment, folder, device, plan, max_batches, levers[p]) for p in PIPELINES}
    if plan.warmup_steps:
        for setup in setups.values():
            setup["warm"]()
    train = time_interleaved({p: s["train"] for p, s in setups.items()}, device, 0, plan.epoch_repeats)
    data = time_interleaved(
        {p: s["data"] for p, s in setups.items()}, device, min(1, plan.warmup_steps), plan.epoch_repeats
    )
    rows = [_finish_row(setups[p]["row"], train[p], data[p]) for p in PIPELINES]
    conventional, project = rows
    ratios = {
        "train_speedup": project["train_images_per_s"] / conventional["train_images_per_s"],
        "data_only_speedup": project["data_only_images_per_s"] / conventional["data_only_images_per_s"],
    }
    return {
        "experiment": experiment,
        "lever": lever.name,
        "conventional_lever": levers["conventional"].name,
        "rows": rows,
        "ratios": ratios,
    }
