"""``fit``: train a run, or reuse a finished one, or resume an interrupted one, in its run folder.

The loops themselves (``train_one_epoch``, ``evaluate``) are :mod:`hw1lib.engine`'s; this module decides what to
train, keeps the early-stopping state, and writes each epoch's files through :class:`hw1lib.runs.RunFolder`:
``last.pt`` (an interruption at any point leaves the last saved complete epoch, and a rerun continues from it,
exactly), ``best.pt``, snapshots and kept masks, ``history.csv``, TensorBoard events, and ``metrics.json`` at the
end.
Under torchrun (:mod:`hw1lib.distributed`) rank 0 alone decides on reuse and resume and writes.

On a GPU (:mod:`hw1lib.memory`): a recipe whose batch does not fit the free memory trains with gradient
accumulation (``accumulation_steps`` in the run's config, so its name says so; the global batch is the
recipe's), and the training data goes on the GPU only when it fits beside the model, else in pinned host
memory. ``cudnn.benchmark`` is on while training only. ``last.pt`` is written after every epoch while it is
cheap, and at most once per :data:`LAST_SAVE_RATIO` times its own write time when it is not (FCN32s with AdamW's
state is over a gigabyte; the write times are in ``benchmarks/RESULTS.md``), and always after the last epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from hw1lib import distributed, engine
from hw1lib.checkpoints import load_state_dict_checked, model_meta
from hw1lib.config import TrainConfig
from hw1lib.environment import environment_info
from hw1lib.interrupts import TrainingInterrupted, interrupted, sigterm_raises
from hw1lib.locks import run_lock
from hw1lib.memory import MemoryPlan, plan_for_device
from hw1lib.precision import check_precision, resolve_device, resolve_precision
from hw1lib.runs import RunFolder


class LabelledSet(Protocol):
    """A labelled data set as ``fit`` takes it (:class:`hw1lib.data.ClassificationSet`,
    :class:`hw1lib.data.SegmentationSet`): decoded ``images`` (uint8 N, 3, H, W), a content ``key`` (part of the
    run's name) and its ``folder``; besides, its targets as ``labels`` (N,) or ``masks`` (N, H, W), and for a
    segmentation set the ``ids`` that ``keep_mask_ids`` name."""

    images: torch.Tensor
    key: str
    folder: Path | str


#: ``on_epoch_end(epoch, row)``: called on every rank after each epoch's files are written (``row``: history.csv's)
EpochHook = Callable[[int, dict], None]


def fit(
    config: TrainConfig,
    train: LabelledSet,
    val: LabelledSet,
    out_root: str | Path,
    name: str,
    *,
    device: str = "auto",
    force: bool = False,
    progress: bool = True,
    on_epoch_end: EpochHook | None = None,
    recipe: dict | None = None,
) -> dict:
    """Train (or reuse, or resume) a run and return its metrics.

    Args:
        config: the run's configuration.
        train, val: the labelled data sets; ``val`` carries ``ids`` (segmentation) for ``keep_mask_ids``.
        out_root: folder that holds run folders.
        name: experiment name (``p1_model_a``); the run folder is ``out_root/name-<hash of params>``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        force: train again from epoch 1 in the same run folder even if it is finished or interrupted. It ignores
            ``metrics.json`` (no reuse) and ``last.pt`` (no resume), rewrites ``params.json`` at once, and as the
            new training goes overwrites ``last.pt``, ``best.pt`` (at epoch 1, then at each improvement),
            ``history.csv``, the snapshots and kept masks of the epochs it trains, and hides the old TensorBoard
            events (``purge_step``); ``metrics.json`` is rewritten at the end. Nothing is deleted: snapshots and
            masks of epochs the new training does not reach stay (and ``metrics.json`` lists those snapshots),
            ``embeddings.npz`` stays, and an interrupted forced training leaves the old ``metrics.json``, so
            the next call without ``force`` reuses the folder as finished.
        progress: show tqdm bars.
        on_epoch_end: optional ``callback(epoch, row)`` after each epoch's files are written, on every rank
            (tests use it to interrupt a run at a known point).
        recipe: how the run was asked for (``{"experiment", "profile", "overrides", "fast_dev_run", "label"}``),
            recorded in ``params.json`` but not hashed (see :func:`hw1lib.config.recipe_record`).

    Returns:
        the content of ``metrics.json`` plus ``"run_dir"``, ``"reused"`` (True when nothing was trained),
        ``"resumed_from_epoch"`` (the complete epoch an interrupted run continued from; 0 when it started at
        epoch 1 or was reused) and ``"notes"`` (what was recovered from, e.g. an unreadable ``last.pt``); under
        several processes, rank 0's on every rank (rank 0 alone decides on reuse and resume, and writes).

    Raises:
        hw1lib.locks.RunBusyError: another process is training the same run folder (its lock is held for the
            whole call: never two writers).
        hw1lib.interrupts.TrainingInterrupted: Ctrl-C or SIGTERM; says after which complete epoch, and that the
            same call resumes from there.
    """
    device = distributed.local_device(resolve_device(device))
    check_precision(config, device)
    # rank 0's plan on every rank: one decision (and one run name) whatever each GPU has free
    plan = distributed.from_main(
        plan_for_device(
            config, resolve_precision(config, device), device, [train.images, _targets(train)], distributed.world_size()
        )
        if distributed.is_main()
        else None
    )
    config = _with_accumulation(config, plan)
    # the resolved precision is part of the name: "cpu_bf16" trains in bf16 on one CPU and in fp32 on another
    params = {
        "name": name,
        "config": config.to_dict(),
        "data": {"train": train.key, "val": val.key},
        "precision": resolve_precision(config, device),
    }
    folder = RunFolder.for_params(out_root, name, params)
    main = distributed.is_main()
    with run_lock(folder.path) if main else nullcontext():  # rank 0 writes: it alone holds the lock
        if distributed.from_main(main and folder.is_finished()) and not force:
            reused = (
                {**folder.read_metrics(), "run_dir": str(folder.path), "reused": True, "notes": []} if main else None
            )
            result = distributed.from_main({**reused, "resumed_from_epoch": 0} if main else None)
        else:
            distributed.check_batch_size(config.batch_size)
            if main:  # how many processes trained is recorded, not hashed: any world size continues the same run
                folders = {"train": str(getattr(train, "folder", "")), "val": str(getattr(val, "folder", ""))}
                folder.start(
                    {
                        **params,
                        "data_folders": folders,
                        "environment": environment_info(device),
                        **distributed.describe(),
                        **({"recipe": recipe} if recipe is not None else {}),
                    }
                )
            run = _Run(config, folder, device, plan, force, progress and main, on_epoch_end)
            one_process = distributed.launched_world_size() <= 1  # under torchrun, SIGTERM stays torchrun's
            try:
                with sigterm_raises() if one_process else nullcontext(), cudnn_benchmark(device):
                    result = _train(run, train, val)
            except KeyboardInterrupt as error:
                if isinstance(error, TrainingInterrupted):
                    raise
                raise interrupted(error, run.saved_epoch, config.epochs) from None
    return distributed.from_main(result)


@contextlib.contextmanager
def cudnn_benchmark(device: torch.device):
    """``cudnn.benchmark`` on while training on CUDA, the caller's setting restored afterwards (else inference in a
    notebook after ``fit`` would re-tune cuDNN for every new image size)."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = previous or device.type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def _with_accumulation(config: TrainConfig, plan: MemoryPlan | None) -> TrainConfig:
    """``config`` with the micro-batches ``plan`` chose (it is then part of the run's name); a warning when even
    micro-batches of 2 exceed the GPU's free memory."""
    if plan is None:
        return config
    say = print if distributed.is_main() else (lambda *_: None)
    if not plan.fits:
        say(
            f"warning: {config.model} needs about {plan.peak_bytes / 2**30:.1f} GiB at micro-batches of "
            f"{plan.micro_batch}, the GPU has {plan.free_bytes / 2**30:.1f} GiB free: it may run out of memory"
        )
    if plan.accumulation_steps != config.accumulation_steps:
        say(
            f"{config.model}: batch {config.batch_size} does not fit in {plan.free_bytes / 2**30:.1f} GiB free; "
            f"training it as {plan.accumulation_steps} micro-batches of {plan.micro_batch} (gradient accumulation)"
        )
        config = dataclasses.replace(config, accumulation_steps=plan.accumulation_steps)
    return config


