"""Speed figures: every model's training and inference throughput, and the project's data path against a
conventional one (``python -m hw1lib bench``).

What it measures, on one device per run:

- **Models** at the homework's sizes (the ``full`` recipes: 32 px for P1, 224 px working resolution for the
  pretrained classifiers, 512 px for P2): training images/s through :func:`hw1lib.engine.train_one_epoch`
  (augmentation, precision and memory format exactly as the engine has them), inference images/s through
  :func:`hw1lib.engine.evaluate`, peak memory, FLOPs per image (``torch.utils.flop_counter``: matrix
  multiplications and convolutions only) and the achieved FLOP rate as a fraction of a matrix-multiply peak
  measured on the same device in the row's precision (bf16 on CUDA; on the CPU fp32, or bf16 for a recipe
  that trains in bf16 there).
- **Data paths**, side by side on the same stand-in folders, for one epoch of P1 model A and a pass of
  P2 model B: the project's (decoded tensors in memory, batch augmentation on the device) against a
  conventional one (a Dataset that opens every file with PIL and transforms it per item, through a
  ``DataLoader`` with 2 workers). First with the same step on both sides (model, optimiser, loss, memory
  format, precision): only the data differ. Then, for P1 model A, the project's engine as it trains
  against the conventional loop as it is usually written (NCHW, fp32): what a user's epoch costs.
- **Levers** for P1 model A: memory format, CPU bf16 autocast and ``torch.compile`` set one by one, to
  show what each buys (the engine's choice is marked).

Timings are medians of repeated steps or epochs (our CPU machines are shared and noisy). Models are built
with random weights: speed does not depend on the weights, and no download is needed.

What it is not: a test. The targets in ``benchmarks/README.md`` are goals to read against the figures.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from hw1lib.data.classification import list_pngs, load_classification_folder, parse_label
from hw1lib.data.palette import decode_mask
from hw1lib.data.segmentation import load_segmentation_folder, scan_pairs
from hw1lib.engine import (TrainConfig, autocast, evaluate, memory_format, resolve_device, resolve_precision, save_json,
                           to_input, train_one_epoch, train_step)
from hw1lib.metrics import ConfusionMatrix
from hw1lib.models import build_model, list_models
from hw1lib.paths import REPO_ROOT, data_dir, standin_dir
from hw1lib.profiles import EXPERIMENTS, PROFILES, get_config
from hw1lib.tasks import build_task

#: the conventional pipeline's DataLoader workers (what a typical homework solution uses)
CONVENTIONAL_WORKERS = 2
#: the pretrained classifiers' working resolution (their ImageNet training size)
PRETRAINED_SIDE = 224


@dataclass(frozen=True)
class Plan:
    """How much one run measures: the full benchmark or ``quick`` (CI, seconds)."""

    quick: bool
    profile: str  # recipes the model rows and data paths take their settings from
    p2_side: int  # P2 image side of the model rows
    pretrained_side: int  # working resolution of the pretrained P1 classifiers
    cpu_pixels_per_step: int  # on the CPU, batches are capped at about this many input pixels
    warmup_steps: int
    timed_steps: int  # timed calls per model (median taken)
    steps_per_call: int  # training steps inside one timed call
    epoch_repeats: int  # timed epochs per data path (median taken)
    p1_standin: tuple[str, int]  # (stand-in size, P2 side) holding the P1 data-path folder
    p2_standin: tuple[str, int]
    p2_batches: int | None  # P2 data-path batches per pass (None: the whole epoch)
    matmul_size: int
    levers: tuple[str, ...]
    conventional_baseline: str | None = None  # setting of a conventional loop to compare P1 model A's engine with
    threads: int | None = None  # torch intra-op threads for the run; None keeps torch's default


def make_plan(quick: bool, device: torch.device) -> Plan:
    """The full plan (homework sizes, bounded on the CPU) or the ``quick`` one (tiny sizes, for CI)."""
    cpu_levers = ("NCHW, fp32", "channels_last, fp32", "channels_last, bf16 autocast")
    if quick:
        # one thread: on a busy 2-core machine, OpenMP regions of 2 threads stall whenever one core is taken
        # (small ops become ~30x slower), and a CI run must not depend on what else runs there
        return Plan(quick=True, profile="smoke", p2_side=32, pretrained_side=32, cpu_pixels_per_step=65_536,
                    warmup_steps=0, timed_steps=1, steps_per_call=1, epoch_repeats=1, p1_standin=("smoke", 32),
                    p2_standin=("smoke", 32), p2_batches=2, matmul_size=256, levers=("NCHW, fp32", cpu_levers[-1]),
                    conventional_baseline="NCHW, fp32", threads=1)
    if device.type == "cuda":
        # the full stand-in: 22,500 P1 images (the target's epoch), 2,000 P2 pairs at 512 px
        return Plan(quick=False, profile="full", p2_side=512, pretrained_side=PRETRAINED_SIDE,
                    cpu_pixels_per_step=524_288, warmup_steps=2, timed_steps=10, steps_per_call=10, epoch_repeats=3,
                    p1_standin=("full", 512), p2_standin=("full", 512), p2_batches=40, matmul_size=8192,
                    levers=("engine as is", "engine as is, torch.compile"))
    # CPU: the demo stand-in's 2,000 P1 images (a 22,500-image epoch of model A takes minutes on 2 cores) and
    # a few P2 batches at 512 px
    return Plan(quick=False, profile="full", p2_side=512, pretrained_side=PRETRAINED_SIDE, cpu_pixels_per_step=524_288,
                warmup_steps=1, timed_steps=3, steps_per_call=1, epoch_repeats=3, p1_standin=("demo", 512),
                p2_standin=("demo", 512), p2_batches=2, matmul_size=2048,
                levers=(*cpu_levers, f"{cpu_levers[-1]}, torch.compile"), conventional_baseline="NCHW, fp32")


# ----------------------------------------------------------------------------------------------------
# small measuring tools


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones (device synchronised)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        tic = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - tic)
    return times


def time_interleaved(fns: dict[str, Callable[[], object]], device: torch.device, warmup: int,
                     repeats: int) -> dict[str, list[float]]:
    """:func:`time_calls` for several functions at once, one call of each per round (the order rotating).

    Why: on a shared machine a burst of other work lasts seconds to minutes; timed round by round, the
    variants being compared meet it alike, so their ratio stays meaningful even when absolute figures move.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            times[name] += time_calls(fns[name], device, 0, 1)
    return times


