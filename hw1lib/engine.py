"""The training engine shared by both problems: ``train_step``, ``train_one_epoch``, ``evaluate``, ``fit``.

What differs between the problems (loss, augmentation, prediction, metric) comes from :mod:`hw1lib.tasks`;
where files go, from :mod:`hw1lib.runs`; device and number format, from :mod:`hw1lib.precision`.

Why it is built this way:
- Every epoch reseeds torch and its own CPU generator from ``(seed, epoch)``: shuffling, augmentation
  and dropout of epoch k do not depend on what ran before, so a run resumed from ``last.pt`` ends with
  exactly the same weights as an uninterrupted one (on the CPU; cuDNN kernels are not bitwise stable).
- The data sets stay decoded in memory (on the GPU when they fit) and whole batches are augmented on the
  device: no per-sample Python work.
- The step never waits for the device: losses stay on it and are checked for NaN/inf every
  ``FINITE_CHECK_EVERY`` steps, not after each one.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from hw1lib.checkpoints import load_state_dict_checked, model_meta
from hw1lib.config import TrainConfig
from hw1lib.io import environment_info
from hw1lib.metrics import ConfusionMatrix
from hw1lib.models import build_model
from hw1lib.progress import progress_bar
from hw1lib.precision import autocast, check_precision, memory_format, resolve_device, resolve_precision, to_input
from hw1lib.runs import RunFolder, set_latest
from hw1lib.tasks import build_task


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch: distinct per (seed, epoch), independent of earlier epochs."""
    return seed * 1_000_003 + epoch


def epoch_batches(n: int, batch_size: int, generator: torch.Generator | None = None,
                  max_batches: int | None = None) -> list[torch.Tensor]:
    """One epoch's batches of sample indices: shuffled by ``generator`` (in order without one), capped.

    A last batch of one sample is dropped: batch norm cannot train on it (its variance is zero).
    """
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches = batches[:-1]
    return batches[:max_batches]


def steps_per_epoch(n: int, config: TrainConfig) -> int:
    """Optimizer steps in one epoch of ``n`` samples (what :func:`epoch_batches` yields), at least 1."""
    return max(1, len(epoch_batches(n, config.batch_size, None, config.max_train_batches)))


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Linear warm-up then cosine annealing to ``min_ratio``, as a multiple of the base lr."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_training(config: TrainConfig, device: torch.device, train_size: int):
    """The model (seeded, on ``device``, in the config's memory format), task, AdamW and warm-up/cosine schedule.

    Returns:
        ``(model, task, optimizer, scheduler)``; the schedule spans ``config.epochs`` epochs of ``train_size``.
    """
    torch.manual_seed(config.seed)  # the model's initial weights
    model = build_model(config.model, num_classes=config.num_classes, pretrained=config.pretrained, **config.model_kwargs)
    model = model.to(device, memory_format=memory_format(config.channels_last))
    task = build_task(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = steps_per_epoch(train_size, config)
    total, warmup = config.epochs * steps, int(config.warmup_epochs * steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup, config.min_lr_ratio))
    return model, task, optimizer, scheduler


#: steps between checks of the training loss for NaN/inf (each check waits for the device once)
FINITE_CHECK_EVERY = 25
#: steps between updates of a progress bar's loss/metric (each update waits for the device once)
POSTFIX_EVERY = 10


def _check_finite(losses: list[torch.Tensor], first_step: int, epoch: int) -> None:
    """Raise naming the first step whose loss in ``losses`` (steps ``first_step``, ...) is NaN or infinite."""
    if not losses:
        return
    stacked = torch.stack(losses)
    finite = torch.isfinite(stacked)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0])
        raise FloatingPointError(f"non-finite training loss ({stacked[bad].item()}) at epoch {epoch}, "
                                 f"step {first_step + bad}")


# ----------------------------------------------------------------------------------------------------
# one step, one epoch of training, one evaluation


