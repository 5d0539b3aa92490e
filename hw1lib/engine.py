"""The training engine shared by both problems: ``train_step``, ``train_one_epoch``, ``evaluate`` (loops only).

What differs between the problems (loss, augmentation, prediction, metric) comes from :mod:`hw1lib.tasks`;
device and number format, from :mod:`hw1lib.precision`; a run's life (reuse, resume, files), from
:func:`hw1lib.fit.fit`.

Why it is built this way:
- Every epoch reseeds torch and its own CPU generator from ``(seed, epoch)``: shuffling, augmentation
  and dropout of epoch k do not depend on what ran before, so a run resumed from ``last.pt`` ends with
  exactly the same weights as an uninterrupted one (on the CPU; cuDNN kernels are not bitwise stable).
- The data sets stay decoded in memory (on the GPU when they fit beside the model, else in pinned host
  memory; :mod:`hw1lib.memory`) and whole batches are augmented on the device: no per-sample Python work.
- No wait inside a step, either way: the epoch's permutation and every batch's augmentation values are drawn
  on the CPU once per epoch and copied to the device in one non-blocking transfer (:func:`stage_epoch`); a
  step only slices them. Losses stay on the device and are checked for NaN/inf every ``FINITE_CHECK_EVERY``
  steps, not after each one. ``tests/test_no_wait.py`` fails if a step builds a tensor from host data.
- A recipe's batch that does not fit the GPU is split into ``config.accumulation_steps`` micro-batches whose
  gradients add up to the global batch's (chosen by ``fit`` from :mod:`hw1lib.memory`); fp16 runs (sm_70,
  sm_75) scale the loss with a ``GradScaler``.
- Under torchrun (:mod:`hw1lib.distributed`) every rank draws the same epoch permutation and augmentation,
  trains on its slice of each global batch (the recipe's batch size) and evaluates a share of the validation
  batches; matrices, loss sums and counts are summed over the ranks, so the history holds whole-set numbers,
  and only rank 0 writes the run folder. In one process all of this is a no-op.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from hw1lib import distributed
from hw1lib.config import TrainConfig
from hw1lib.metrics import ConfusionMatrix
from hw1lib.models import build_model
from hw1lib.precision import autocast, grad_scaler, memory_format, resolve_precision, to_input
from hw1lib.progress import progress_bar
from hw1lib.tasks import Task, build_task


class Data(NamedTuple):
    """A labelled data set's tensors as the loops take them: ``images`` (uint8 N, 3, H, W) and ``targets`` (labels
    (N,) or masks (N, H, W)), on the training device or in host memory."""

    images: torch.Tensor
    targets: torch.Tensor


@dataclass
class Training:
    """What one run trains with (:func:`build_training`): the model (unwrapped: it saves and evaluates), its task,
    optimizer and schedule, the device, the number format and fp16's loss scaler (a disabled no-op otherwise).

    Why one object: the loops take it whole instead of six of its fields each (torchvision's references pass the
    model, the loader and the device; the rest is the run's).
    """

    model: nn.Module
    task: Task
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: torch.device
    precision: str = "fp32"
    scaler: torch.amp.GradScaler | None = None


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch: distinct per (seed, epoch), independent of earlier epochs."""
    return seed * 1_000_003 + epoch


def epoch_batches(
    n: int, batch_size: int, generator: torch.Generator | None = None, max_batches: int | None = None
) -> list[torch.Tensor]:
    """One epoch's batches of sample indices: shuffled by ``generator`` (in order without one), capped.

    A last batch of one sample is dropped: batch norm cannot train on it (its variance is zero).
    """
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches = batches[:-1]
    return batches[:max_batches]


def even_batches(batches: list[torch.Tensor], world_size: int) -> list[torch.Tensor]:
    """The global batches that ``world_size`` ranks can share evenly (``batches`` itself for one process).

    Only the last, short batch can need it: it is cut to a multiple of the world size, and dropped when that
    leaves a rank fewer than 2 samples (the rule of :func:`epoch_batches` for batch norm, per rank).
    """
    if world_size == 1 or not batches:
        return batches
    last = batches[-1][: len(batches[-1]) - len(batches[-1]) % world_size]
    return batches[:-1] + ([last] if len(last) >= 2 * world_size else [])


def steps_per_epoch(n: int, config: TrainConfig) -> int:
    """Optimizer steps in one epoch of ``n`` samples (what :func:`epoch_batches` yields), at least 1."""
    batches = epoch_batches(n, config.batch_size, None, config.max_train_batches)
    return max(1, len(even_batches(batches, distributed.world_size())))


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Linear warm-up then cosine annealing to ``min_ratio``, as a multiple of the base lr."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_training(config: TrainConfig, device: torch.device, train_size: int) -> Training:
    """The model (seeded, on ``device``, in the config's memory format), task, AdamW and warm-up/cosine schedule, in
    the run's precision (:func:`hw1lib.precision.resolve_precision`) with its loss scaler; the schedule spans
    ``config.epochs`` epochs of ``train_size`` samples."""
    torch.manual_seed(config.seed)  # the model's initial weights
    model = build_model(
        config.model, num_classes=config.num_classes, pretrained=config.pretrained, **config.model_kwargs
    )
    model = model.to(device, memory_format=memory_format(config.channels_last))
    task = build_task(config)
    # fused on CUDA: one kernel for all parameters, and with fp16's GradScaler it checks for overflow on the device
    # (the default implementation reads the found-inf flag with .item(): a wait every step)
    fused = device.type == "cuda" or None
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    steps = steps_per_epoch(train_size, config)
    total, warmup = config.epochs * steps, int(config.warmup_epochs * steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup, config.min_lr_ratio))
    precision = resolve_precision(config, device)
    return Training(model, task, optimizer, scheduler, device, precision, grad_scaler(device, precision))