def matmul_peak(device: torch.device, dtype: torch.dtype | None = None, size: int = 2048,
                repeats: int = 10) -> float | None:
    """The best matrix-multiply rate measured on ``device``, in FLOP/s (bf16 on CUDA, fp32 on the CPU).

    Returns ``None`` when the dtype cannot be multiplied there.
    """
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    inner = 20 if device.type == "cuda" else 1  # CUDA: many launches per timing, so launch latency hides
    try:
        a, b, c = (torch.randn(size, size, device=device).to(dtype) for _ in range(3))

        def multiply() -> None:
            for _ in range(inner):
                torch.mm(a, b, out=c)

        times = time_calls(multiply, device, 2, repeats)
    except RuntimeError:
        return None
    return 2 * size**3 * inner / min(times)


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape=None, **_: object) -> int:
    """FLOPs of a convolution's backward: grad_input and grad_weight each cost what the forward costs.

    Why not torch's own formula: in torch 2.13 it ignores ``groups`` and counts a grouped (depthwise)
    convolution's backward ``groups`` times over (65x the forward for a 64-channel depthwise 3x3), which
    made the EfficientNets' training FLOPs 10-40x too high.
    """
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def flop_counter() -> FlopCounterMode:
    """``FlopCounterMode`` without a display, with the grouped-convolution backward counted correctly."""
    return FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop})


def count_flops(model: nn.Module, task, images: torch.Tensor, targets: torch.Tensor, device: torch.device,
                precision: str = "fp32") -> tuple[float, float]:
    """FLOPs per image of one training step (forward + backward) and of one inference (forward).

    Counts what ``FlopCounterMode`` counts: matrix multiplications and convolutions (not element-wise
    work, normalisation or pooling), under the engine's autocast for ``precision``.
    """
    x, y = to_input(images, device), targets.to(device)
    model.train()
    with flop_counter() as train_counter:
        with autocast(device, precision):
            loss = task.loss(model(x), y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad(), flop_counter() as infer_counter, autocast(device, precision):
        model(x)
    return train_counter.get_total_flops() / len(x), infer_counter.get_total_flops() / len(x)


def _status_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict]:
    """Measure the peak memory of the block; the yielded dict gets ``peak_mib`` and ``kind`` on exit.

    CUDA: ``torch.cuda.max_memory_allocated`` above what was allocated before. CPU: the process's peak
    resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) above its size before the block,
    so weights, optimiser state, activations and allocator slack all count.
    """
    result: dict = {}
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield result
        peak = torch.cuda.max_memory_allocated(device)
        result.update(peak_mib=(peak - base) / 2**20, kind="cuda max_memory_allocated")
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, so the baseline is the live size
    base, reset = _status_kib("VmRSS"), True
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    except OSError:
        reset = False
    yield result
    peak = _status_kib("VmHWM") if reset else None
    if base is None or peak is None:
        result.update(peak_mib=None, kind="unavailable (no /proc/self/clear_refs)")
    else:
        result.update(peak_mib=(peak - base) / 1024, kind="CPU peak RSS increase")


# ----------------------------------------------------------------------------------------------------
# model rows


@dataclass(frozen=True)
class ModelCase:
    """One registered model at the size it is benchmarked at."""

    config: TrainConfig  # the recipe, with the benchmark's batch sizes
    image_side: int  # side of the stored images the engine is fed (32 for P1, 512 for P2)
    working_side: int  # side the network computes on (``input_size`` of a resizing classifier)


def _recipe(model: str, profile: str) -> TrainConfig:
    """The first recipe that trains ``model``, searching ``profile`` first, then the others."""
    for prof in (profile, *[p for p in reversed(PROFILES) if p != profile]):
        for experiment in EXPERIMENTS:
            config = get_config(experiment, prof)
            if config.model == model:
                return config
    raise ValueError(f"model {model!r} has no recipe in hw1lib.profiles; add one to benchmark it")


