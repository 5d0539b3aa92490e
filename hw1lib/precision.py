"""Where and in what number format a model computes: device, memory format, autocast precision.

Why one module: the engine, the grader's commands and the benchmark must make the same choices, and
a run records the resolved precision in its parameters (it is part of the run's name, because the same
recipe computes in bf16 on one machine and in fp32 on another). Measured effects of each choice are in
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from hw1lib.config import TrainConfig

#: models whose training under CPU bf16 autocast is known to crash the process, and why
CPU_BF16_BROKEN = {
    "fcn32s": "the backward of its 1x1 score convolution (4096 -> 7 channels) under CPU bf16 autocast corrupts the "
    "heap and kills the process (seen with torch 2.13)",
}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; anything else must name a device this machine has.

    Raises:
        ValueError: an unknown device string, or CUDA requested where this PyTorch has no CUDA or sees no
            GPU (said in one line instead of a failure deep inside the first CUDA call).
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r}: expected auto, cpu, cuda or cuda:N") from error
    if resolved.type == "cuda":
        if torch.version.cuda is None:
            raise ValueError(
                f"device {device!r} requested, but this PyTorch ({torch.__version__}) has no CUDA; "
                "use --device cpu (or auto)"
            )
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested, but no GPU is visible; use --device cpu (or auto)")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} requested, but only {torch.cuda.device_count()} GPU(s) are visible")
    elif resolved.type != "cpu":
        raise ValueError(f"unsupported device {device!r}: expected auto, cpu, cuda or cuda:N")
    return resolved


def memory_format(channels_last: bool = True) -> torch.memory_format:
    """``torch.channels_last`` or ``torch.contiguous_format`` (NCHW)."""
    return torch.channels_last if channels_last else torch.contiguous_format


def to_input(images: torch.Tensor, device: torch.device, channels_last: bool = True) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float [0, 1] on ``device``, in the models' memory format.

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


#: the lowest CUDA compute capability whose tensor cores and cuDNN run bf16 natively (Ampere, sm_80)
BF16_CAPABILITY = (8, 0)
#: compute capability majors that run fp16 natively on tensor cores but bf16 only emulated (Volta sm_70, Turing sm_75)
FP16_MAJORS = (7,)


def cuda_precision(device: torch.device) -> str:
    """``"bf16"``, ``"fp16"`` or ``"fp32"``: what mixed precision the GPU ``device`` runs natively.

    Why the compute capability and not ``torch.cuda.is_bf16_supported()``: that answers True on sm_70/sm_75 too
    (its default counts emulation), where cuDNN has no bf16 convolutions and falls back to slow matmuls.
    Decided from ``device`` itself, not the current device (a run on ``cuda:1`` while ``cuda:0`` is current).
    Older or unknown GPUs (a capability that cannot be read) compute in fp32.
    """
    try:
        capability = tuple(torch.cuda.get_device_capability(device))
    except (AssertionError, RuntimeError, ValueError):
        return "fp32"
    if capability >= BF16_CAPABILITY:
        return "bf16"
    return "fp16" if capability[0] in FP16_MAJORS else "fp32"


def resolve_precision(config: TrainConfig | None, device: torch.device) -> str:
    """``"bf16"``, ``"fp16"`` (autocast) or ``"fp32"``: what a run of ``config`` computes in on ``device``.

    One policy for training, validation and the grader's commands (which pass ``config=None``).
    CUDA: by compute capability (:func:`cuda_precision`): sm_80 and up bf16; sm_70/sm_75 fp16 with a gradient
    scaler (:func:`grad_scaler`); older fp32. CPU: fp32 unless the recipe sets ``cpu_bf16`` and the CPU has
    AMX. Why not bf16 on every AMX CPU: it helps the plain convolutions of P1 model A but slows
    depthwise-convolution networks (the EfficientNets), and it crashes for :data:`CPU_BF16_BROKEN`.
    """
    if device.type == "cuda":
        return cuda_precision(device)
    return "bf16" if getattr(config, "cpu_bf16", False) and native_cpu_bf16() else "fp32"


def check_precision(config: TrainConfig, device: torch.device) -> None:
    """Refuse a setting known to crash (:data:`CPU_BF16_BROKEN`) with a clear error instead of a dead process."""
    model = getattr(config, "model", "")
    if resolve_precision(config, device) == "bf16" and device.type == "cpu" and model in CPU_BF16_BROKEN:
        raise ValueError(f"cpu_bf16=True cannot train {model} on the CPU: {CPU_BF16_BROKEN[model]}; set cpu_bf16=False")


#: the autocast dtype of each precision that uses autocast
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str = "fp32"):
    """bf16 or fp16 autocast on ``device`` for ``precision`` (see :func:`resolve_precision`); nothing for fp32."""
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """The loss scaler of a run: enabled for fp16 only (its 5-bit exponent underflows small gradients; bf16 has
    fp32's range). A disabled scaler is a no-op whose ``state_dict()`` is empty, so every run can hold one."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