def train_step(model: nn.Module, task, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler,
               precision: str) -> tuple[object, torch.Tensor]:
    """One optimisation step on a prepared batch; returns ``(outputs, loss)`` without reading the loss.

    Why a function of its own: the benchmark's conventional loop calls it too, so that a data-path
    comparison times the same step on both sides.
    """
    with autocast(x.device, precision):
        outputs = model(x)
        loss = task.loss(outputs, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return outputs, loss


def train_one_epoch(model: nn.Module, task, images: torch.Tensor, targets: torch.Tensor, optimizer: torch.optim.Optimizer,
                    scheduler, config: TrainConfig, epoch: int, device: torch.device, progress: bool = True) -> dict:
    """Train for one epoch over in-memory tensors, augmenting each batch on the device.

    Returns:
        ``{"loss": mean training loss, task.metric: metric on the augmented training batches, "lr": last lr}``.

    Raises:
        FloatingPointError: the loss became NaN or infinite (names the epoch and the first such step; raised
            within ``FINITE_CHECK_EVERY`` steps of it, before anything of this epoch is saved).
    """
    model.train()
    seed = epoch_seed(config.seed, epoch)
    torch.manual_seed(seed)  # dropout and any other global randomness of this epoch
    generator = torch.Generator().manual_seed(seed)
    batches = epoch_batches(len(images), config.batch_size, generator, config.max_train_batches)
    precision = resolve_precision(config, device)
    matrix = ConfusionMatrix(config.num_classes, device)
    losses: list[torch.Tensor] = []  # per step, on the device: reading them each step would stall a GPU
    checked, seen = 0, 0
    bar = progress_bar(batches, desc=f"epoch {epoch}", disable=not progress)
    for step, index in enumerate(bar, start=1):
        x = to_input(images[index], device, config.channels_last)
        y = targets[index].to(device, non_blocking=True)
        x, y = task.augment(x, y, generator)
        outputs, loss = train_step(model, task, x, y, optimizer, scheduler, precision)
        matrix.update(task.predict(outputs).detach(), y)
        losses.append(loss.detach() * len(index))
        seen += len(index)
        if step % FINITE_CHECK_EVERY == 0:
            _check_finite(losses[checked:], checked + 1, epoch)
            checked = step
        if progress and (step % POSTFIX_EVERY == 0 or step == len(batches)):  # the postfix waits for the device
            bar.set_postfix(loss=f"{float(sum(losses)) / seen:.3f}",
                            **{task.metric: f"{task.summarize(matrix)[task.metric]:.3f}"})
    _check_finite(losses[checked:], checked + 1, epoch)
    return {"loss": float(torch.stack(losses).sum()) / seen if losses else 0.0,
            task.metric: task.summarize(matrix)[task.metric], "lr": optimizer.param_groups[0]["lr"]}


@torch.no_grad()
def evaluate(model: nn.Module, task, images: torch.Tensor, targets: torch.Tensor, batch_size: int, device: torch.device,
             num_classes: int, keep: list[int] | None = None, precision: str = "fp32",
             channels_last: bool = True, max_batches: int | None = None) -> dict:
    """Evaluate on in-memory tensors (no augmentation), in ``precision`` (the run's, from :func:`resolve_precision`)
    and the memory format the model is in.

    Args:
        max_batches: evaluate only the first this many batches (a fast dev run), plus the batches that hold
            ``keep`` indices, so kept masks exist at every epoch whatever the cap.

    Returns:
        ``{"loss", task.metric, ...task summary, "confusion": ndarray}`` and, when ``keep`` lists sample
        indices, ``"kept": {index: predicted class map (uint8 ndarray)}``.
    """
    model.eval()
    matrix = ConfusionMatrix(num_classes, device)
    keep = set(keep or [])
    kept: dict[int, np.ndarray] = {}
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    starts = list(range(0, len(images), batch_size))
    if max_batches is not None:
        starts = sorted(set(starts[:max_batches]) | {i - i % batch_size for i in keep})
    seen = 0
    for start in starts:
        x = to_input(images[start : start + batch_size], device, channels_last)
        y = targets[start : start + batch_size].to(device)
        with autocast(device, precision):
            outputs = model(x)
            total_loss += task.loss(outputs, y) * len(x)
        prediction = task.predict(outputs)
        matrix.update(prediction, y)
        for i in keep & set(range(start, start + len(x))):
            kept[i] = prediction[i - start].to(torch.uint8).cpu().numpy()
        seen += len(x)
    result = {"loss": float(total_loss) / max(seen, 1), **task.summarize(matrix), "confusion": matrix.to_numpy()}
    if keep:
        result["kept"] = kept
    return result




# ----------------------------------------------------------------------------------------------------
# the loop


def fit(config: TrainConfig, train, val, out_root, name: str, device: str = "auto", force: bool = False,
        progress: bool = True, on_epoch_end=None) -> dict:
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

    Returns:
        the content of ``metrics.json`` plus ``"run_dir"``, ``"reused"`` (True when nothing was trained) and
        ``"notes"`` (what was recovered from, e.g. an unreadable ``last.pt``).
    """
    device = resolve_device(device)
    check_precision(config, device)
    # the resolved precision is part of the name: "cpu_bf16" trains in bf16 on one CPU and in fp32 on another
    params = {"name": name, "config": config.to_dict(), "data": {"train": train.key, "val": val.key},
              "precision": resolve_precision(config, device)}
    folder = RunFolder.for_params(out_root, name, params)
    if folder.is_finished() and not force:
        result = {**folder.read_metrics(), "run_dir": str(folder.path), "reused": True, "notes": []}
    else:
        folders = {"train": str(getattr(train, "folder", "")), "val": str(getattr(val, "folder", ""))}
        folder.start({**params, "data_folders": folders, "environment": environment_info(device)})
        result = _train(config, train, val, folder, device, force, progress, on_epoch_end)
    set_latest(out_root, name, folder)
    return result


def _targets(data) -> torch.Tensor:
    targets = getattr(data, "labels", None)
    if targets is None:
        targets = getattr(data, "masks", None)
    if targets is None:
        raise ValueError(f"{getattr(data, 'folder', 'data set')} has no labels or masks: it cannot be trained or evaluated on")
    return targets


def _fresh_state() -> dict:
    return {"epoch": 0, "history": [], "best": None, "bad_epochs": 0, "train_seconds": 0.0}


def _train(config: TrainConfig, train, val, folder: RunFolder, device: torch.device, force: bool, progress: bool,
           on_epoch_end) -> dict:
    started = time.perf_counter()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model, task, optimizer, scheduler = build_training(config, device, len(train.images))
    precision = resolve_precision(config, device)
    state, notes = _fresh_state(), []
    if not force:
        last, note = folder.read_last()
        notes += [note] if note else []
        if last is not None:
            state = _restore(last, folder, model, optimizer, scheduler)
    meta = model_meta(config, model)
    train_x, train_y = _on_device(train.images, device), _on_device(_targets(train), device)
    val_x, val_y = val.images, _targets(val)
    keep = _keep_indices(config, val, folder)
    while state["epoch"] < config.epochs and not _patience_exhausted(config, state):
        epoch = state["epoch"] + 1
        tic = time.perf_counter()
        train_metrics = train_one_epoch(model, task, train_x, train_y, optimizer, scheduler, config, epoch, device, progress)
        val_metrics = evaluate(model, task, val_x, val_y, config.eval_batch_size, device, config.num_classes, keep,
                               precision, config.channels_last, config.max_eval_batches)
        seconds = time.perf_counter() - tic
        row = {"epoch": epoch, "lr": train_metrics["lr"], "train_loss": train_metrics["loss"],
               f"train_{task.metric}": train_metrics[task.metric], "val_loss": val_metrics["loss"],
               f"val_{task.metric}": val_metrics[task.metric], "seconds": seconds}
        if config.task == "segmentation":
            row.update({f"val_iou_{k}": v for k, v in val_metrics["iou"].items()})
        state["history"].append(row)
        state["train_seconds"] += seconds
        _epoch_files(folder, config, model, meta, epoch, val_metrics[task.metric], val_metrics, state, keep, val)
        state["epoch"] = epoch
        folder.save_last({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "meta": meta, **state})
        folder.write_history(state["history"])
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    stop_reason = "completed all epochs"
    if state["epoch"] < config.epochs:
        stop_reason = f"early stopping: no improvement of val {task.metric} for {config.patience} epochs"
    result = _finish(folder, config, model, meta, state, task, stop_reason, time.perf_counter() - started)
    return {**result, "notes": notes}


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
    folder.save_masks(reference)
    return keep


def _patience_exhausted(config: TrainConfig, state: dict) -> bool:
    """Early stopping: the validation metric has not improved for ``patience`` epochs."""
    return config.patience is not None and state["bad_epochs"] >= config.patience


def _on_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a whole data set to the GPU once when it fits comfortably; on the CPU this is a no-op."""
    if device.type == "cuda" and tensor.numel() * tensor.element_size() < 0.25 * torch.cuda.get_device_properties(device).total_memory:
        return tensor.to(device)
    return tensor


def _restore(checkpoint: dict, folder: RunFolder, model: nn.Module, optimizer, scheduler) -> dict:
    load_state_dict_checked(model, checkpoint["model"], folder.file("last"))
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    return {k: checkpoint[k] for k in _fresh_state()}


def _epoch_files(folder: RunFolder, config: TrainConfig, model: nn.Module, meta: dict, epoch: int, metric: float,
                 val_metrics: dict, state: dict, keep, val) -> None:
    """Write this epoch's best/snapshot/mask files and update the early-stopping state."""
    weights = {"model": model.state_dict(), "meta": meta, "epoch": epoch}
    if state["best"] is None or metric > state["best"]["value"]:
        extras = {k: v for k, v in val_metrics.items() if k not in ("kept", "confusion")}
        state["best"] = {"epoch": epoch, "value": metric, "metrics": extras, "confusion": val_metrics["confusion"].tolist()}
        state["bad_epochs"] = 0
        folder.save_weights(weights, "best")
    else:
        state["bad_epochs"] += 1
    if epoch == 1 or epoch in config.snapshot_epochs:
        folder.save_weights(weights, epoch)
    if keep:
        folder.save_masks({val.ids[i]: mask for i, mask in val_metrics["kept"].items()}, epoch)


def _finish(folder: RunFolder, config: TrainConfig, model: nn.Module, meta: dict, state: dict, task, stop_reason: str,
            wall_seconds: float) -> dict:
    final_epoch = state["epoch"]
    folder.write_history(state["history"])  # in case an interruption fell between last.pt and history.csv
    if not folder.snapshot(final_epoch).exists():
        folder.save_weights({"model": model.state_dict(), "meta": meta, "epoch": final_epoch}, final_epoch)
    best = state["best"]
    metrics = {
        "name": folder.name, "task": config.task, "model": config.model, "metric": task.metric,
        "best_epoch": best["epoch"], f"best_val_{task.metric}": best["value"], "best": best["metrics"],
        "best_confusion": best["confusion"], "final_epoch": final_epoch,
        f"final_val_{task.metric}": state["history"][-1][f"val_{task.metric}"], "epochs_planned": config.epochs,
        "stop_reason": stop_reason, "train_seconds": state["train_seconds"], "wall_seconds_last_call": wall_seconds,
        "snapshots": [folder.snapshot(e).name for e in folder.snapshot_epochs()],
        "weights_source": meta["weights_source"], "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    folder.write_metrics(metrics)
    return {**metrics, "run_dir": str(folder.path), "reused": False}
