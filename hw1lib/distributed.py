"""Training on several processes (``torchrun``): the process group, ranks, collectives, the DDP wrapper.

``torchrun`` starts one process per device and tells each its place through environment variables
(``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``). Every process holds the whole
data set, trains the same model on its slice of each global batch and averages gradients with
DistributedDataParallel (DDP). With one process (plain ``python``, or torchrun with one) nothing here
initialises anything and every helper is a no-op, so single-process training stays exactly as it was.

Why these choices:
- NCCL on CUDA, gloo on the CPU: the backend each device is supported by.
- A timeout on the process group (``HW1_DIST_TIMEOUT_S`` seconds): a collective that waits for a rank which
  died fails within that time instead of hanging; torchrun then stops the other workers and names the rank.
- Batch norm: SyncBatchNorm on CUDA (statistics over the global batch, as in one process); PyTorch has no
  CPU SyncBatchNorm, so on the CPU each rank normalises with its own slice's statistics.
- Python objects (a resume state, a finished run's metrics, kept masks) travel from rank 0 as pickled
  broadcasts: only rank 0 reads and writes the run folder.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from hw1lib.precision import resolve_device

#: environment variable: seconds a collective may wait for the other ranks before the job fails
TIMEOUT_ENV = "HW1_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 300.0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def launched_world_size() -> int:
    """The number of processes torchrun started (``WORLD_SIZE``; 1 without torchrun)."""
    return _env_int("WORLD_SIZE", 1)


def local_rank() -> int:
    """This process's index on its machine (``LOCAL_RANK``): which GPU of the node it uses."""
    return _env_int("LOCAL_RANK", 0)


def is_distributed() -> bool:
    """Whether a process group is initialised (several processes train together)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank: the process group's, else torchrun's ``RANK`` (before set-up or after clean-up)."""
    if is_distributed():
        return dist.get_rank()
    return _env_int("RANK", 0) if launched_world_size() > 1 else 0


def world_size() -> int:
    """The number of processes training together (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Whether this process is rank 0: the one that writes files and shows progress."""
    return rank() == 0


def backend() -> str | None:
    """The process group's backend (``"nccl"``, ``"gloo"``), or None in one process."""
    return str(dist.get_backend()) if is_distributed() else None


def describe() -> dict:
    """``{"world_size", "backend"}``: what a run records about how it was trained (not part of its name)."""
    return {"world_size": world_size(), "backend": backend()}


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA devices, gloo for the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def timeout() -> timedelta:
    """How long a collective may wait for the other ranks (``HW1_DIST_TIMEOUT_S``, default 300 s).

    Raises:
        ValueError: the variable is not a positive number of seconds.
    """
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        seconds = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise ValueError(f"{TIMEOUT_ENV}={text!r}: expected a positive number of seconds")
    return timedelta(seconds=seconds)


def local_device(device: torch.device) -> torch.device:
    """The device of this rank: ``cuda`` becomes ``cuda:LOCAL_RANK`` under several processes; others unchanged.

    Raises:
        ValueError: ``cuda:N`` under several processes with N other than this rank's ``LOCAL_RANK``: every rank
            would take GPU N and NCCL would fail later with "Duplicate GPU detected"; ``cuda`` is what works.
    """
    if device.type != "cuda" or launched_world_size() <= 1:
        return device
    if device.index is not None and device.index != local_rank():
        raise ValueError(
            f"--device {device} under torchrun with {launched_world_size()} processes would put every rank on GPU "
            f"{device.index}; use --device cuda (each rank takes cuda:LOCAL_RANK, here cuda:{local_rank()})"
        )
    return resolve_device(f"cuda:{local_rank()}")


def setup(device: str | torch.device = "auto") -> torch.device:
    """Resolve this process's device and, when torchrun started several processes, join the process group.

    Returns:
        the device this rank trains on (``cuda:LOCAL_RANK`` for ``cuda`` under several processes).

    Raises:
        ValueError: an unusable device (e.g. fewer visible GPUs than processes on the node) or timeout.
    """
    resolved = local_device(resolve_device(device))
    if launched_world_size() <= 1 or is_distributed():
        return resolved
    wait = timeout()
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    dist.init_process_group(
        backend_for(resolved), timeout=wait, device_id=resolved if resolved.type == "cuda" else None
    )
    return resolved


