"""The training engine shared by both problems: ``fit``, ``train_one_epoch``, ``evaluate``.

What a run leaves in its folder (the report reads only these files):
    params.json       the resolved configuration, data fingerprints, device, versions
    history.csv       one row per finished epoch (rewritten atomically after every epoch)
    metrics.json      written once at the end: best/final metrics, wall time, stop reason
    last.pt           full training state after the last finished epoch (resume point)
    best.pt           model weights of the best epoch by the validation metric
    epoch_NNN.pt      model weights at requested epochs, plus the first and the final one
    masks/epoch_NNN.npz  (segmentation) argmax masks of chosen validation ids at every epoch

Why it is built this way:
- Every epoch reseeds torch and its own CPU generator from ``(seed, epoch)``: shuffling, augmentation
  and dropout of epoch k do not depend on what ran before, so a run resumed from ``last.pt`` ends with
  exactly the same weights as an uninterrupted one (on the CPU; cuDNN kernels are not bitwise stable).
- Checkpoints and history are written to a temporary file and renamed: an interruption at any point
  leaves the previous complete epoch intact.
- A run folder is named by a hash of its parameters, so a finished run with identical parameters is
  reused, and a changed parameter trains into a new folder instead of overwriting results.
- Speed (figures in ``benchmarks/RESULTS.md``): models and inputs are ``channels_last`` on every device
  (oneDNN and cuDNN run convolutions in that layout without reorders: 1.0-1.9x per model on our CPUs); CUDA
  trains under bf16 autocast; a CPU does so only when the recipe asks (``cpu_bf16``) and the CPU has AMX
  (2x for P1 model A there). The step never waits for the device: losses stay on it and are checked
  for NaN/inf every ``FINITE_CHECK_EVERY`` steps, not after each one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

import hw1lib
from hw1lib.metrics import ConfusionMatrix
from hw1lib.models import build_model
from hw1lib.tasks import build_task


@dataclass
class TrainConfig:
    """Everything that decides a training run's result (and so its run folder's name)."""

    task: str  # "classification" or "segmentation"
    model: str  # a name from hw1lib.models.list_models()
    num_classes: int
    pretrained: bool = False
    model_kwargs: dict = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.01  # cosine annealing ends at lr * min_lr_ratio
    patience: int | None = None  # early stopping on the validation metric; None = never
    loss: str = "ce"  # "ce" or "focal"
    focal_gamma: float = 2.0
    label_smoothing: float = 0.0
    class_weights: list[float] | None = None
    aux_weight: float = 0.4  # weight of an auxiliary head's loss (segmentation)
    augment: dict = field(default_factory=dict)  # arguments of the task's batch augmentation; {} = none
    snapshot_epochs: list[int] = field(default_factory=list)  # extra weight snapshots (first and final always)
    keep_mask_ids: list[str] = field(default_factory=list)  # validation ids whose masks are kept every epoch
    max_train_batches: int | None = None  # cap per epoch (smoke runs only)
    cpu_bf16: bool = False  # bf16 autocast on a CPU with AMX too (CUDA always uses it); see resolve_precision
    channels_last: bool = True  # memory format of the model and its inputs (False: NCHW, for comparisons)
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------------
# small utilities


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_torch(obj: object, path: Path) -> None:
    """``torch.save`` through a temporary file and a rename."""
    atomic_write_bytes(path, lambda tmp: torch.save(obj, tmp))


def save_json(obj: object, path: Path) -> None:
    """JSON through a temporary file and a rename."""
    atomic_write_bytes(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, default=str)))


def save_npz(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Compressed ``.npz`` through a temporary file and a rename."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a file object keeps NumPy from appending ".npz" to the temp name
            np.savez_compressed(handle, **arrays)

    atomic_write_bytes(path, write)


def params_hash(params: dict) -> str:
    """A short, stable hash of a JSON-able parameter dict."""
    return hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:10]


def environment_info(device: torch.device) -> dict:
    """Device and library versions, recorded with every run."""
    info = {"device": str(device), "torch": torch.__version__, "hw1lib": hw1lib.__version__,
            "python": platform.python_version(), "host_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    else:
        info["device_name"] = platform.processor() or platform.machine()
    return info


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch: distinct per (seed, epoch), independent of earlier epochs."""
    return seed * 1_000_003 + epoch


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Linear warm-up then cosine annealing to ``min_ratio``, as a multiple of the base lr."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def memory_format(channels_last: bool = True) -> torch.memory_format:
    """``torch.channels_last`` or ``torch.contiguous_format`` (NCHW)."""
    return torch.channels_last if channels_last else torch.contiguous_format


