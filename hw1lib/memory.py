"""GPU memory: a training run's peak estimated on the CPU, and what ``fit`` does when the card is small.

Why an estimate and not a measurement: ``fit`` must decide before training (a trial step would change the
weights, the optimizer and the random streams, and an out-of-memory error on a shared card is not a
measurement), and the tables of ``benchmarks/RESULTS.md`` must exist without a GPU. How: the model is built and
run forward at two small batches under ``FakeTensorMode`` (tensors with shapes and dtypes but no data, so it
takes seconds on a CPU), in the run's autocast dtype, with ``saved_tensors_hooks`` counting the bytes autograd
keeps for the backward pass. Those grow linearly with the batch. To them are added the fp32 weights, their
gradients and AdamW's two moments, the backward pass's transient gradients, a cuDNN workspace margin and the
caching allocator's fragmentation. The CPU's autocast lists differ a little from CUDA's (both run convolutions
and matmuls in 16 bits, which dominate); the GPU check measures the real peaks to compare.

What ``fit`` does with it (:func:`plan_training`): on CUDA, the recipe's batch is kept as the global batch and
split into the fewest micro-batches (gradient accumulation) whose peak fits the free memory; the training data
goes on the GPU only when it fits beside that peak, else it stays in pinned host memory and each batch is copied
without waiting.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from typing import TYPE_CHECKING, NamedTuple

import torch

if TYPE_CHECKING:
    from hw1lib.tasks import Task

GIB = 2**30
#: bytes per parameter besides activations: fp32 weights and gradients, AdamW's two fp32 moments
STATE_BYTES_PER_PARAM = 4 + 4 + 8
#: cuDNN's workspace and other scratch the estimate does not see (cudnn.benchmark may pick algorithms that use it)
WORKSPACE_BYTES = 512 * 2**20
#: the caching allocator's reserved memory over what is allocated at the peak (fragmentation)
FRAGMENTATION = 1.10
#: the share of the free memory a plan may fill: the rest is for what no estimate sees (NCCL buffers, kernels)
USABLE_FRACTION = 0.92
#: what a CUDA context with cuBLAS and cuDNN loaded takes on a card (free memory of an idle card = size - this)
CONTEXT_BYTES = 600 * 2**20
#: the micro-batches tried at the two batch sizes of the linear fit
PROBE_BATCHES = (2, 4)


class TrainingMemory(NamedTuple):
    """A model's training memory as a function of the (micro-)batch: fixed bytes plus bytes per sample."""

    parameters: int
    saved_fixed: float  # bytes autograd keeps whatever the batch (e.g. the weights cast to 16 bits)
    saved_per_sample: float  # bytes autograd keeps per sample
    largest_per_sample: float  # the largest single saved tensor per sample (sizes the backward's transients)

    def peak_bytes(self, micro_batch: int) -> float:
        """The estimated peak of allocated plus fragmented memory of one training step at ``micro_batch``."""
        saved = self.saved_fixed + self.saved_per_sample * micro_batch
        transient = 2 * self.largest_per_sample * micro_batch  # a layer's output gradient and its input gradient
        return self.parameters * STATE_BYTES_PER_PARAM + FRAGMENTATION * (saved + transient) + WORKSPACE_BYTES


class MemoryPlan(NamedTuple):
    """What ``fit`` does on a GPU with ``free_bytes`` free: micro-batches per step and where the data lives."""

    accumulation_steps: int
    micro_batch: int
    peak_bytes: float
    data_bytes: int
    data_on_device: bool
    free_bytes: int
    fits: bool  # False: even micro-batches of 2 exceed the free memory (fit warns; training may run out of memory)


