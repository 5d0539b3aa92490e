"""What one benchmark run measures and at which sizes: the :class:`Plan`, and the model cases it times.

Why a plan: the same code measures the homework's sizes (a GPU, or a bounded CPU run) and a ``quick`` run of
tiny sizes that CI and ``tests/test_bench.py`` afford; every size-dependent choice is in one place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from hw1lib.config import EXPERIMENTS, PROFILES, TrainConfig, get_config
from hw1lib.models import list_models

#: the pretrained classifiers' working resolution (their ImageNet training size)
PRETRAINED_SIDE = 224


@dataclass(frozen=True)
class Setting:
    """How a training step runs: the model's memory format, CPU bf16 autocast and ``torch.compile``.

    ``None`` for the memory format or the precision means the recipe's own choice (the engine as it trains);
    :meth:`resolve` turns it into concrete values for one recipe.
    """

    channels_last: bool | None = None
    cpu_bf16: bool | None = None
    compile: bool = False

    @property
    def name(self) -> str:
        """What the tables and the JSON show, e.g. ``"NCHW, fp32"`` or ``"engine as is, torch.compile"``."""
        if self.channels_last is None and self.cpu_bf16 is None:
            parts = ["engine as is"]
        else:
            parts = [
                {None: "recipe's layout", True: "channels_last", False: "NCHW"}[self.channels_last],
                {None: "recipe's precision", True: "bf16 autocast", False: "fp32"}[self.cpu_bf16],
            ]
        return ", ".join(parts + (["torch.compile"] if self.compile else []))

    def resolve(self, config: TrainConfig) -> Setting:
        """This setting with the recipe's own choices filled in."""
        return Setting(
            config.channels_last if self.channels_last is None else self.channels_last,
            config.cpu_bf16 if self.cpu_bf16 is None else self.cpu_bf16,
            self.compile,
        )


#: the engine as it trains a recipe (channels_last, the recipe's ``cpu_bf16``), eager and compiled
ENGINE, ENGINE_COMPILED = Setting(), Setting(compile=True)
#: the loop as usually written (NCHW, fp32), and the engine's two levers one at a time
NCHW_FP32 = Setting(channels_last=False, cpu_bf16=False)
CHANNELS_LAST_FP32 = Setting(channels_last=True, cpu_bf16=False)
CHANNELS_LAST_BF16 = Setting(channels_last=True, cpu_bf16=True)


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
    levers: tuple[Setting, ...]
    conventional_baseline: Setting | None = None  # setting of a conventional loop to compare P1 model A's engine with
    threads: int | None = None  # torch intra-op threads for the run; None keeps torch's default


def make_plan(quick: bool, device: torch.device) -> Plan:
    """The full plan (homework sizes, bounded on the CPU) or the ``quick`` one (tiny sizes, for CI)."""
    cpu_levers = (NCHW_FP32, CHANNELS_LAST_FP32, CHANNELS_LAST_BF16)
    if quick:
        # one thread: on a busy 2-core machine, OpenMP regions of 2 threads stall whenever one core is taken
        # (small ops become many times slower), and a CI run must not depend on what else runs there
        return Plan(
            quick=True,
            profile="smoke",
            p2_side=32,
            pretrained_side=32,
            cpu_pixels_per_step=65_536,
            warmup_steps=0,
            timed_steps=1,
            steps_per_call=1,
            epoch_repeats=1,
            p1_standin=("smoke", 32),
            p2_standin=("smoke", 32),
            p2_batches=2,
            matmul_size=256,
            levers=(NCHW_FP32, CHANNELS_LAST_BF16),
            conventional_baseline=NCHW_FP32,
            threads=1,
        )
    if device.type == "cuda":
        # the full stand-in: 22,500 P1 images (the target's epoch), 2,000 P2 pairs at 512 px
        return Plan(
            quick=False,
            profile="full",
            p2_side=512,
            pretrained_side=PRETRAINED_SIDE,
            cpu_pixels_per_step=524_288,
            warmup_steps=2,
            timed_steps=10,
            steps_per_call=10,
            epoch_repeats=3,
            p1_standin=("full", 512),
            p2_standin=("full", 512),
            p2_batches=40,
            matmul_size=8192,
            levers=(ENGINE, ENGINE_COMPILED),
        )
    # CPU: the demo stand-in's 2,000 P1 images (a 22,500-image epoch of model A takes minutes on 2 cores) and
    # a few P2 batches at 512 px
    return Plan(
        quick=False,
        profile="full",
        p2_side=512,
        pretrained_side=PRETRAINED_SIDE,
        cpu_pixels_per_step=524_288,
        warmup_steps=1,
        timed_steps=3,
        steps_per_call=1,
        epoch_repeats=3,
        p1_standin=("demo", 512),
        p2_standin=("demo", 512),
        p2_batches=2,
        matmul_size=2048,
        levers=(*cpu_levers, dataclasses.replace(CHANNELS_LAST_BF16, compile=True)),
        conventional_baseline=NCHW_FP32,
    )


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
    raise ValueError(f"model {model!r} has no recipe in hw1lib.config; add one to benchmark it")


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
        config = dataclasses.replace(
            config,
            pretrained=False,
            model_kwargs=kwargs,
            augment=augment,
            batch_size=batch,
            eval_batch_size=eval_batch,
            keep_mask_ids=[],
        )
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