def to_input(images: torch.Tensor, device: torch.device, channels_last: bool = True) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float [0, 1] on ``device``, in the models' memory format (channels_last by default).

    Why the input too: a convolution runs in channels_last when its input or its weight is, so an NCHW
    input would leave the first layer converting every batch (and an NCHW comparison would not be NCHW).
    """
    x = images.to(device, non_blocking=True).float().div_(255)
    return x.contiguous(memory_format=memory_format(channels_last))


def native_cpu_bf16() -> bool:
    """Whether this CPU has AMX tiles, with which oneDNN runs bf16 convolutions and matmuls natively.

    Why only AMX: without it bf16 is emulated and slower than fp32. torch exposes the probe only as a
    private function; if a later torch drops it, the answer is False (fp32), never an error.
    """
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe is not None and probe())


def resolve_precision(config: TrainConfig, device: torch.device) -> str:
    """``"bf16"`` (autocast) or ``"fp32"``: what a run of ``config`` computes in on ``device``.

    CUDA: bf16 where the GPU supports it. CPU: fp32 unless the recipe sets ``cpu_bf16`` and the CPU has
    AMX. Why not bf16 on every AMX CPU: measured there, it doubles P1 model A's step but slows the
    EfficientNets (depthwise convolutions) by 20-50%, and in torch 2.13 the backward of a 1x1 convolution
    from 4096 to 7 channels (FCN32s's score layer) corrupts the heap under CPU bf16 autocast.
    """
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if config.cpu_bf16 and native_cpu_bf16() else "fp32"


def autocast(device: torch.device, precision: str = "fp32"):
    """bf16 autocast on ``device`` when ``precision`` is ``"bf16"`` (see :func:`resolve_precision`), else nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


#: models whose training under CPU bf16 autocast is known to fail, and why (checked before a run starts)
CPU_BF16_BROKEN = {
    "fcn32s": "in torch 2.13 the backward of its 1x1 score convolution (4096 -> 7 channels) under CPU bf16 autocast "
              "corrupts the heap and kills the process",
}


def check_precision(config: TrainConfig, device: torch.device) -> None:
    """Refuse a setting known to crash (:data:`CPU_BF16_BROKEN`) with a clear error instead of a dead process."""
    if resolve_precision(config, device) == "bf16" and device.type == "cpu" and config.model in CPU_BF16_BROKEN:
        raise ValueError(f"cpu_bf16=True cannot train {config.model} on the CPU: {CPU_BF16_BROKEN[config.model]}; "
                         "set cpu_bf16=False")


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
    order = torch.randperm(len(images), generator=generator)
    batches = list(order.split(config.batch_size))
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches = batches[:-1]  # a batch of one breaks BatchNorm
    batches = batches[: config.max_train_batches]
    precision = resolve_precision(config, device)
    matrix = ConfusionMatrix(config.num_classes, device)
    losses: list[torch.Tensor] = []  # per step, on the device: reading them each step would stall a GPU
    checked, seen = 0, 0
    bar = tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=not progress)
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
             channels_last: bool = True) -> dict:
    """Evaluate on in-memory tensors (no augmentation), in ``precision`` (the run's, from :func:`resolve_precision`)
    and the memory format the model is in.

    Returns:
        ``{"loss", task.metric, ...task summary, "confusion": ndarray}`` and, when ``keep`` lists sample
        indices, ``"kept": {index: predicted class map (uint8 ndarray)}``.
    """
    model.eval()
    matrix = ConfusionMatrix(num_classes, device)
    keep = set(keep or [])
    kept: dict[int, np.ndarray] = {}
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    for start in range(0, len(images), batch_size):
        x = to_input(images[start : start + batch_size], device, channels_last)
        y = targets[start : start + batch_size].to(device)
        with autocast(device, precision):
            outputs = model(x)
            total_loss += task.loss(outputs, y) * len(x)
        prediction = task.predict(outputs)
        matrix.update(prediction, y)
        for i in keep & set(range(start, start + len(x))):
            kept[i] = prediction[i - start].to(torch.uint8).cpu().numpy()
    result = {"loss": float(total_loss) / max(len(images), 1), **task.summarize(matrix), "confusion": matrix.to_numpy()}
    if keep:
        result["kept"] = kept
    return result