def bench_batch(recipe_batch: int, working_side: int, device: torch.device, plan: Plan) -> int:
    """The recipe's batch on CUDA; on the CPU at most ``plan.cpu_pixels_per_step`` input pixels (and 2 images)."""
    if device.type == "cuda" and not plan.quick:
        return recipe_batch
    return min(recipe_batch, max(2, plan.cpu_pixels_per_step // working_side**2))


def model_cases(plan: Plan, device: torch.device) -> list[ModelCase]:
    """Every registered model with its recipe's settings at the plan's sizes."""
    cases = []
    for name in list_models():
        config = _recipe(name, plan.profile)
        kwargs = dict(config.model_kwargs)
        if "input_size" in kwargs:
            kwargs["input_size"] = plan.pretrained_side
        image_side = 32 if config.task == "classification" else plan.p2_side
        augment = {k: v for k, v in config.augment.items() if k != "out_size"}  # P2 trains at the image's size
        working = kwargs.get("input_size", image_side)
        batch = bench_batch(config.batch_size, working, device, plan)
        eval_batch = bench_batch(config.eval_batch_size, working, device, plan)
        config = dataclasses.replace(config, pretrained=False, model_kwargs=kwargs, augment=augment, batch_size=batch,
                                     eval_batch_size=eval_batch, keep_mask_ids=[])
        cases.append(ModelCase(config, image_side, working))
    return cases


def synthetic_data(config: TrainConfig, side: int, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8 images and targets shaped like the task's data (speed does not depend on content)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=generator)
    shape = (n,) if config.task == "classification" else (n, side, side)
    dtype = torch.int64 if config.task == "classification" else torch.uint8
    targets = torch.randint(0, config.num_classes, shape, generator=generator).to(dtype)
    return images.to(device), targets.to(device)


def build_training(config: TrainConfig, device: torch.device):
    """Model (seeded), AdamW and a constant schedule, placed as the engine places them."""
    torch.manual_seed(config.seed)
    model = build_model(config.model, num_classes=config.num_classes, pretrained=False, **config.model_kwargs)
    model = model.to(device, memory_format=memory_format(config.channels_last))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return model, optimizer, scheduler


def _train_calls(model, task, config: TrainConfig, data, optimizer, scheduler, device, plan: Plan) -> list[float]:
    """Seconds per timed call of ``train_one_epoch`` over ``plan.steps_per_call`` batches."""
    config = dataclasses.replace(config, max_train_batches=plan.steps_per_call)
    epochs = iter(range(1, 1_000_000))

    def call() -> None:
        train_one_epoch(model, task, *data, optimizer, scheduler, config, next(epochs), device, progress=False)

    return time_calls(call, device, plan.warmup_steps, plan.timed_steps)


def measure_model(case: ModelCase, device: torch.device, plan: Plan, peak: float | None = None) -> dict:
    """Training and inference images/s, peak memory and FLOP rate of one model through the engine.

    The fractions of ``peak`` (FLOP/s) are filled in when it is given (:func:`apply_peaks` does it later).
    """
    config, side = case.config, case.image_side
    task = build_task(config.task, **config.to_dict())
    precision = resolve_precision(config, device)
    n = max(config.batch_size, config.eval_batch_size) * plan.steps_per_call
    data = synthetic_data(config, side, n, device)
    with peak_memory(device) as memory:
        model, optimizer, scheduler = build_training(config, device)
        train = _train_calls(model, task, config, data, optimizer, scheduler, device, plan)
    n_eval = config.eval_batch_size * plan.steps_per_call
    eval_data = (data[0][:n_eval], data[1][:n_eval])
    infer = time_calls(lambda: evaluate(model, task, *eval_data, config.eval_batch_size, device, config.num_classes,
                                        precision=precision), device, 1, plan.timed_steps)
    flops_train, flops_infer = count_flops(model, task, data[0][:2], data[1][:2], device, precision)
    train_ips = config.batch_size * plan.steps_per_call / statistics.median(train)
    infer_ips = n_eval / statistics.median(infer)
    return {
        "model": config.model, "task": config.task, "input": f"{side}x{side}", "working_side": case.working_side,
        "batch_size": config.batch_size, "eval_batch_size": config.eval_batch_size, "precision": precision,
        "train_images_per_s": train_ips, "infer_images_per_s": infer_ips,
        "train_step_seconds": train, "infer_batch_seconds": infer,
        "peak_memory_mib": memory["peak_mib"], "peak_memory_kind": memory["kind"],
        "train_gflop_per_image": flops_train / 1e9, "infer_gflop_per_image": flops_infer / 1e9,
        "train_achieved_tflops": flops_train * train_ips / 1e12,
        "infer_achieved_tflops": flops_infer * infer_ips / 1e12,
        "peak_used": _peak_for(precision, device),
        "train_fraction_of_peak": flops_train * train_ips / peak if peak else None,
        "infer_fraction_of_peak": flops_infer * infer_ips / peak if peak else None, "load_average_after": _load(),
    }


# ----------------------------------------------------------------------------------------------------
# levers: memory format, precision and compilation set one by one


@dataclass(frozen=True)
class Setting:
    """How a training step runs: the model's memory format, CPU bf16 autocast, ``torch.compile``."""

    channels_last: bool
    cpu_bf16: bool
    compile: bool


def lever_setting(lever: str | None, config: TrainConfig) -> Setting:
    """The :class:`Setting` a lever name stands for, e.g. ``"NCHW, fp32"`` or ``"channels_last, bf16 autocast"``.

    ``None`` or ``"engine as is"`` is the engine's own choice for ``config`` (channels_last, the recipe's
    ``cpu_bf16``); a name may add ``", torch.compile"``. On CUDA the engine trains in bf16 whatever the name
    says about the CPU; the row's ``precision`` records what was actually used.
    """
    lever = lever or "engine as is"
    if lever.startswith("engine as is"):
        return Setting(config.channels_last, config.cpu_bf16, "torch.compile" in lever)
    parts = [part.strip() for part in lever.split(",")]
    known = {"NCHW", "channels_last", "fp32", "bf16 autocast", "torch.compile"}
    one_layout = ("NCHW" in parts) != ("channels_last" in parts)
    one_precision = ("fp32" in parts) != ("bf16 autocast" in parts)
    if not (set(parts) <= known and one_layout and one_precision):
        raise ValueError(f"lever {lever!r}: expected 'engine as is' or 'NCHW|channels_last, fp32|bf16 autocast'"
                         f" (optionally ', torch.compile')")
    return Setting("channels_last" in parts, "bf16 autocast" in parts, "torch.compile" in parts)


def _peak_for(precision: str, device: torch.device) -> str:
    """The measured peak a row's FLOP rate is a fraction of: the CPU's bf16 one for bf16 on a CPU."""
    return "cpu_bf16" if precision == "bf16" and device.type == "cpu" else "main"


def _lever_call(case: ModelCase, lever: str, device: torch.device, plan: Plan) -> tuple[Callable[[], None], dict]:
    """One training call of the engine under ``lever``, and what its row needs (model, data, precision, compile time).

    ``torch.compile`` is compiled here, by a first call (its seconds go to ``compile_seconds``).
    """
    setting = lever_setting(lever, case.config)
    config = dataclasses.replace(case.config, cpu_bf16=setting.cpu_bf16, channels_last=setting.channels_last)
    task = build_task(config.task, **config.to_dict())
    data = synthetic_data(config, case.image_side, config.batch_size * plan.steps_per_call, device)
    model, optimizer, scheduler = build_training(config, device)
    precision = resolve_precision(config, device)
    info = {"eager": model, "task": task, "data": data, "precision": precision, "compile_seconds": None,
            "engine": setting == lever_setting(None, case.config)}
    bounded = dataclasses.replace(config, max_train_batches=plan.steps_per_call)
    epochs = iter(range(1, 1_000_000))
    net = torch.compile(model) if setting.compile else model

    def call() -> None:
        train_one_epoch(net, task, *data, optimizer, scheduler, bounded, next(epochs), device, progress=False)

    if net is not model:
        tic = time.perf_counter()
        call()
        info["compile_seconds"] = time.perf_counter() - tic
    return call, info


def measure_levers(case: ModelCase, levers: tuple[str, ...], device: torch.device, plan: Plan) -> list[dict]:
    """Training images/s of the engine's step in each setting (names as in ``Plan.levers``), timed interleaved.

    A lever that fails is reported with its error instead of figures. ``engine`` marks the engine's own
    setting; ``peak_used`` names the peak the row's fraction is taken of (:func:`apply_peaks`).
    """
    calls, infos, rows = {}, {}, {}
    for lever in levers:
        rows[lever] = {"model": case.config.model, "lever": lever, "batch_size": case.config.batch_size}
        try:
            calls[lever], infos[lever] = _lever_call(case, lever, device, plan)
        except Exception as error:  # noqa: BLE001  a lever that does not work here is a finding, not a crash
            rows[lever]["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    times = time_interleaved(calls, device, plan.warmup_steps, plan.timed_steps)
    for lever, info in infos.items():
        ips = case.config.batch_size * plan.steps_per_call / statistics.median(times[lever])
        data = info["data"]
        flops, _ = count_flops(info["eager"], info["task"], data[0][:2], data[1][:2], device, info["precision"])
        rows[lever].update(train_images_per_s=ips, train_step_seconds=times[lever], precision=info["precision"],
                           engine=info["engine"], compile_seconds=info["compile_seconds"],
                           train_achieved_tflops=flops * ips / 1e12, peak_used=_peak_for(info["precision"], device),
                           load_average_after=_load())
    return list(rows.values())


# ----------------------------------------------------------------------------------------------------
# the conventional data path


class ConventionalClassificationSet(Dataset):
    """A torchvision-style P1 training set: opens each PNG with PIL and transforms it per item.

    Transforms: random crop with zero padding and horizontal flip (the project's augmentation), then
    ``ToTensor`` (float in [0, 1], what the models take).
    """

    def __init__(self, folder: Path, augment: dict) -> None:
        from torchvision import transforms as T

        self.files = list_pngs(folder)
        self.labels = [parse_label(p.name) for p in self.files]
        steps = [T.RandomCrop(32, padding=augment["padding"])] if augment.get("padding") else []
        steps += [T.RandomHorizontalFlip()] if augment.get("flip") else []
        self.transform = T.Compose([*steps, T.ToTensor()])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.files[index]) as image:
            return self.transform(image.convert("RGB")), self.labels[index]


class ConventionalSegmentationSet(Dataset):
    """A torchvision-style P2 training set: decodes each JPEG/mask pair with PIL and transforms it per item.

    Transforms, applied jointly to image and mask (``torchvision.transforms.v2`` with a ``Mask``): a random
    square crop of ``scale`` of the side resized to ``out_size``, then (``dihedral``) a horizontal flip and a
    random 90-degree rotation: the project's dihedral crop/scale augmentation, per item.
    """

    def __init__(self, folder: Path, out_size: int, scale: tuple[float, float], dihedral: bool = True) -> None:
        from torchvision.transforms import v2

        _, self.images, self.masks = scan_pairs(folder)
        if self.masks is None:
            raise ValueError(f"{folder} has no masks: the data-path comparison needs a labelled P2 folder")
        area = (scale[0] ** 2, scale[1] ** 2)
        flip = [v2.RandomHorizontalFlip()] if dihedral else []
        self.transform = v2.Compose([v2.RandomResizedCrop(out_size, scale=area, ratio=(1.0, 1.0)), *flip])
        self.dihedral = dihedral

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision import tv_tensors

        with Image.open(self.images[index]) as image:
            pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
        with Image.open(self.masks[index]) as mask:
            classes = torch.from_numpy(decode_mask(np.asarray(mask.convert("RGB"))))
        pixels, classes = self.transform(tv_tensors.Image(pixels), tv_tensors.Mask(classes))
        k = int(torch.randint(0, 4, ())) if self.dihedral else 0
        pixels, classes = torch.rot90(pixels, k, (-2, -1)), torch.rot90(classes, k, (-2, -1))
        return pixels.float().div(255), classes.as_subclass(torch.Tensor)


def train_side(config: TrainConfig, folder: Path) -> int:
    """The side of the images a model trains on: 32 for P1; for P2 the augmentation's ``out_size`` or the files'."""
    if config.task == "classification":
        return 32
    if config.augment.get("out_size"):
        return int(config.augment["out_size"])
    with Image.open(scan_pairs(folder)[1][0]) as image:
        return image.size[0]


def conventional_loader(config: TrainConfig, folder: Path, device: torch.device) -> DataLoader:
    """The conventional pipeline for ``config``'s task over a training folder."""
    augment = config.augment
    if config.task == "classification":
        dataset: Dataset = ConventionalClassificationSet(folder, augment)
    else:
        # the defaults of hw1lib.data.augment.random_dihedral_crop_scale; no augmentation when the recipe has none
        scale = tuple(augment.get("scale", (0.5, 1.0))) if augment else (1.0, 1.0)
        dataset = ConventionalSegmentationSet(folder, train_side(config, folder), scale,
                                              bool(augment) and augment.get("dihedral", True))
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=True, num_workers=CONVENTIONAL_WORKERS,
                      pin_memory=device.type == "cuda")


def conventional_pass(model: nn.Module, task, loader: DataLoader, optimizer, scheduler, config: TrainConfig,
                      device: torch.device, max_batches: int | None = None) -> int:
    """One (possibly bounded) training epoch over a DataLoader: the engine's step with another data source.

    Returns:
        the number of images trained on.
    """
    model.train()
    precision = resolve_precision(config, device)
    matrix = ConfusionMatrix(config.num_classes, device)
    seen = 0
    for step, (x, y) in enumerate(loader):
        if max_batches is not None and step >= max_batches:
            break
        x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format(config.channels_last))  # as to_input
        y = y.to(device, non_blocking=True)
        outputs, loss = train_step(model, task, x, y, optimizer, scheduler, precision)
        matrix.update(task.predict(outputs).detach(), y)
        value = loss.item()  # a typical loop reads the loss every step (running_loss += loss.item())
        if not math.isfinite(value):
            raise FloatingPointError(f"non-finite loss ({value}) at step {step + 1} of the conventional pipeline")
        seen += len(x)
    task.summarize(matrix)
    return seen


def _data_only_conventional(loader: DataLoader, device: torch.device, max_batches: int | None) -> int:
    seen = 0
    for step, (x, y) in enumerate(loader):
        if max_batches is not None and step >= max_batches:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        seen += len(x)
    return seen


def _data_only_project(task, images: torch.Tensor, targets: torch.Tensor, config: TrainConfig, device: torch.device,
                       max_batches: int | None) -> int:
    """The engine's data work for one epoch (index, to float on the device, augment), without the model."""
    generator = torch.Generator().manual_seed(0)
    seen = 0
    for index in torch.randperm(len(images), generator=generator).split(config.batch_size)[:max_batches]:
        x = to_input(images[index], device)
        y = targets[index].to(device, non_blocking=True)
        x, y = task.augment(x, y, generator)
        seen += len(x)
    return seen


# ----------------------------------------------------------------------------------------------------
# data-path rows


def _load_project_data(config: TrainConfig, folder: Path,
                       device: torch.device) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Decode the folder into a fresh cache, load it again from the cache, and place it as the engine does."""
    cache = Path(tempfile.mkdtemp(prefix="hw1-bench-cache-"))
    load = (lambda: load_classification_folder(folder, labelled=True, cache=cache)) if config.task == "classification" \
        else (lambda: load_segmentation_folder(folder, cache=cache))
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
    _sync(device)
    one_off = {"decode_seconds": decode, "cache_load_seconds": cache_load,
               "to_device_seconds": time.perf_counter() - tic}
    return images, targets, one_off


def epoch_images(n: int, batch_size: int, max_batches: int | None, drops_single: bool) -> int:
    """Images one pass trains on: ``n``, or ``max_batches`` full batches; the engine drops a last batch of one."""
    if drops_single and n % batch_size == 1 and n > batch_size:
        n -= 1
    return n if max_batches is None else min(n, max_batches * batch_size)


def _project_passes(model, task, optimizer, scheduler, config: TrainConfig, folder: Path, device: torch.device,
                    plan: Plan, max_batches: int | None):
    """(warm-up, training pass, data-only pass, images per pass, one-off costs) of the project's data path."""
    images, targets, one_off = _load_project_data(config, folder, device)
    epochs = iter(range(1, 1_000_000))

    def train_pass(batches: int | None = max_batches) -> None:
        bounded = dataclasses.replace(config, max_train_batches=batches)
        train_one_epoch(model, task, images, targets, optimizer, scheduler, bounded, next(epochs), device,
                        progress=False)

    def data_pass() -> None:
        _data_only_project(task, images, targets, config, device, max_batches)

    per_pass = epoch_images(len(images), config.batch_size, max_batches, drops_single=True)
    return lambda: train_pass(plan.warmup_steps), train_pass, data_pass, per_pass, one_off


def _conventional_passes(model, task, optimizer, scheduler, config: TrainConfig, folder: Path, device: torch.device,
                         plan: Plan, max_batches: int | None):
    """(warm-up, training pass, data-only pass, images per pass, one-off costs) of the conventional data path."""
    loader = conventional_loader(config, folder, device)

    def train_pass(batches: int | None = max_batches) -> None:
        conventional_pass(model, task, loader, optimizer, scheduler, config, device, batches)

    def data_pass() -> None:
        _data_only_conventional(loader, device, max_batches)

    per_pass = epoch_images(len(loader.dataset), config.batch_size, max_batches, drops_single=False)
    return lambda: train_pass(plan.warmup_steps), train_pass, data_pass, per_pass, {}


PIPELINES = {"conventional": _conventional_passes, "project": _project_passes}


def _setup_pipeline(pipeline: str, experiment: str, folder: Path, device: torch.device, plan: Plan,
                    max_batches: int | None, lever: str | None) -> dict:
    """A seeded model, AdamW and the pipeline's passes, ready to time; ``row`` holds what is known before timing."""
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}; valid: {sorted(PIPELINES)}")
    config = get_config(experiment, plan.profile, pretrained=False, keep_mask_ids=[])
    side = train_side(config, folder)
    config = dataclasses.replace(config, batch_size=bench_batch(config.batch_size, side, device, plan))
    setting = lever_setting(lever, config)
    if setting.compile:
        raise ValueError(f"lever {lever!r}: the data-path comparison runs eager models only")
    config = dataclasses.replace(config, cpu_bf16=setting.cpu_bf16, channels_last=setting.channels_last)
    task = build_task(config.task, **config.to_dict())
    model, optimizer, scheduler = build_training(config, device)
    warm, train_pass, data_pass, per_pass, one_off = PIPELINES[pipeline](model, task, optimizer, scheduler, config,
                                                                         folder, device, plan, max_batches)
    row = {"experiment": experiment, "pipeline": pipeline, "lever": lever or "engine as is", "model": config.model,
           "precision": resolve_precision(config, device), "channels_last": config.channels_last,
           "folder": str(folder), "images_per_pass": per_pass, "whole_epoch": max_batches is None,
           "batch_size": config.batch_size, "image_side": side,
           "workers": CONVENTIONAL_WORKERS if pipeline == "conventional" else 0, "one_off": one_off}
    return {"row": row, "warm": warm, "train": train_pass, "data": data_pass}