class EpochPlan(NamedTuple):
    """One epoch's batches, staged once: each batch's sample indices (on the data's device) and augmentation values
    (on the training device), so a step only slices tensors that are already where they are used."""

    indices: list[torch.Tensor]
    augment: list[dict]


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """One non-blocking host-to-device copy (from pinned memory on CUDA, so it does not wait)."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def stage_epoch(
    task: Task, n: int, config: TrainConfig, generator: torch.Generator, data_device: torch.device, device: torch.device
) -> EpochPlan:
    """Draw an epoch's permutation and every batch's augmentation values from ``generator`` and copy them to the
    devices in one transfer each.

    The draws are made in the order the per-step code made them (the permutation, then each batch's values), so a
    seed gives the same epoch as before staging existed; the results on the CPU are bitwise unchanged.
    """
    batches = even_batches(
        epoch_batches(n, config.batch_size, generator, config.max_train_batches), distributed.world_size()
    )
    drawn = [task.augment_params(len(index), generator) for index in batches]
    sizes = [len(index) for index in batches]
    indices = list(_to_device(torch.cat(batches), data_device).split(sizes)) if batches else []
    augment: list[dict] = [{} for _ in batches]
    for key in drawn[0] if drawn else {}:
        for i, part in enumerate(_to_device(torch.cat([d[key] for d in drawn]), device).split(sizes)):
            augment[i][key] = part
    return EpochPlan(indices, augment)


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
        raise FloatingPointError(
            f"non-finite training loss ({stacked[bad].item()}) at epoch {epoch}, step {first_step + bad}"
        )


# ----------------------------------------------------------------------------------------------------
# one step, one epoch of training, one evaluation


def train_step(
    model: nn.Module, training: Training, x: torch.Tensor, y: torch.Tensor, accumulation_steps: int = 1
) -> tuple[object, torch.Tensor]:
    """One optimisation step of ``model`` (``training.model`` or its DDP wrapper) on a prepared batch, with
    ``training``'s task, optimizer, schedule, precision and scaler; returns ``(outputs, loss)`` without reading
    the loss.

    With ``accumulation_steps`` > 1 the batch runs as that many micro-batches whose losses are weighted by their
    share of the batch, so the summed gradients are the whole batch's mean (batch norm sees micro-batches);
    under DDP only the last one synchronises gradients. The scaler (fp16) scales the loss before ``backward``
    and skips the step whose gradients overflowed.

    Why a function of its own: the benchmark's conventional loop calls it too, so that a data-path
    comparison times the same step on both sides.
    """
    task, optimizer, scaler = training.task, training.optimizer, training.scaler
    optimizer.zero_grad(set_to_none=True)
    chunks = max(1, min(accumulation_steps, len(x)))
    parts = list(zip(x.chunk(chunks), y.chunk(chunks)))
    outputs, losses = [], []
    for i, (xi, yi) in enumerate(parts):
        last = i == len(parts) - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast(x.device, training.precision):
                out = model(xi)
                loss = task.loss(out, yi)
            if len(parts) > 1:
                loss = loss * (len(yi) / len(y))
            (scaler.scale(loss) if scaler is not None else loss).backward()
        outputs.append(out)
        losses.append(loss)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    training.scheduler.step()
    if len(parts) == 1:
        return outputs[0], losses[0]
    return _concat_outputs(outputs), torch.stack([loss.detach() for loss in losses]).sum()


def _concat_outputs(outputs: list) -> object:
    """Micro-batches' outputs as one batch's: tensors concatenated, or dicts of them key by key."""
    if isinstance(outputs[0], dict):
        return {k: torch.cat([o[k].detach() for o in outputs]) for k in outputs[0]}
    return torch.cat([o.detach() for o in outputs])


def _train_batch(
    net: nn.Module, training: Training, batch: tuple, config: TrainConfig
) -> tuple[object, torch.Tensor, torch.Tensor]:
    """One step of :func:`train_one_epoch`: ``batch`` is ``(images, targets, index, augment)`` with this step's
    staged ``index`` and ``augment`` values; returns ``(outputs, loss, targets)``.

    Everything it reads is on the device already, or (data kept in host memory) gathered on the host and copied
    from pinned memory without waiting; ``tests/test_no_wait.py`` runs it with every tensor on the ``meta``
    device and fails on any tensor built from host data.
    """
    images, targets, index, augment = batch
    device = training.device
    x, y = images[index], targets[index]
    if x.device != device:  # data in host memory
        x, y = _to_device(x, device), _to_device(y, device)
    x = to_input(x, device, config.channels_last)
    x, y = training.task.apply_augment(x, y, augment)  # the whole global batch: each sample augmented as in one process
    x, y = distributed.shard(x), distributed.shard(y)
    outputs, loss = train_step(net, training, x, y, config.accumulation_steps)
    return outputs, loss, y


def train_one_epoch(
    model: nn.Module, training: Training, data: Data, config: TrainConfig, epoch: int, *, progress: bool = True
) -> dict:
    """Train ``model`` (``training.model`` or its DDP wrapper) for one epoch over ``data`` (on the training device
    or in host memory), augmenting each batch on the device, with ``training``'s optimizer, schedule, precision and
    loss scaler.

    Returns:
        ``{"loss": mean training loss, task.metric: metric on the augmented training batches, "lr": last lr,
        "step_losses": each step's mean training loss (this rank's share of the batch), for TensorBoard}``.

    Raises:
        FloatingPointError: the loss became NaN or infinite (names the epoch and the first such step; raised
            within ``FINITE_CHECK_EVERY`` steps of it, before anything of this epoch is saved).
    """
    model.train()
    task, device, (images, targets) = training.task, training.device, data
    seed = epoch_seed(config.seed, epoch)
    torch.manual_seed(distributed.rank_seed(seed))  # dropout and any other global randomness of this epoch
    generator = torch.Generator().manual_seed(seed)  # the same on every rank: one permutation, one augmentation
    plan = stage_epoch(task, len(images), config, generator, images.device, device)
    matrix = ConfusionMatrix(config.num_classes, device)
    losses: list[torch.Tensor] = []  # per step, on the device: reading them each step would stall a GPU
    sizes: list[int] = []  # samples per step (this rank's), to turn the summed losses back into step means
    checked, seen = 0, 0
    steps = len(plan.indices)
    bar = progress_bar(range(1, steps + 1), desc=f"epoch {epoch}", disable=not progress)
    for step in bar:
        batch = (images, targets, plan.indices[step - 1], plan.augment[step - 1])
        outputs, loss, y = _train_batch(model, training, batch, config)
        matrix.update(task.predict(outputs).detach(), y)
        losses.append(loss.detach() * len(y))
        sizes.append(len(y))
        seen += len(y)
        if step % FINITE_CHECK_EVERY == 0:
            _check_finite(losses[checked:], checked + 1, epoch)
            checked = step
        if progress and (step % POSTFIX_EVERY == 0 or step == steps):  # the postfix waits for the device
            bar.set_postfix(
                loss=f"{float(sum(losses)) / seen:.3f}", **{task.metric: f"{task.summarize(matrix)[task.metric]:.3f}"}
            )
    _check_finite(losses[checked:], checked + 1, epoch)
    stacked = torch.stack(losses) if losses else torch.zeros(0, device=device)
    total, seen = _sum_over_ranks(matrix, stacked.sum(), seen)
    return {
        "loss": float(total) / seen if seen else 0.0,
        task.metric: task.summarize(matrix)[task.metric],
        "lr": training.optimizer.param_groups[0]["lr"],
        # read once, here, where the epoch's end waits for the device anyway (this rank's batches)
        "step_losses": (stacked.double().cpu() / torch.tensor(sizes, dtype=torch.float64)).tolist(),
    }


def _sum_over_ranks(matrix: ConfusionMatrix, total: torch.Tensor, seen: int) -> tuple[torch.Tensor, int]:
    """A pass's confusion matrix (in place), loss sum and sample count summed over the ranks; as is in one process."""
    if not distributed.is_distributed():
        return total, seen
    count = torch.tensor(float(seen), dtype=torch.float64, device=total.device)
    distributed.all_reduce_sum(matrix.matrix, total, count)
    return total, int(count)


