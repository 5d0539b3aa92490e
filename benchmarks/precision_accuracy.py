"""Does CPU bf16 cost P1 model A accuracy? The demo recipe trained with ``cpu_bf16`` on and off, per seed.

Usage (about 4 minutes on 2 idle cores with AMX; the demo stand-in is generated when absent):

    .venv/bin/python benchmarks/precision_accuracy.py [SEED ...]      # default seeds: 0 1 2

Everything but ``cpu_bf16`` and the seed is the ``demo`` recipe of ``hw1lib/config.py``. Runs go to a fresh
temporary folder (nothing under ``runs/`` is touched). On a CPU without AMX both settings train in fp32 (the
engine's rule, ``hw1lib.precision.resolve_precision``), and the script says so instead of comparing.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
import time

import hw1lib  # noqa: F401  (torchvision import fix before anything imports torchvision)
from hw1lib.config import get_config
from hw1lib.data import load_problem1, prepare_data_root
from hw1lib.fit import fit
from hw1lib.precision import native_cpu_bf16


def main(seeds: list[int]) -> None:
    if not native_cpu_bf16():
        print("this CPU has no AMX: the engine trains in fp32 with cpu_bf16 on or off; nothing to compare")
        return
    train, val = load_problem1(prepare_data_root("", "demo"))
    out = tempfile.mkdtemp(prefix="hw1-precision-")
    scores: dict[bool, list[float]] = {True: [], False: []}
    for seed in seeds:
        for bf16 in (True, False):
            config = dataclasses.replace(get_config("p1_model_a", "demo"), seed=seed, cpu_bf16=bf16)
            tic = time.perf_counter()
            result = fit(config, train, val, out, "p1_model_a", device="cpu", progress=False)
            scores[bf16].append(result["best_val_acc"])
            print(
                f"seed {seed} {'bf16' if bf16 else 'fp32'}: best val acc {result['best_val_acc']:.4f} "
                f"(epoch {result['best_epoch']}), training {result['train_seconds']:.0f} s, "
                f"wall {time.perf_counter() - tic:.0f} s",
                flush=True,
            )
    for bf16, values in scores.items():
        print(f"{'bf16' if bf16 else 'fp32'}: mean {statistics.mean(values):.4f} over seeds {seeds}")


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]] or [0, 1, 2])
