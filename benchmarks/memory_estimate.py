"""GPU memory of each ``full`` recipe, estimated on the CPU: ``python -m benchmarks.memory_estimate [--markdown]``.

For every ``full`` experiment in fp32, fp16 and bf16: the estimated peak of one training step at the recipe's
batch (:mod:`hw1lib.memory`: ``FakeTensorMode``, saved-tensor hooks, weights + gradients + AdamW state,
transients, cuDNN workspace, fragmentation), and what ``fit`` would do on an idle 11, 15, 16, 40 and 80 GB card
(free memory = the card's size less a CUDA context): micro-batches per step (gradient accumulation, the global
batch kept) and where the training data lives. The training sets are the homework's sizes (P1: 22,500 images
of 32 px; P2: 2,000 pairs of 512 px), as ``meta`` tensors (sizes, no data). The GPU check measures the real
peaks (``benchmarks/gpu_check.py``, section ``memory``) to compare with.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from benchmarks.bench.tables import markdown_table
from hw1lib.config import EXPERIMENTS, get_config
from hw1lib.memory import CONTEXT_BYTES, GIB, estimate_training_memory, plan_training

#: the cards of the table (GiB as sold: an RTX 2080 Ti's 11 GB are 11 GiB) and the GPUs that have that size
CARDS = {11: "RTX 2080 Ti (sm_75)", 15: "T4 (sm_75)", 16: "V100 16 GB (sm_70)", 40: "A100 40 GB", 80: "A100/H100 80 GB"}
PRECISIONS = ("fp32", "fp16", "bf16")
#: the homework's training sets: (images shape, targets shape) per problem
TRAIN_SHAPES = {
    "classification": ((22_500, 3, 32, 32), (22_500,)),
    "segmentation": ((2_000, 3, 512, 512), (2_000, 512, 512)),
}


def training_data(task: str) -> list[torch.Tensor]:
    """The full training set of ``task`` as ``meta`` tensors (uint8 images, int64 labels or uint8 masks)."""
    images, targets = TRAIN_SHAPES[task]
    dtype = torch.int64 if task == "classification" else torch.uint8
    return [torch.empty(images, dtype=torch.uint8, device="meta"), torch.empty(targets, dtype=dtype, device="meta")]


def plan_text(plan) -> str:
    """A plan in a table cell: ``1 x 128, data GPU``, ``2 x 64, data host``, or ``does not fit`` at micro-batch 2."""
    if not plan.fits:
        return "does not fit"
    return f"{plan.accumulation_steps} x {plan.micro_batch}, data {'GPU' if plan.data_on_device else 'host'}"


def estimate_rows() -> list[dict]:
    """One row per ``full`` experiment and precision: the peak at the recipe's batch and a plan per card."""
    rows = []
    for experiment in EXPERIMENTS:
        config = get_config(experiment, "full")
        data = training_data(config.task)
        data_bytes = sum(t.numel() * t.element_size() for t in data)
        for precision in PRECISIONS:
            tic = time.perf_counter()
            memory = estimate_training_memory(config, precision, tuple(data[0].shape[1:]))
            row = {
                "experiment": experiment,
                "model": config.model,
                "batch": config.batch_size,
                "precision": precision,
                "parameters (M)": round(memory.parameters / 1e6, 1),
                "peak GiB at the batch": round(memory.peak_bytes(config.batch_size) / GIB, 2),
                "data GiB": round(data_bytes / GIB, 2),
            }
            for card in CARDS:
                free = int(card * GIB - CONTEXT_BYTES)
                row[f"{card} GB"] = plan_text(plan_training(memory, config.batch_size, free, data_bytes))
            row["estimate seconds"] = round(time.perf_counter() - tic, 1)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print a markdown table (what RESULTS.md holds)")
    args = parser.parse_args()
    table = pd.DataFrame(estimate_rows())
    print(markdown_table(table.drop(columns="estimate seconds")) if args.markdown else table.to_string())


if __name__ == "__main__":
    main()