def _eval_batches(n: int, batch_size: int, keep: set[int], max_batches: int | None) -> list[slice | list[int]]:
    """The validation batches: consecutive slices; under a cap, the first ``max_batches`` and one batch of the
    ``keep`` samples they miss.

    Why the extra batch holds only the kept samples: in a fast dev run at 512 px the batches around 0062 and
    0104 would double the evaluation (the most expensive step of a CPU fast dev run) for three masks.
    """
    batches: list[slice | list[int]] = [slice(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if max_batches is None:
        return batches
    batches = batches[:max_batches]
    covered = max_batches * batch_size
    missing = sorted(i for i in keep if i >= covered)
    return batches + ([missing] if missing else [])


@torch.no_grad()  # not inference_mode: a segmenter's auxiliary head stays in the validation loss (as in training's)
def evaluate(
    model: nn.Module,
    task: Task,
    data: Data,
    config: TrainConfig,
    device: torch.device,
    *,
    keep: list[int] | None = None,
    precision: str | None = None,
) -> dict:
    """Evaluate on in-memory tensors (no augmentation) as ``config``'s run validates: its ``eval_batch_size``,
    ``num_classes``, ``channels_last`` and ``max_eval_batches``, in its precision on ``device``
    (:func:`resolve_precision`, unless ``precision`` names another).

    Under several processes each rank evaluates every ``world_size``-th batch and the results are summed (the
    kept masks gathered), so every rank returns the whole set's metrics.

    Args:
        keep: sample indices whose predicted maps are returned. Under ``config.max_eval_batches`` (a fast dev
            run) only the first that many batches are evaluated, plus one batch of the ``keep`` indices outside
            them, so kept masks exist at every epoch whatever the cap.

    Returns:
        ``{"loss", task.metric, ...task summary, "confusion": ndarray}`` and, when ``keep`` lists sample
        indices, ``"kept": {index: predicted class map (uint8 ndarray)}``.
    """
    model.eval()
    images, targets = data
    precision = precision or resolve_precision(config, device)
    matrix = ConfusionMatrix(config.num_classes, device)
    keep = set(keep or [])
    kept: dict[int, np.ndarray] = {}
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    for indices in _eval_batches(len(images), config.eval_batch_size, keep, config.max_eval_batches)[
        distributed.rank() :: distributed.world_size()
    ]:
        x = to_input(images[indices], device, config.channels_last)
        y = targets[indices].to(device, non_blocking=True)
        with autocast(device, precision):
            outputs = model(x)
            total_loss += task.loss(outputs, y) * len(x)
        prediction = task.predict(outputs)
        matrix.update(prediction, y)
        positions = range(len(images))[indices] if isinstance(indices, slice) else indices  # sample of each row
        for row, i in enumerate(positions):
            if i in keep:
                kept[i] = prediction[row].to(torch.uint8).cpu().numpy()
        seen += len(x)
    total_loss, seen = _sum_over_ranks(matrix, total_loss, seen)
    result = {"loss": float(total_loss) / max(seen, 1), **task.summarize(matrix), "confusion": matrix.to_numpy()}
    if keep:
        result["kept"] = distributed.merge_dicts(kept)
    return result