def _targets(data: LabelledSet) -> torch.Tensor:
    targets = getattr(data, "labels", None)
    if targets is None:
        targets = getattr(data, "masks", None)
    if targets is None:
        raise ValueError(
            f"{getattr(data, 'folder', 'data set')} has no labels or masks: it cannot be trained or evaluated on"
        )
    return targets


def _fresh_state() -> dict:
    return {"epoch": 0, "history": [], "best": None, "bad_epochs": 0, "train_seconds": 0.0}


@dataclass
class _Run:
    """One call's training, as ``fit`` decided it: what :func:`_train` needs besides the data."""

    config: TrainConfig  # with the micro-batches the memory plan chose
    folder: RunFolder
    device: torch.device
    plan: MemoryPlan | None  # None off CUDA
    force: bool
    progress: bool
    on_epoch_end: EpochHook | None
    saved_epoch: int = 0  # the last complete epoch on disk: what an interruption message reports


@dataclass
class _Trained:
    """The training as it goes: what :func:`_epoch_files` and :func:`_finish` read and update."""

    training: engine.Training
    meta: dict  # the checkpoints' model description (hw1lib.checkpoints.model_meta)
    state: dict  # epoch, history, best, bad_epochs, train_seconds: what last.pt holds besides the weights


#: ``last.pt`` may take at most 1 / this of the training time when its write takes longer than LAST_CHEAP_S
LAST_SAVE_RATIO = 10
#: a ``last.pt`` write this fast is made after every epoch
LAST_CHEAP_S = 1.0