def train_input_shape(config, data_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) the model trains on: the data's, or the augmentation's ``out_size`` when it resamples."""
    channels, height, width = data_shape[-3:]
    side = (config.augment or {}).get("out_size")
    return (channels, side, side) if side else (channels, height, width)


def _saved_bytes(model: torch.nn.Module, task: Task, shape: tuple, batch: int, precision: str) -> tuple[int, int]:
    """Bytes autograd saves for one training forward of ``batch`` (total, largest tensor), under the active fake mode.

    Storages are counted once (views of one tensor share it); the parameters' own storages are not (they are in
    :data:`STATE_BYTES_PER_PARAM`).
    """
    from hw1lib.precision import AUTOCAST_DTYPES

    own = {p.untyped_storage()._cdata for p in model.parameters()}
    own |= {b.untyped_storage()._cdata for b in model.buffers()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage._cdata not in own:
            saved[storage._cdata] = storage.nbytes()
        return tensor

    x = torch.empty(batch, *shape)
    dtype = AUTOCAST_DTYPES.get(precision)
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            outputs = model(x)
            reference = outputs["out"] if isinstance(outputs, dict) else outputs
            target_shape = (batch, *reference.shape[2:])
            targets = torch.zeros(target_shape, dtype=torch.long)
            task.loss(outputs, targets)
    return sum(saved.values()), max(saved.values(), default=0)


@functools.lru_cache(maxsize=32)
def _estimate(config_json: str, precision: str, shape: tuple[int, int, int]) -> TrainingMemory:
    from torch._subclasses.fake_tensor import FakeTensorMode

    from hw1lib.config import TrainConfig
    from hw1lib.models import build_model
    from hw1lib.tasks import build_task

    config = TrainConfig.from_dict(json.loads(config_json))
    task = build_task(config)
    with FakeTensorMode():
        model = build_model(config.model, num_classes=config.num_classes, pretrained=False, **config.model_kwargs)
        model.train()
        parameters = sum(p.numel() for p in model.parameters())
        (small, small_max), (large, large_max) = (_saved_bytes(model, task, shape, b, precision) for b in PROBE_BATCHES)
    step = PROBE_BATCHES[1] - PROBE_BATCHES[0]
    per_sample = (large - small) / step
    return TrainingMemory(
        parameters, max(0.0, small - per_sample * PROBE_BATCHES[0]), per_sample, large_max / PROBE_BATCHES[1]
    )


def estimate_training_memory(config, precision: str, data_shape: tuple[int, ...]) -> TrainingMemory:
    """The training memory of ``config`` (a ``TrainConfig``) in ``precision`` on data of ``data_shape`` (C, H, W).

    Pretrained weights are not loaded (the sizes are the same). Cached per configuration.
    """
    values = dataclasses.asdict(config)
    return _estimate(json.dumps(values, sort_keys=True), precision, train_input_shape(config, data_shape))


def plan_training(
    memory: TrainingMemory, batch_size: int, free_bytes: int, data_bytes: int, accumulation_steps: int = 1
) -> MemoryPlan:
    """Micro-batches and data placement for a per-process ``batch_size`` on a GPU with ``free_bytes`` free.

    ``accumulation_steps`` > 1 (set by the recipe or the user) is kept as it is; 1 means "choose": the fewest
    micro-batches whose peak fits, down to micro-batches of 2 (batch norm needs two samples). The data goes on
    the device only when it fits beside the chosen peak: placing it elsewhere costs a copy per batch, while more
    micro-batches change batch norm's statistics, so memory goes to the batch first.
    """
    usable = USABLE_FRACTION * free_bytes
    choices = [accumulation_steps] if accumulation_steps > 1 else range(1, max(1, batch_size // 2) + 1)
    chosen = None
    for steps in choices:
        micro = math.ceil(batch_size / steps)
        if memory.peak_bytes(micro) <= usable:
            chosen = steps
            break
    fits = chosen is not None
    if chosen is None:
        chosen = max(choices)
    micro = math.ceil(batch_size / chosen)
    peak = memory.peak_bytes(micro)
    return MemoryPlan(chosen, micro, peak, data_bytes, peak + data_bytes <= usable, free_bytes, fits)


def free_gpu_bytes(device: torch.device) -> int:
    """Free memory on ``device`` now (``torch.cuda.mem_get_info`` of that device, not the current one)."""
    return int(torch.cuda.mem_get_info(device)[0])


#: without an estimate, the data goes on the GPU when it takes at most this share of the free memory
FALLBACK_DATA_FRACTION = 0.25


def plan_for_device(config, precision: str, device: torch.device, data: list[torch.Tensor], world_size: int = 1):
    """:func:`plan_training` for ``config`` on the CUDA ``device`` and the training tensors ``data`` (None on a CPU).

    Why a fallback: the estimate runs the model under ``FakeTensorMode``, a PyTorch internal; should a model or a
    PyTorch version refuse it, training goes on with the recipe's batch and the data on the GPU when it takes at
    most a quarter of the free memory (what ``fit`` did before), and says so.
    """
    if device.type != "cuda":
        return None
    data_bytes = sum(t.numel() * t.element_size() for t in data)
    per_rank = math.ceil(config.batch_size / world_size)
    free = free_gpu_bytes(device)
    try:
        memory = estimate_training_memory(config, precision, tuple(data[0].shape[1:]))
    except Exception as error:  # noqa: BLE001  any failure of the estimate: train as the recipe says
        print(f"note: no memory estimate for {config.model} ({type(error).__name__}: {error}); training as is")
        steps = max(1, config.accumulation_steps)
        on_device = data_bytes <= FALLBACK_DATA_FRACTION * free
        return MemoryPlan(steps, math.ceil(per_rank / steps), float("nan"), data_bytes, on_device, free, True)
    return plan_training(memory, per_rank, free, data_bytes, config.accumulation_steps)