def _finish_row(row: dict, train: list[float], data_only: list[float]) -> dict:
    n = row["images_per_pass"]
    return {**row, "epoch_seconds": statistics.median(train), "epoch_seconds_all": train,
            "train_images_per_s": n / statistics.median(train), "data_only_seconds": statistics.median(data_only),
            "data_only_images_per_s": n / statistics.median(data_only), "load_average_after": _load()}


def measure_epoch(pipeline: str, experiment: str, folder: Path, device: torch.device, plan: Plan,
                  max_batches: int | None = None, lever: str | None = None) -> dict:
    """One pipeline alone (``"project"`` or ``"conventional"``), measured as :func:`compare_data_paths` does."""
    setup = _setup_pipeline(pipeline, experiment, folder, device, plan, max_batches, lever)
    if plan.warmup_steps:
        setup["warm"]()
    train = time_calls(setup["train"], device, 0, plan.epoch_repeats)
    data_only = time_calls(setup["data"], device, min(1, plan.warmup_steps), plan.epoch_repeats)
    return _finish_row(setup["row"], train, data_only)


def compare_data_paths(experiment: str, folder: Path, device: torch.device, plan: Plan, max_batches: int | None = None,
                       lever: str | None = None, conventional_lever: str | None = None) -> dict:
    """One epoch (or ``max_batches`` batches) of ``experiment`` through the conventional and the project data path.

    Both pipelines train the same seeded model with the same optimiser, loss and batch size, in the
    engine's memory format and precision or in those of ``lever`` (a name as in ``Plan.levers``);
    ``conventional_lever`` gives the conventional pipeline a setting of its own (``"NCHW, fp32"``: the
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
    data = time_interleaved({p: s["data"] for p, s in setups.items()}, device, min(1, plan.warmup_steps),
                            plan.epoch_repeats)
    rows = [_finish_row(setups[p]["row"], train[p], data[p]) for p in PIPELINES]
    conventional, project = rows
    ratios = {"train_speedup": project["train_images_per_s"] / conventional["train_images_per_s"],
              "data_only_speedup": project["data_only_images_per_s"] / conventional["data_only_images_per_s"]}
    return {"experiment": experiment, "lever": lever or "engine as is",
            "conventional_lever": levers["conventional"] or "engine as is", "rows": rows, "ratios": ratios}


# ----------------------------------------------------------------------------------------------------
# context, output, entry point


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name from ``/proc/cpuinfo``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        if match:
            return match.group(1).strip()
    return platform.processor() or platform.machine()


def git_commit() -> str:
    """``git rev-parse --short HEAD``, with ``+dirty`` when the working tree has uncommitted changes."""
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout

        head = git("rev-parse", "--short", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head + ("+dirty" if dirty else "")) if head else "unknown"


def environment(device: torch.device, command: str) -> dict:
    """Where and when the figures were measured: device, cores, versions, date, commit, command, load."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"device": device.type, "device_name": device_name(device), "cpu_cores": cores,
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": git_commit(), "command": command,
            "nice": os.nice(0) if hasattr(os, "nice") else None,
            "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None}