# ----------------------------------------------------------------------------------------------------
# checkpoints


def model_meta(config: TrainConfig, model: nn.Module) -> dict:
    """What ``load_model`` needs to rebuild the network without its training code."""
    return {"task": config.task, "model": config.model, "num_classes": config.num_classes,
            "model_kwargs": config.model_kwargs, "weights_source": getattr(model, "weights_source", "unknown"),
            "hw1lib": hw1lib.__version__}


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu", task: str | None = None) -> tuple[nn.Module, dict]:
    """Rebuild a model from a ``best.pt``/``epoch_NNN.pt``/``last.pt`` checkpoint.

    Args:
        checkpoint: the checkpoint file.
        device: where to put the model.
        task: when given, refuse a checkpoint of the other task with a clear error.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        meta = state["meta"]
    except Exception as error:  # a truncated or foreign file: say which
        raise ValueError(f"{path} is not an hw1lib checkpoint ({type(error).__name__}: {error})") from error
    if task is not None and meta["task"] != task:
        raise ValueError(f"{path} is a {meta['task']} checkpoint ({meta['model']}); a {task} checkpoint is needed here")
    model = build_model(meta["model"], num_classes=meta["num_classes"], pretrained=False, **meta["model_kwargs"])
    model.load_state_dict(state["model"])
    model.weights_source = meta["weights_source"]
    return model.to(device, memory_format=torch.channels_last).eval(), meta


def _write_history(run_dir: Path, history: list[dict]) -> None:
    atomic_write_bytes(run_dir / "history.csv", lambda tmp: pd.DataFrame(history).to_csv(tmp, index=False))


def _save_masks(run_dir: Path, epoch: int, kept: dict[int, np.ndarray], ids: list[str]) -> None:
    arrays = {ids[i]: mask for i, mask in kept.items()}
    save_npz(arrays, run_dir / "masks" / f"epoch_{epoch:03d}.npz")


# ----------------------------------------------------------------------------------------------------
# the loop


def run_dir_for(out_root: str | Path, name: str, params: dict) -> Path:
    """The run folder of ``name`` with these parameters: ``out_root/name-<hash>``."""
    return Path(out_root) / f"{name}-{params_hash(params)}"


def fit(config: TrainConfig, train, val, out_root: str | Path, name: str, device: str = "auto", force: bool = False,
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
        the content of ``metrics.json`` plus ``"run_dir"`` and ``"reused"`` (True when nothing was trained).
    """
    device = resolve_device(device)
    check_precision(config, device)
    # the resolved precision is part of the name: "cpu_bf16" trains in bf16 on one CPU and in fp32 on another
    params = {"name": name, "config": config.to_dict(), "data": {"train": train.key, "val": val.key},
              "precision": resolve_precision(config, device)}
    run_dir = run_dir_for(out_root, name, params)
    if (run_dir / "metrics.json").exists() and not force:
        result = {**json.loads((run_dir / "metrics.json").read_text()), "run_dir": str(run_dir), "reused": True}
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        folders = {"train": str(getattr(train, "folder", "")), "val": str(getattr(val, "folder", ""))}
        save_json({**params, "data_folders": folders, "environment": environment_info(device)}, run_dir / "params.json")
        result = _train(config, train, val, run_dir, device, force, progress, on_epoch_end)
    save_json({"run_dir": run_dir.name}, Path(out_root) / f"{name}.latest.json")
    return result