def cleanup() -> None:
    """Leave the process group (a no-op in one process)."""
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (a no-op in one process)."""
    if is_distributed():
        dist.barrier()


def all_reduce_sum(*tensors: torch.Tensor) -> None:
    """Sum each tensor over the ranks, in place (a no-op in one process)."""
    if is_distributed():
        for tensor in tensors:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


def from_main(value: object) -> object:
    """Rank 0's ``value`` on every rank (pickled broadcast); in one process ``value`` itself."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def merge_dicts(part: dict) -> dict:
    """The union of every rank's ``part`` (e.g. kept masks each rank predicted), on every rank."""
    if not is_distributed():
        return part
    parts: list[dict | None] = [None] * world_size()
    dist.all_gather_object(parts, part)
    return {k: v for p in parts for k, v in (p or {}).items()}


def check_batch_size(batch_size: int) -> None:
    """Refuse a global batch the ranks cannot share evenly (the global batch stays the recipe's).

    Raises:
        ValueError: ``batch_size`` is not a multiple of the world size.
    """
    if batch_size % world_size():
        raise ValueError(
            f"batch_size {batch_size} cannot be split evenly over {world_size()} processes: the global "
            "batch stays the recipe's, so run a number of processes that divides it"
        )


def shard(batch: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice of a global batch (the batch itself in one process).

    Raises:
        ValueError: the batch does not split evenly (the engine makes every batch a multiple of the world size).
    """
    size = world_size()
    if size == 1:
        return batch
    if len(batch) % size:
        raise ValueError(f"a batch of {len(batch)} cannot be split evenly over {size} processes")
    part = len(batch) // size
    return batch[rank() * part : (rank() + 1) * part]


def rank_seed(seed: int) -> int:
    """The seed of torch's global generator on this rank: ``seed`` on rank 0, a distinct one on the others.

    Why: dropout (and any other global randomness) of different ranks' slices should be independent, as it is
    for the samples of one batch in one process; rank 0 keeps ``seed`` so one process is unchanged. The offset
    changes the low 32 bits: torch's CPU generator ignores the others (``seed + 2**32`` is the same stream).
    """
    return seed + rank() * 0x9E3779B9


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """The model to train with: DDP (with SyncBatchNorm on CUDA) under several processes, else ``model``.

    ``model`` itself stays the plain network (its batch norms converted in place on CUDA, sharing their
    parameters, so the optimizer built over it still holds them): checkpoints save its ``state_dict``, never
    ``module.``-prefixed keys, and evaluation runs it without DDP's collectives.
    """
    if not is_distributed():
        return model
    if device.type == "cuda":
        sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
    return nn.parallel.DistributedDataParallel(model)


def sync_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every batch norm below ``model`` by its synchronised form, in place, and return ``model``.

    Why timm's converter: it also converts timm's ``BatchNormAct2d`` (EfficientNet-Lite0), keeping the activation
    that ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` would silently drop. Parameters and running statistics
    are the same tensors before and after, so an optimizer built earlier still updates them.
    """
    from timm.layers import convert_sync_batchnorm

    for name, child in list(model.named_children()):
        setattr(model, name, convert_sync_batchnorm(child))
    return model


def broadcast_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank before an evaluation.

    Why: DDP broadcasts buffers at the start of each training forward, so after an epoch's last step every
    rank holds its own last update; evaluating and saving must use one model, rank 0's.
    """
    if is_distributed():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def log(message: str) -> None:
    """Print ``message`` to stderr, prefixed with ``[rank r]`` when several processes run."""
    prefix = f"[rank {rank()}] " if launched_world_size() > 1 or is_distributed() else ""
    print(f"{prefix}{message}", file=sys.stderr, flush=True)