def default_out(device: torch.device, quick: bool) -> Path:
    """Where results go without ``--out``: the committed ``benchmarks/results-<device>.json``, or a temp file
    for ``--quick`` (a quick run never overwrites the committed figures unless ``--out`` says so)."""
    if quick:
        return Path(tempfile.gettempdir()) / f"hw1-bench-quick-{device.type}.json"
    return REPO_ROOT / "benchmarks" / f"results-{device.type}.json"


def standin_folder(size: str, p2_side: int, quick: bool) -> Path:
    """Where the data-path comparison's stand-in lives: a temporary folder (quick), the project's own
    ``data/standin-<size>`` when the P2 side is that size's default, else ``data/standin-bench-<size>-<side>``."""
    from hw1lib.data.standin import STANDIN_SIZES

    if quick:
        return Path(tempfile.mkdtemp(prefix="hw1-bench-")) / "standin"
    if STANDIN_SIZES[size].p2_image_size == p2_side:
        return standin_dir(size)
    return data_dir() / f"standin-bench-{size}-{p2_side}"


def prepare_standins(plan: Plan) -> dict[tuple[str, int], Path]:
    """Generate (or reuse) the stand-ins the plan's data paths read, once per distinct (size, P2 side)."""
    from hw1lib.data.standin import generate_standin

    folders = {}
    for size, side in dict.fromkeys([plan.p1_standin, plan.p2_standin]):
        folders[(size, side)] = standin_folder(size, side, plan.quick)
        _log(f"stand-in {size} (P2 {side} px) in {folders[(size, side)]}")
        generate_standin(folders[(size, side)], size=size, seed=0, p2_image_size=side)
    return folders


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f}"