def current_run(out_root: str | Path, name: str) -> Path:
    """The run folder that the last ``fit`` of ``name`` in ``out_root`` trained or reused.

    Raises:
        FileNotFoundError: no such run yet (names the pointer file that was looked for).
    """
    pointer = Path(out_root) / f"{name}.latest.json"
    if not pointer.exists():
        raise FileNotFoundError(f"no finished run of {name} in {out_root} (expected {pointer}); run its notebook first")
    run_dir = Path(out_root) / json.loads(pointer.read_text())["run_dir"]
    if not (run_dir / "metrics.json").exists():
        raise FileNotFoundError(f"{run_dir} has no metrics.json: its training did not finish; run its notebook again")
    return run_dir


def _targets(data) -> torch.Tensor:
    targets = getattr(data, "labels", None)
    if targets is None:
        targets = getattr(data, "masks", None)
    if targets is None:
        raise ValueError(f"{getattr(data, 'folder', 'data set')} has no labels or masks: it cannot be trained or evaluated on")
    return targets


def _train(config: TrainConfig, train, val, run_dir: Path, device: torch.device, force: bool, progress: bool,
           on_epoch_end) -> dict:
    started = time.perf_counter()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(config.seed)  # the model's initial weights
    model = build_model(config.model, num_classes=config.num_classes, pretrained=config.pretrained, **config.model_kwargs)
    model = model.to(device, memory_format=memory_format(config.channels_last))
    precision = resolve_precision(config, device)
    task = build_task(config.task, **config.to_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = _steps_per_epoch(len(train.images), config)
    total, warmup = config.epochs * steps_per_epoch, int(config.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup, config.min_lr_ratio))
    state = {"epoch": 0, "history": [], "best": None, "bad_epochs": 0, "train_seconds": 0.0}
    last = run_dir / "last.pt"
    if last.exists() and not force:
        state = _restore(last, model, optimizer, scheduler)
    meta = model_meta(config, model)
    train_x, train_y, val_x, val_y = _on_device(train.images, device), _on_device(_targets(train), device), val.images, _targets(val)
    keep = _keep_indices(config, val, run_dir)
    while state["epoch"] < config.epochs and not _patience_exhausted(config, state):
        epoch = state["epoch"] + 1
        tic = time.perf_counter()
        train_metrics = train_one_epoch(model, task, train_x, train_y, optimizer, scheduler, config, epoch, device, progress)
        val_metrics = evaluate(model, task, val_x, val_y, config.eval_batch_size, device, config.num_classes, keep,
                               precision, config.channels_last)
        seconds = time.perf_counter() - tic
        row = {"epoch": epoch, "lr": train_metrics["lr"], "train_loss": train_metrics["loss"],
               f"train_{task.metric}": train_metrics[task.metric], "val_loss": val_metrics["loss"],
               f"val_{task.metric}": val_metrics[task.metric], "seconds": seconds}
        if config.task == "segmentation":
            row.update({f"val_iou_{k}": v for k, v in val_metrics["iou"].items()})
        state["history"].append(row)
        state["train_seconds"] += seconds
        _epoch_files(run_dir, config, model, meta, epoch, val_metrics[task.metric], val_metrics, state, keep, val)
        state["epoch"] = epoch
        save_torch({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "meta": meta, **state}, last)
        _write_history(run_dir, state["history"])
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    stop_reason = "completed all epochs"
    if state["epoch"] < config.epochs:
        stop_reason = f"early stopping: no improvement of val {task.metric} for {config.patience} epochs"
    return _finish(run_dir, config, model, meta, state, task, stop_reason, time.perf_counter() - started)


