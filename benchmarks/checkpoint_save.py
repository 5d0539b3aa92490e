"""Time writing ``last.pt`` for a model of FCN32s's size: ``python -m benchmarks.checkpoint_save [FOLDER]``.

Why: ``fit`` writes ``last.pt`` (weights, AdamW's two moments, the scheduler) after every epoch, with ``fsync``,
and the GPU idles while it does. FCN32s (134 M parameters) makes the largest one, about 1.6 GB. This measures,
on this machine's disk, the three parts of a save: the copy to host memory that must happen on the training
thread (a snapshot of tensors the next step changes), the pickling + write + ``fsync`` that can move to a
background thread, and the whole on the training thread (what ``fit`` did before).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from hw1lib.files import save_json, save_torch
from hw1lib.models import build_model


def fcn32s_state() -> dict:
    """``last.pt``'s content for FCN32s: weights plus AdamW's two moments per weight (random values, same sizes)."""
    model = build_model("fcn32s", num_classes=7)
    weights = model.state_dict()
    moments = {f"{k}.{m}": torch.randn_like(v) for k, v in weights.items() if v.is_floating_point() for m in "ab"}
    return {"model": weights, "optimizer": moments}


def measure(folder: Path) -> dict:
    state = fcn32s_state()
    nbytes = sum(v.numel() * v.element_size() for part in state.values() for v in part.values())
    tic = time.perf_counter()
    snapshot = {part: {k: v.clone() for k, v in tensors.items()} for part, tensors in state.items()}
    copy = time.perf_counter() - tic
    tic = time.perf_counter()
    save_torch(snapshot, folder / "last.pt")
    write = time.perf_counter() - tic
    return {"gigabytes": nbytes / 1e9, "host_copy_seconds": copy, "write_fsync_seconds": write}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=None, help="where to write (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        result = measure(Path(tmp))
    print(result)
    if args.json:
        save_json(result, args.json)


if __name__ == "__main__":
    main()
