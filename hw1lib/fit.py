"""``fit``: train a run, or reuse a finished one, or resume an interrupted one, in its run folder.

The loops themselves (``train_one_epoch``, ``evaluate``) are :mod:`hw1lib.engine`'s; this module decides what to
train, keeps the early-stopping state, and writes each epoch's files through :class:`hw1lib.runs.RunFolder`:
``last.pt`` after every epoch (an interruption at any point leaves the previous complete epoch, and a rerun
continues from it), ``best.pt``, snapshots and kept masks, ``history.csv``, TensorBoard events, and
``metrics.json`` at the end.
Under torchrun (:mod:`hw1lib.distributed`) rank 0 alone decides on reuse and resume and writes.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import torch
from torch import nn

from hw1lib import distributed, engine
from hw1lib.checkpoints import load_state_dict_checked, model_meta
from hw1lib.config import TrainConfig
from hw1lib.interrupts import TrainingInterrupted, interrupted, sigterm_raises
from hw1lib.io import environment_info
from hw1lib.locks import run_lock
from hw1lib.precision import check_precision, resolve_device, resolve_precision
from hw1lib.runs import RunFolder


def fit(
    config: TrainConfig,
    train,
    val,
    out_root,
    name: str,
    device: str = "auto",
    force: bool = False,
    progress: bool = True,
    on_epoch_end=None,
    recipe: dict | None = None,
) -> dict:
    """Train (or reuse, or resume) a run and return its metrics.

    Args:
        config: the run's configuration.
        train, val: data sets with ``images`` (uint8 N,3,H,W), targets (``labels`` or ``masks``) and a
            ``key`` fingerprint; ``val`` may carry ``ids`` (segmentation) for ``keep_mask_ids``.
        out_root: folder that holds run folders.
        name: experiment name (``p1_model_a``); the run folder is ``out_root/name-<hash of params>``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        force: retrain even if a finished run with these parameters exists.
        progress: show tqdm bars.
        on_epoch_end: optional ``callback(epoch, row)`` after each epoch's files are written (tests use it).
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
            saved = {"epoch": 0}  # the last complete epoch on disk: what an interruption message reports
            one_process = distributed.launched_world_size() <= 1  # under torchrun, SIGTERM stays torchrun's
            try:
                with sigterm_raises() if one_process else nullcontext():
                    result = _train(config, train, val, folder, device, force, progress and main, on_epoch_end, saved)
            except KeyboardInterrupt as error:
                if isinstance(error, TrainingInterrupted):
                    raise
                raise interrupted(error, saved["epoch"], config.epochs) from None
    return distributed.from_main(result)


def _targets(data) -> torch.Tensor:
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


def _train(
    config: TrainConfig,
    train,
    val,
    folder: RunFolder,
    device: torch.device,
    force: bool,
    progress: bool,
    on_epoch_end,
    saved: dict,
) -> dict:
    started = time.perf_counter()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model, task, optimizer, scheduler = engine.build_training(config, device, len(train.images))
    precision = resolve_precision(config, device)
    state, notes = _fresh_state(), []
    if not force:
        last, note = distributed.from_main(folder.read_last() if distributed.is_main() else None)
        notes += [note] if note else []
        if last is not None:
            state = _restore(last, folder, model, optimizer, scheduler)
    resumed_from = saved["epoch"] = state["epoch"]
    meta = model_meta(config, model)
    net = distributed.wrap_model(model, device)  # trains; `model` (the same weights, unwrapped) saves and evaluates
    train_x, train_y = _on_device(train.images, device), _on_device(_targets(train), device)
    val_x, val_y = val.images, _targets(val)
    keep = _keep_indices(config, val, folder)
    steps = engine.steps_per_epoch(len(train.images), config)  # the TensorBoard step axis: optimizer steps
    # purge_step: a resumed run hides the events of the epochs it trains again, so no step appears twice
    writer = folder.tensorboard_writer(purge_step=state["epoch"] * steps + 1) if distributed.is_main() else None
    while state["epoch"] < config.epochs and not _patience_exhausted(config, state):
        epoch = state["epoch"] + 1
        tic = time.perf_counter()
        train_metrics = engine.train_one_epoch(
            net, task, train_x, train_y, optimizer, scheduler, config, epoch, device, progress
        )
        distributed.broadcast_buffers(model)
        val_metrics = engine.evaluate(
            model,
            task,
            val_x,
            val_y,
            config.eval_batch_size,
            device,
            config.num_classes,
            keep,
            precision,
            config.channels_last,
            config.max_eval_batches,
        )
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
        _epoch_files(folder, config, model, meta, epoch, val_metrics[task.metric], val_metrics, state, keep, val)
        state["epoch"] = epoch
        if distributed.is_main():
            folder.save_last(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "meta": meta,
                    **state,
                }
            )
            folder.write_history(state["history"])
        if writer is not None:
            _log_epoch(writer, row, train_metrics["step_losses"], epoch * steps)
        saved["epoch"] = epoch
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    if writer is not None:
        writer.close()
    stop_reason = "completed all epochs"
    if state["epoch"] < config.epochs:
        stop_reason = f"early stopping: no improvement of val {task.metric} for {config.patience} epochs"
    result = _finish(folder, config, model, meta, state, task, stop_reason, time.perf_counter() - started)
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


def _keep_indices(config: TrainConfig, val, folder: RunFolder) -> list[int] | None:
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


def _on_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a whole data set to the GPU once when it fits comfortably; on the CPU this is a no-op."""
    if (
        device.type == "cuda"
        and tensor.numel() * tensor.element_size() < 0.25 * torch.cuda.get_device_properties(device).total_memory
    ):
        return tensor.to(device)
    return tensor


def _restore(checkpoint: dict, folder: RunFolder, model: nn.Module, optimizer, scheduler) -> dict:
    load_state_dict_checked(model, checkpoint["model"], folder.file("last"))
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    return {k: checkpoint[k] for k in _fresh_state()}


def _epoch_files(
    folder: RunFolder,
    config: TrainConfig,
    model: nn.Module,
    meta: dict,
    epoch: int,
    metric: float,
    val_metrics: dict,
    state: dict,
    keep,
    val,
) -> None:
    """Write this epoch's best/snapshot/mask files (rank 0) and update the early-stopping state (every rank).

    Every rank reaches the same early-stopping decision: ``metric`` comes from the confusion matrix summed
    over the ranks (integers), so it is identical everywhere.
    """
    weights = {"model": model.state_dict(), "meta": meta, "epoch": epoch}
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
    if main and (epoch == 1 or epoch in config.snapshot_epochs):
        folder.save_weights(weights, epoch)
    if main and keep:
        folder.save_masks({val.ids[i]: mask for i, mask in val_metrics["kept"].items()}, epoch)


def _finish(
    folder: RunFolder,
    config: TrainConfig,
    model: nn.Module,
    meta: dict,
    state: dict,
    task,
    stop_reason: str,
    wall_seconds: float,
) -> dict:
    final_epoch = state["epoch"]
    main = distributed.is_main()
    if main:
        folder.write_history(state["history"])  # in case an interruption fell between last.pt and history.csv
    if main and not folder.snapshot(final_epoch).exists():
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