def _keep_indices(config: TrainConfig, val, run_dir: Path) -> list[int] | None:
    """Indices of ``keep_mask_ids`` in the validation set; saves their inputs and ground truth once."""
    if not config.keep_mask_ids:
        return None
    missing = sorted(set(config.keep_mask_ids) - set(val.ids))
    if missing:
        raise ValueError(f"validation set {getattr(val, 'folder', '')} has no ids {missing} (keep_mask_ids)")
    keep = [list(val.ids).index(i) for i in config.keep_mask_ids]
    reference = {f"image_{i}": val.images[k].permute(1, 2, 0).numpy() for i, k in zip(config.keep_mask_ids, keep)}
    reference.update({f"truth_{i}": val.masks[k].numpy() for i, k in zip(config.keep_mask_ids, keep)})
    save_npz(reference, run_dir / "masks" / "reference.npz")
    return keep


def _patience_exhausted(config: TrainConfig, state: dict) -> bool:
    """Early stopping: the validation metric has not improved for ``patience`` epochs."""
    return config.patience is not None and state["bad_epochs"] >= config.patience


def _steps_per_epoch(n: int, config: TrainConfig) -> int:
    steps = n // config.batch_size + (1 if n % config.batch_size >= 2 else 0)
    return max(1, min(steps, config.max_train_batches or steps))


def _on_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a whole data set to the GPU once when it fits comfortably; on the CPU this is a no-op."""
    if device.type == "cuda" and tensor.numel() * tensor.element_size() < 0.25 * torch.cuda.get_device_properties(device).total_memory:
        return tensor.to(device)
    return tensor


def _restore(last: Path, model: nn.Module, optimizer, scheduler) -> dict:
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    return {k: checkpoint[k] for k in ("epoch", "history", "best", "bad_epochs", "train_seconds")}


def _epoch_files(run_dir: Path, config: TrainConfig, model: nn.Module, meta: dict, epoch: int, metric: float, val_metrics: dict, state: dict, keep, val) -> None:
    """Write this epoch's best/snapshot/mask files and update the early-stopping state."""
    weights = {"model": model.state_dict(), "meta": meta, "epoch": epoch}
    if state["best"] is None or metric > state["best"]["value"]:
        extras = {k: v for k, v in val_metrics.items() if k not in ("kept", "confusion")}
        state["best"] = {"epoch": epoch, "value": metric, "metrics": extras, "confusion": val_metrics["confusion"].tolist()}
        state["bad_epochs"] = 0
        save_torch(weights, run_dir / "best.pt")
    else:
        state["bad_epochs"] += 1
    if epoch == 1 or epoch in config.snapshot_epochs:
        save_torch(weights, run_dir / f"epoch_{epoch:03d}.pt")
    if keep:
        _save_masks(run_dir, epoch, val_metrics["kept"], list(val.ids))


def _finish(run_dir: Path, config: TrainConfig, model: nn.Module, meta: dict, state: dict, task, stop_reason: str,
            wall_seconds: float) -> dict:
    final_epoch = state["epoch"]
    _write_history(run_dir, state["history"])  # in case an interruption fell between last.pt and history.csv
    final_path = run_dir / f"epoch_{final_epoch:03d}.pt"
    if not final_path.exists():
        save_torch({"model": model.state_dict(), "meta": meta, "epoch": final_epoch}, final_path)
    best = state["best"]
    metrics = {
        "name": run_dir.name.rsplit("-", 1)[0], "task": config.task, "model": config.model, "metric": task.metric,
        "best_epoch": best["epoch"], f"best_val_{task.metric}": best["value"], "best": best["metrics"],
        "best_confusion": best["confusion"], "final_epoch": final_epoch,
        f"final_val_{task.metric}": state["history"][-1][f"val_{task.metric}"], "epochs_planned": config.epochs,
        "stop_reason": stop_reason, "train_seconds": state["train_seconds"], "wall_seconds_last_call": wall_seconds,
        "snapshots": sorted(p.name for p in run_dir.glob("epoch_*.pt")), "weights_source": meta["weights_source"],
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    save_json(metrics, run_dir / "metrics.json")
    return {**metrics, "run_dir": str(run_dir), "reused": False}