def _models_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{
        "model": r["model"], "input": r["input"], "works at": r["working_side"], "batch": r["batch_size"],
        "precision": r["precision"], "train img/s": f"{r['train_images_per_s']:.1f}",
        "infer img/s": f"{r['infer_images_per_s']:.1f}", "peak MiB": "-" if r["peak_memory_mib"] is None else f"{r['peak_memory_mib']:.0f}",
        "GFLOP/img train": f"{r['train_gflop_per_image']:.2f}", "train TFLOP/s": f"{r['train_achieved_tflops']:.3f}",
        "% of peak": _percent(r["train_fraction_of_peak"]), "infer % of peak": _percent(r["infer_fraction_of_peak"]),
    } for r in rows])


def _levers_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{
        "model": r["model"], "setting": r["lever"] + (" (the engine's)" if r.get("engine") else ""),
        "precision": r.get("precision", "-"), "batch": r["batch_size"],
        "train img/s": f"{r['train_images_per_s']:.1f}" if "error" not in r else "failed: " + r["error"][:60],
        "% of its peak": _percent(r.get("train_fraction_of_peak")), "peak": r.get("peak_used", "-"),
        "compile s": f"{r['compile_seconds']:.0f}" if r.get("compile_seconds") else "-",
    } for r in rows])


