"""Decode timing of the data loaders: cold (PNG/JPEG decoding) and cached (``np.load``), with peak memory.

Usage (generates the full-size stand-in once, ~2-5 minutes on 2 cores, 320 MB on disk):

    .venv/bin/python benchmarks/decode.py [DATA_ROOT]

DATA_ROOT defaults to ``data/standin-full`` (generated when absent). A fresh temporary cache is used, so the
first load of each folder is cold and the second one comes from the cache. Each load runs in its own
process, so that the peak resident memory printed is that load's alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, os, resource, sys, time
import hw1lib
from hw1lib.data import load_classification_folder, load_segmentation_folder
kind, folder = sys.argv[1], sys.argv[2]
start = time.perf_counter()
data = (load_classification_folder if kind == "p1" else load_segmentation_folder)(folder)
seconds = time.perf_counter() - start
masks = getattr(data, "masks", None)
print(json.dumps({"items": len(data), "seconds": seconds, "from_cache": data.from_cache,
                  "tensor_mb": data.images.numel() / 2**20 + (0 if masks is None else masks.numel() / 2**20),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def load_in_child(kind: str, folder: Path, cache: Path) -> dict:
    """Load one folder in a fresh interpreter with ``HW1_CACHE=cache``; return its measurements."""
    env = {**os.environ, "HW1_CACHE": str(cache)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(folder)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from hw1lib.data import find_data_root
    from hw1lib.data.standin import generate_standin
    from hw1lib.paths import standin_dir

    if len(sys.argv) > 1:
        root = find_data_root(sys.argv[1])
    else:
        started = time.perf_counter()
        summary = generate_standin(standin_dir("full"), size="full", progress=True)
        done = "reused" if summary["reused"] else "generated"
        print(f"stand-in (full) {done} in {time.perf_counter() - started:.0f} s")
        root = find_data_root(standin_dir("full"))
    with tempfile.TemporaryDirectory() as cache:
        print(
            f"{'folder':<34}{'items':>7}{'cold s':>9}{'cached s':>10}{'tensor MB':>11}{'peak RSS MB (cold/cached)':>28}"
        )
        for kind, folder in [
            ("p1", root.p1 / "train_50"),
            ("p1", root.p1 / "val_50"),
            ("p2", root.p2 / "train"),
            ("p2", root.p2 / "validation"),
        ]:
            cold, cached = load_in_child(kind, folder, Path(cache)), load_in_child(kind, folder, Path(cache))
            assert not cold["from_cache"] and cached["from_cache"]
            print(
                f"{str(folder.relative_to(root.root)):<34}{cold['items']:>7}{cold['seconds']:>9.2f}"
                f"{cached['seconds']:>10.2f}{cold['tensor_mb']:>11.0f}{cold['peak_rss_mb']:>17.0f}"
                f" / {cached['peak_rss_mb']:.0f}"
            )


if __name__ == "__main__":
    main()