def _train(run: _Run, train: LabelledSet, val: LabelledSet) -> dict:
    started = time.perf_counter()
    config, folder, device = run.config, run.folder, run.device
    training = engine.build_training(config, device, len(train.images))
    model, task = training.model, training.task
    state, notes = _fresh_state(), []
    if not run.force:
        last, note = distributed.from_main(folder.read_last() if distributed.is_main() else None)
        notes += [note] if note else []
        if last is not None:
            state = _restore(last, folder, training)
    resumed_from = run.saved_epoch = state["epoch"]
    trained = _Trained(training, model_meta(config, model), state)
    net = distributed.wrap_model(model, device)  # trains; `model` (the same weights, unwrapped) saves and evaluates
    on_device = run.plan is None or run.plan.data_on_device
    train_data = engine.Data(_place(train.images, device, on_device), _place(_targets(train), device, on_device))
    last_save = {"seconds": 0.0, "at": time.perf_counter()}
    val_data = engine.Data(_place(val.images, device, False), _place(_targets(val), device, False))  # pinned on CUDA
    keep = _keep_indices(config, val, folder)
    steps = engine.steps_per_epoch(len(train.images), config)  # the TensorBoard step axis: optimizer steps
    # purge_step: a resumed run hides the events of the epochs it trains again, so no step appears twice
    writer = folder.tensorboard_writer(purge_step=state["epoch"] * steps + 1) if distributed.is_main() else None
    while state["epoch"] < config.epochs and not _patience_exhausted(config, state):
        epoch = state["epoch"] + 1
        tic = time.perf_counter()
        train_metrics = engine.train_one_epoch(net, training, train_data, config, epoch, progress=run.progress)
        distributed.broadcast_buffers(model)
        val_metrics = engine.evaluate(model, task, val_data, config, device, keep=keep)
        seconds = time.perf_counter() - tic
        row = {
            "epoch": epoch,
            "lr": train_metrics["lr"],
            "train_loss": train_metrics["loss"],
            f"train_{task.metric}": train_metrics[task.metric],
            "val_loss": val_metrics["loss"],
            f"val_{task.metric}": val_metrics[task.metric],
            "seconds": seconds,
        }
        if config.task == "segmentation":
            row.update({f"val_iou_{k}": v for k, v in val_metrics["iou"].items()})
        state["history"].append(row)
        state["train_seconds"] += seconds
        masks = {val.ids[i]: mask for i, mask in val_metrics["kept"].items()} if keep else None
        _epoch_files(run, trained, epoch, val_metrics, masks)
        state["epoch"] = epoch
        if distributed.is_main():
            final = epoch == config.epochs or _patience_exhausted(config, state)
            if final or _save_last_now(last_save):
                tic = time.perf_counter()
                folder.save_last(
                    {
                        "model": model.state_dict(),
                        "optimizer": training.optimizer.state_dict(),
                        "scheduler": training.scheduler.state_dict(),
                        "scaler": training.scaler.state_dict(),
                        "meta": trained.meta,
                        **state,
                    }
                )
                last_save.update(seconds=time.perf_counter() - tic, at=time.perf_counter())
                run.saved_epoch = epoch  # what a rerun resumes from (last.pt may skip epochs: _save_last_now)
            folder.write_history(state["history"])
        if writer is not None:
            _log_epoch(writer, row, train_metrics["step_losses"], epoch * steps)
        if run.on_epoch_end is not None:
            run.on_epoch_end(epoch, row)
    if writer is not None:
        writer.close()
    stop_reason = "completed all epochs"
    if state["epoch"] < config.epochs:
        stop_reason = f"early stopping: no improvement of val {task.metric} for {config.patience} epochs"
    result = _finish(run, trained, stop_reason, time.perf_counter() - started)
    return {**result, "notes": notes, "resumed_from_epoch": resumed_from}