def _paths_table(comparisons: dict) -> pd.DataFrame:
    return pd.DataFrame([{
        "experiment": r["experiment"], "pipeline": r["pipeline"], "setting": r["lever"], "precision": r["precision"],
        "images": r["images_per_pass"],
        "epoch": "whole" if r["whole_epoch"] else "bounded", "batch": r["batch_size"], "side": r["image_side"],
        "seconds": f"{r['epoch_seconds']:.2f}", "train img/s": f"{r['train_images_per_s']:.1f}",
        "data-only img/s": f"{r['data_only_images_per_s']:.0f}",
        "one-off s": f"{r['one_off']['decode_seconds']:.2f} decode, {r['one_off']['cache_load_seconds']:.2f} cache"
        if r["one_off"] else "-",
    } for comparison in comparisons.values() for r in comparison["rows"]])


def format_tables(results: dict) -> str:
    """The printed summary: models, levers and data paths as plain-text tables, then the ratios."""
    env, peaks = results["environment"], results["peaks"]
    peak_text = "unmeasured" if peaks["main"] is None else f"{peaks['main'] / 1e12:.3f} TFLOP/s ({peaks['main_kind']})"
    if peaks.get("cpu_bf16"):
        peak_text += f"; CPU bf16 matmul {peaks['cpu_bf16'] / 1e12:.3f} TFLOP/s (the peak of rows in bf16)"
    lines = [f"{env['device_name']} ({env['device']}, {env['cpu_cores']} cores, {env['torch_threads']} torch threads), "
             f"torch {env['torch']}, commit {env['commit']}, {env['date']}", f"matmul peak: {peak_text}", "",
             "models (through the engine)", _models_table(results["models"]).to_string(index=False), "",
             "levers for P1 model A (memory format, precision, compilation)",
             _levers_table(results["levers"]).to_string(index=False), "",
             "data paths (same folder, model, optimiser, loss; the setting of each side as listed)",
             _paths_table(results["data_paths"]).to_string(index=False), ""]
    for name, comparison in results["data_paths"].items():
        r = comparison["ratios"]
        lines.append(f"{name}: project/conventional = {r['train_speedup']:.2f}x per epoch (training), "
                     f"{r['data_only_speedup']:.1f}x data path alone")
    return "\n".join(lines)


