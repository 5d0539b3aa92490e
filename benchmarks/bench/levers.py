"""Model rows (every model through the engine) and levers (P1 model A's step in each setting, side by side).

A lever is one :class:`~benchmarks.bench.plan.Setting` of the model's memory format, CPU bf16 autocast and
``torch.compile``; its ``name``, e.g. ``"channels_last, bf16 autocast"``, is what the tables and the JSON show.
Why levers: to show what each of the engine's choices buys on the device at hand, against the setting a user
would get without them.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import torch

from benchmarks.bench.flops import count_flops
from benchmarks.bench.memory import peak_memory
from benchmarks.bench.plan import ENGINE, ModelCase, Plan, Setting, synthetic_data
from benchmarks.bench.timing import load_average, time_calls, time_interleaved
from hw1lib.config import TrainConfig
from hw1lib.engine import Data, Training, build_training, evaluate, train_one_epoch
from hw1lib.precision import resolve_precision


def _train_calls(training: Training, config: TrainConfig, data: Data, plan: Plan) -> list[float]:
    """Seconds per timed call of ``train_one_epoch`` over ``plan.steps_per_call`` batches."""
    config = dataclasses.replace(config, max_train_batches=plan.steps_per_call)
    epochs = iter(range(1, 1_000_000))

    def call() -> None:
        train_one_epoch(training.model, training, data, config, next(epochs), progress=False)

    return time_calls(call, training.device, plan.warmup_steps, plan.timed_steps)


def measure_model(case: ModelCase, device: torch.device, plan: Plan, peak: float | None = None) -> dict:
    """Training and inference images/s, peak memory and FLOP rate of one model through the engine.

    The fractions of ``peak`` (FLOP/s) are filled in when it is given (``run.apply_peaks`` does it later).
    """
    config, side = case.config, case.image_side
    precision = resolve_precision(config, device)
    n = max(config.batch_size, config.eval_batch_size) * plan.steps_per_call
    data = Data(*synthetic_data(config, side, n, device))
    with peak_memory(device) as memory:
        training = build_training(config, device, n)
        train = _train_calls(training, config, data, plan)
    model, task = training.model, training.task
    n_eval = config.eval_batch_size * plan.steps_per_call
    eval_data = Data(data.images[:n_eval], data.targets[:n_eval])
    whole = dataclasses.replace(config, max_eval_batches=None)
    infer = time_calls(lambda: evaluate(model, task, eval_data, whole, device), device, 1, plan.timed_steps)
    flops_train, flops_infer = count_flops(model, task, data[0][:2], data[1][:2], device, precision)
    train_ips = config.batch_size * plan.steps_per_call / statistics.median(train)
    infer_ips = n_eval / statistics.median(infer)
    return {
        "model": config.model,
        "task": config.task,
        "input": f"{side}x{side}",
        "working_side": case.working_side,
        "batch_size": config.batch_size,
        "eval_batch_size": config.eval_batch_size,
        "precision": precision,
        "train_images_per_s": train_ips,
        "infer_images_per_s": infer_ips,
        "train_step_seconds": train,
        "infer_batch_seconds": infer,
        "peak_memory_mib": memory["peak_mib"],
        "peak_memory_kind": memory["kind"],
        "train_gflop_per_image": flops_train / 1e9,
        "infer_gflop_per_image": flops_infer / 1e9,
        "train_achieved_tflops": flops_train * train_ips / 1e12,
        "infer_achieved_tflops": flops_infer * infer_ips / 1e12,
        "peak_used": peak_for(precision, device),
        "train_fraction_of_peak": flops_train * train_ips / peak if peak else None,
        "infer_fraction_of_peak": flops_infer * infer_ips / peak if peak else None,
        "load_average_after": load_average(),
    }


def peak_for(precision: str, device: torch.device) -> str:
    """The measured peak a row's FLOP rate is a fraction of: the CPU's bf16 one for bf16 on a CPU."""
    return "cpu_bf16" if precision == "bf16" and device.type == "cpu" else "main"


def _lever_call(case: ModelCase, lever: Setting, device: torch.device, plan: Plan) -> tuple[Callable[[], None], dict]:
    """One training call of the engine under ``lever``, and what its row needs (model, data, precision, compile time).

    ``torch.compile`` is compiled here, by a first call (its seconds go to ``compile_seconds``).
    """
    setting = lever.resolve(case.config)
    config = dataclasses.replace(case.config, cpu_bf16=setting.cpu_bf16, channels_last=setting.channels_last)
    data = Data(*synthetic_data(config, case.image_side, config.batch_size * plan.steps_per_call, device))
    training = build_training(config, device, len(data.images))
    model, precision = training.model, training.precision
    info = {
        "eager": model,
        "task": training.task,
        "data": data,
        "precision": precision,
        "compile_seconds": None,
        "engine": setting == ENGINE.resolve(case.config),
    }
    bounded = dataclasses.replace(config, max_train_batches=plan.steps_per_call)
    epochs = iter(range(1, 1_000_000))
    net = torch.compile(model) if setting.compile else model

    def call() -> None:
        train_one_epoch(net, training, data, bounded, next(epochs), progress=False)

    if net is not model:
        tic = time.perf_counter()
        call()
        info["compile_seconds"] = time.perf_counter() - tic
    return call, info


def measure_levers(case: ModelCase, levers: tuple[Setting, ...], device: torch.device, plan: Plan) -> list[dict]:
    """Training images/s of the engine's step in each setting (``Plan.levers``), timed interleaved.

    A lever that fails is reported with its error instead of figures. ``engine`` marks the engine's own
    setting; ``peak_used`` names the peak the row's fraction is taken of (``run.apply_peaks``).
    """
    calls, infos, rows = {}, {}, {}
    for lever in levers:
        rows[lever] = {"model": case.config.model, "lever": lever.name, "batch_size": case.config.batch_size}
        try:
            calls[lever], infos[lever] = _lever_call(case, lever, device, plan)
        except Exception as error:  # noqa: BLE001  a lever that does not work here is a finding, not a crash
            rows[lever]["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    times = time_interleaved(calls, device, plan.warmup_steps, plan.timed_steps)
    for lever, info in infos.items():
        ips = case.config.batch_size * plan.steps_per_call / statistics.median(times[lever])
        data = info["data"]
        flops, _ = count_flops(info["eager"], info["task"], data[0][:2], data[1][:2], device, info["precision"])
        rows[lever].update(
            train_images_per_s=ips,
            train_step_seconds=times[lever],
            precision=info["precision"],
            engine=info["engine"],
            compile_seconds=info["compile_seconds"],
            train_achieved_tflops=flops * ips / 1e12,
            peak_used=peak_for(info["precision"], device),
            load_average_after=load_average(),
        )
    return list(rows.values())