def _log_epoch(writer, row: dict, step_losses: list[float], last_step: int) -> None:
    """Write one epoch to TensorBoard: each step's training loss (``step/train_loss``) and every history column
    (``epoch/<column>``: losses, metrics, lr, seconds, per-class IoU) at the epoch's last optimizer step, flushed
    so a long training's curves are live. history.csv stays what the report reads."""
    for step, loss in enumerate(step_losses, start=last_step - len(step_losses) + 1):
        writer.add_scalar("step/train_loss", loss, step)
    for column, value in row.items():
        if column != "epoch" and value is not None:
            writer.add_scalar(f"epoch/{column}", value, last_step)
    writer.flush()


def _keep_indices(config: TrainConfig, val: LabelledSet, folder: RunFolder) -> list[int] | None:
    """Indices of ``keep_mask_ids`` in the validation set; saves their inputs and ground truth once."""
    if not config.keep_mask_ids:
        return None
    missing = sorted(set(config.keep_mask_ids) - set(val.ids))
    if missing:
        raise ValueError(f"validation set {getattr(val, 'folder', '')} has no ids {missing} (keep_mask_ids)")
    keep = [list(val.ids).index(i) for i in config.keep_mask_ids]
    reference = {f"image_{i}": val.images[k].permute(1, 2, 0).numpy() for i, k in zip(config.keep_mask_ids, keep)}
    reference.update({f"truth_{i}": val.masks[k].numpy() for i, k in zip(config.keep_mask_ids, keep)})
    if distributed.is_main():
        folder.save_masks(reference)
    return keep


def _patience_exhausted(config: TrainConfig, state: dict) -> bool:
    """Early stopping: the validation metric has not improved for ``patience`` epochs."""
    return config.patience is not None and state["bad_epochs"] >= config.patience


def _save_last_now(last_save: dict) -> bool:
    """Whether to write ``last.pt`` after this epoch: always when the previous write was cheap, else once the
    training since it is :data:`LAST_SAVE_RATIO` times that write's duration (the GPU idles while it writes).

    Why this is safe: a resume continues from the last written epoch and retrains the later ones exactly (each
    epoch's randomness comes from its own seed), so writing less often costs at most that retraining."""
    if last_save["seconds"] < LAST_CHEAP_S:
        return True
    return time.perf_counter() - last_save["at"] >= LAST_SAVE_RATIO * last_save["seconds"]