def _load() -> float | None:
    """The 1-minute load average (how busy the machine was), where the OS reports one."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_benchmark(device: torch.device, plan: Plan, command: str) -> dict:
    """Measure everything the plan asks for and return the results (what the JSON holds)."""
    threads = torch.get_num_threads()
    if plan.threads:
        torch.set_num_threads(plan.threads)
    try:
        return _run(device, plan, command)
    finally:
        torch.set_num_threads(threads)


def measure_peaks(device: torch.device, plan: Plan) -> dict[str, float | None]:
    """The device's matmul peak (``main``: bf16 on CUDA, fp32 on the CPU) and, on the CPU, a bf16 one."""
    peaks = {"main": matmul_peak(device, size=plan.matmul_size)}
    if device.type == "cpu":
        peaks["cpu_bf16"] = matmul_peak(device, torch.bfloat16, size=2 * plan.matmul_size, repeats=5)
    return peaks


def apply_peaks(results: dict, samples: list[dict]) -> None:
    """Keep the best of the peak measurements (start and end of the run) and fill in every row's fraction of it."""
    peaks: dict = {name: max((p[name] for p in samples if p.get(name)), default=None) for name in samples[0]}
    peaks.update(main_kind="bf16 matmul" if results["environment"]["device"] == "cuda" else
                 "fp32 matmul (rows in bf16 use cpu_bf16)", samples=samples)
    results["peaks"] = peaks
    for row in results["models"] + results["levers"]:
        peak = peaks.get(row.get("peak_used", "main"))
        for kind in ("train", "infer"):
            if f"{kind}_achieved_tflops" in row:
                row[f"{kind}_fraction_of_peak"] = row[f"{kind}_achieved_tflops"] * 1e12 / peak if peak else None


def measure_data_paths(device: torch.device, plan: Plan) -> dict:
    """P1 model A's and P2 model B's data-path comparisons, and P1's engine against ``plan.conventional_baseline``."""
    folders = prepare_standins(plan)
    try:
        p1 = folders[plan.p1_standin] / "p1_data" / "train_50"
        p2 = folders[plan.p2_standin] / "p2_data" / "train"
        paths = {"p1_model_a": compare_data_paths("p1_model_a", p1, device, plan),
                 "p2_model_b": compare_data_paths("p2_model_b", p2, device, plan, plan.p2_batches)}
        if plan.conventional_baseline:
            paths[f"p1_model_a, conventional loop in {plan.conventional_baseline}"] = compare_data_paths(
                "p1_model_a", p1, device, plan, None, None, plan.conventional_baseline)
        return paths
    finally:
        if plan.quick:
            for folder in folders.values():
                shutil.rmtree(folder.parent, ignore_errors=True)


def _run(device: torch.device, plan: Plan, command: str) -> dict:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the engine
    results: dict = {"environment": environment(device, command), "plan": dataclasses.asdict(plan)}
    samples = [measure_peaks(device, plan)]
    _log(f"matmul peaks (FLOP/s): {samples[0]}")
    cases = model_cases(plan, device)
    results["models"] = []
    for case in cases:
        results["models"].append(measure_model(case, device, plan))
        _log(f"{case.config.model}: {results['models'][-1]['train_images_per_s']:.1f} train img/s")
    model_a = next(c for c in cases if c.config.model == get_config("p1_model_a", plan.profile).model)
    results["levers"] = measure_levers(model_a, plan.levers, device, plan)
    _log("levers: " + ", ".join(f"{r['lever']} {r.get('train_images_per_s', 0):.1f}" for r in results["levers"]))
    results["data_paths"] = measure_data_paths(device, plan)
    samples.append(measure_peaks(device, plan))
    apply_peaks(results, samples)
    results["environment"]["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    return results


def main(args) -> dict:
    """``python -m hw1lib bench [--quick] [--device D] [--out PATH]``: print the tables and write the JSON.

    Args:
        args: ``quick`` (tiny sizes, for CI), ``device`` (``auto``/``cpu``/``cuda``), ``out`` (JSON path;
            default :func:`default_out`).
    """
    device = resolve_device(args.device)
    plan = make_plan(bool(args.quick), device)
    command = "python -m hw1lib bench" + (" --quick" if args.quick else "") + f" --device {args.device}" + \
        (f" --out {args.out}" if args.out else "")
    results = run_benchmark(device, plan, command)
    out = Path(args.out) if args.out else default_out(device, plan.quick)
    save_json(results, out)
    print(format_tables(results))
    print(f"\nwrote {out}")
    return results
