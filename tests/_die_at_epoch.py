"""Test driver: ``hw1 train`` under torchrun, with rank 1 killed at the start of a given epoch.

``torchrun --nproc-per-node 2 tests/_die_at_epoch.py EPOCH EXPERIMENT DATA OUT_DIR`` trains EXPERIMENT (smoke
profile, CPU) as :func:`hw1lib.train.train_command` does, and passes a hook that, once every rank has finished
epoch ``EPOCH - 1`` (rank 0 has written its files), makes rank 1 exit with status 1 without clean-up: a process
dying mid-run at a known point. ``tests/test_distributed.py`` launches it; the hook lives here, not in hw1lib.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's hw1lib, as `python -m hw1lib` gets

from hw1lib import distributed  # noqa: E402
from hw1lib.train import summary, train_command  # noqa: E402


def die_at(epoch: int):
    """An ``on_epoch_end`` hook: rank 1 exits with status 1 at the start of ``epoch`` (2 or later)."""

    def hook(finished: int, row: dict) -> None:
        if finished == epoch - 1:
            distributed.barrier()  # rank 0 has written this epoch's files: the last complete epoch is `finished`
            if distributed.rank() == 1:
                distributed.log(f"test driver: exiting at the start of epoch {epoch}")
                os._exit(1)

    return hook


def main(argv: list[str]) -> None:
    epoch, experiment, data, out_dir = argv
    result = train_command(experiment, "smoke", data, out_dir, "cpu", on_epoch_end=die_at(int(epoch)))
    if distributed.is_main():
        print(summary(result))


if __name__ == "__main__":
    main(sys.argv[1:])