def _place(tensor: torch.Tensor, device: torch.device, on_device: bool) -> torch.Tensor:
    """A data set on the GPU once (``on_device``: it fits beside the model, :mod:`hw1lib.memory`), else in pinned
    host memory, from which each batch is copied without waiting; on the CPU as it is."""
    if device.type != "cuda":
        return tensor
    return tensor.to(device) if on_device else tensor.pin_memory()


def _restore(checkpoint: dict, folder: RunFolder, training: engine.Training) -> dict:
    """Load ``last.pt``'s weights, optimizer, schedule and loss scale into ``training``; return its state."""
    load_state_dict_checked(training.model, checkpoint["model"], folder.file("last"))
    training.optimizer.load_state_dict(checkpoint["optimizer"])
    training.scheduler.load_state_dict(checkpoint["scheduler"])
    scaler = training.scaler
    if checkpoint.get("scaler") and scaler.is_enabled():  # fp16's loss scale: without it a resume is not exact
        scaler.load_state_dict(checkpoint["scaler"])
    return {k: checkpoint[k] for k in _fresh_state()}


def _epoch_files(run: _Run, trained: _Trained, epoch: int, val_metrics: dict, masks: dict | None) -> None:
    """Write this epoch's best/snapshot/mask files (rank 0; ``masks``: the kept masks by id, if any) and update the
    early-stopping state (every rank).

    Every rank reaches the same early-stopping decision: the metric comes from the confusion matrix summed
    over the ranks (integers), so it is identical everywhere.
    """
    folder, state, meta = run.folder, trained.state, trained.meta
    metric = val_metrics[trained.training.task.metric]
    weights = {"model": trained.training.model.state_dict(), "meta": meta, "epoch": epoch}
    main = distributed.is_main()
    if state["best"] is None or metric > state["best"]["value"]:
        extras = {k: v for k, v in val_metrics.items() if k not in ("kept", "confusion")}
        state["best"] = {
            "epoch": epoch,
            "value": metric,
            "metrics": extras,
            "confusion": val_metrics["confusion"].tolist(),
        }
        state["bad_epochs"] = 0
        if main:
            folder.save_weights(weights, "best")
    else:
        state["bad_epochs"] += 1
    if main and (epoch == 1 or epoch in run.config.snapshot_epochs):
        folder.save_weights(weights, epoch)
    if main and masks is not None:
        folder.save_masks(masks, epoch)


def _finish(run: _Run, trained: _Trained, stop_reason: str, wall_seconds: float) -> dict:
    """Write the final snapshot (if the last epoch has none) and ``metrics.json``; return the metrics."""
    folder, config, state, meta = run.folder, run.config, trained.state, trained.meta
    model, task = trained.training.model, trained.training.task
    final_epoch = state["epoch"]
    main = distributed.is_main()
    if main:
        folder.write_history(state["history"])  # in case an interruption fell between last.pt and history.csv
    if main and (run.force or not folder.snapshot(final_epoch).exists()):  # force: not an earlier training's file
        folder.save_weights({"model": model.state_dict(), "meta": meta, "epoch": final_epoch}, final_epoch)
    best = state["best"]
    metrics = {
        "name": folder.name,
        "task": config.task,
        "model": config.model,
        "metric": task.metric,
        "best_epoch": best["epoch"],
        f"best_val_{task.metric}": best["value"],
        "best": best["metrics"],
        "best_confusion": best["confusion"],
        "final_epoch": final_epoch,
        f"final_val_{task.metric}": state["history"][-1][f"val_{task.metric}"],
        "epochs_planned": config.epochs,
        "stop_reason": stop_reason,
        "train_seconds": state["train_seconds"],
        "wall_seconds_last_call": wall_seconds,
        "snapshots": [folder.snapshot(e).name for e in folder.snapshot_epochs()],
        "weights_source": meta["weights_source"],
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if main:
        folder.write_metrics(metrics)
    return {**metrics, "run_dir": str(folder.path), "reused": False}
