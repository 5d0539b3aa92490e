"""One GPU check in one command of at most 6 minutes: ``benchmarks/gpu_check.sh OUT_DIR [--device cpu] [--quick]``.

For a machine with one CUDA GPU and a preinstalled PyTorch (Python 3.12, torch, torchvision, timm, pandas,
matplotlib, scikit-learn; no papermill, no internet; ``PYTHONPATH=.`` instead of an install). It generates only
the data it reads (P1's 22,500 + 2,500 images and P2's 257 validation pairs, not P2's 2,000 training pairs), then,
each section within its budget (time a section leaves unused passes to the next), measures:

(a) ``fit``: one epoch of P1 model A's ``full`` recipe over the 22,500 images through :func:`hw1lib.fit.fit`
    (validation and checkpoint writes included), under ``torch.cuda.set_sync_debug_mode("warn")``: every
    host-device synchronisation is counted and attributed to the line that made it.
(b) ``memory``: the envelope of each ``full`` recipe in bf16, fp16 and fp32: peak allocated and reserved memory
    of two training steps at the recipe's batch, beside :mod:`hw1lib.memory`'s CPU estimate; then, under
    ``set_per_process_memory_fraction`` as an 11 GB and a 15 GB card, each recipe in fp16 (what those sm_75
    cards run) as is and with the micro-batches ``fit`` would choose: fits or runs out of memory.
(c) ``models``: training images/s of every registered model at its recipe's batch (synthetic data on the GPU).
(d) ``grader``: the grader's two commands (``classify`` over the 2,500 P1 validation images, ``segment`` over the
    257 P2 validation images) as processes, timed as the grader sees them; then once more in a process that
    times its imports, the checkpoint load and the command's function apart (time per image).

``OUT_DIR/gpu_check.json`` (and ``gpu_check.md``) are rewritten atomically after every section, so a command
killed at its time limit loses only the section it was in. ``--quick`` runs the same code at tiny sizes on a
CPU in about a minute (``tests/test_gpu_check.py``).

What it is not: the benchmark (``python -m benchmarks.bench``, every figure with repeats), or a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from benchmarks.bench.plan import make_plan, model_cases, synthetic_data
from benchmarks.bench.run import environment
from benchmarks.bench.tables import markdown_table
from benchmarks.bench.timing import log
from hw1lib.config import EXPERIMENTS, get_config
from hw1lib.files import save_json, write_text
from hw1lib.fit import cudnn_benchmark
from hw1lib.paths import REPO_ROOT
from hw1lib.precision import resolve_device, resolve_precision

SECTIONS = ("fit", "memory", "models", "grader")
#: the grader's commands timed in (d): (command, experiment, validation folder under the data root, pattern)
GRADER_COMMANDS = (
    ("classify", "p1_model_b", "p1_data/val_50", "*.png"),
    ("segment", "p2_model_b", "p2_data/validation", "*.jpg"),
)
PRECISIONS = ("bf16", "fp16", "fp32")
#: the cards simulated with set_per_process_memory_fraction in (b): GiB -> what has that size (both sm_75: fp16)
SMALL_CARDS = {11: "RTX 2080 Ti", 15: "T4"}
#: the data the check generates: the full stand-in's P1 and P2 validation, no P2 training pairs
CHECK_STANDIN = "gpu-check"


@dataclass(frozen=True)
class CheckPlan:
    """What one check measures, at which sizes, and the seconds each section may take."""

    quick: bool
    standin_size: str  # a key of hw1lib.data.standin.STANDIN_SIZES
    p1_overrides: dict  # fields of P1 model A's full recipe changed for (a)
    memory_overrides: dict  # fields of every full recipe changed for (b) (quick: tiny batches and sizes)
    memory_side: int  # P2 side in (b) (512: the homework's)
    model_steps: int  # timed training steps per model in (c)
    budgets: dict  # seconds per section (SECTIONS order)
    grader_overrides: dict = dataclasses.field(default_factory=dict)  # experiment -> recipe fields changed for (d)

    @property
    def total_budget(self) -> float:
        return float(sum(self.budgets.values()))


def make_check_plan(quick: bool) -> CheckPlan:
    """The GPU plan (homework sizes; 290 s of sections, 6 minutes with start-up and data) or the ``quick`` one."""
    if quick:
        return CheckPlan(
            True,
            "smoke",
            {"epochs": 1, "batch_size": 50, "eval_batch_size": 100},
            {"batch_size": 2, "model_kwargs_input_size": 32},
            32,
            1,
            {"fit": 15, "memory": 25, "models": 20, "grader": 40},
            {"p1_model_b": {"model_kwargs": {"input_size": 32}}},
        )
    return CheckPlan(
        False, CHECK_STANDIN, {"epochs": 1}, {}, 512, 10, {"fit": 50, "memory": 110, "models": 60, "grader": 70}
    )


class Deadlines:
    """Each section's deadline: the run's start plus the budgets of the sections up to and including it."""

    def __init__(self, budgets: dict, start: float | None = None) -> None:
        self.start = time.perf_counter() if start is None else start
        self.ends, total = {}, 0.0
        for name in SECTIONS:
            total += budgets[name]
            self.ends[name] = self.start + total

    def left(self, section: str) -> float:
        """Seconds left to ``section`` (negative once spent)."""
        return self.ends[section] - time.perf_counter()


def skipped(section: str, item: str, deadlines: Deadlines) -> dict | None:
    """A "skipped" record when ``section``'s time is spent (log it), else None."""
    if deadlines.left(section) > 0:
        return None
    log(f"{section}: time spent, skipping {item}")
    return {"item": item, "skipped": f"the {section} section's time was spent"}


# ----------------------------------------------------------------------------------------------------
# the machine and the data


def driver_version() -> str | None:
    """The NVIDIA driver's version from ``nvidia-smi`` (torch does not report it), or None without one."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else None


def machine(device: torch.device, command: str) -> dict:
    """:func:`benchmarks.bench.run.environment` plus driver, CUDA, cuDNN, torchvision, the GPU's memory and
    compute capability, and the precision the policy picks there."""
    import torchvision

    info = {
        **environment(device, command),
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "driver": driver_version(),
        "precision_policy": resolve_precision(None, device),
    }
    if device.type == "cuda":
        info["gpu_memory_gib"] = torch.cuda.get_device_properties(device).total_memory / 2**30
        info["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    return info


def prepare_standin(size: str, folder: Path) -> dict:
    """Generate (or reuse) the stand-in of ``size`` in ``folder`` with every core; return its summary.

    ``gpu-check`` is the full stand-in without P2's training pairs (nothing here reads them; they are most of the
    full stand-in's generation time).
    """
    from hw1lib.data.standin import STANDIN_SIZES, generate_standin

    STANDIN_SIZES.setdefault(CHECK_STANDIN, dataclasses.replace(STANDIN_SIZES["full"], p2_train_count=0))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    tic = time.perf_counter()
    summary = generate_standin(folder, size=size, seed=0, workers=cores if size != "smoke" else 1)
    return {**summary, "wall_seconds": time.perf_counter() - tic}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------------------
# (a) P1 model A through fit, with the host-device synchronisations counted


class _TimeSpent(Exception):
    """Raised from ``fit``'s epoch callback to stop training when the section's time is spent."""


def _sync_sources(caught: list[warnings.WarningMessage]) -> dict[str, int]:
    """Synchronisation warnings grouped by the line that made them (the most frequent first)."""
    counts = Counter(
        f"{Path(w.filename).relative_to(REPO_ROOT) if str(w.filename).startswith(str(REPO_ROOT)) else w.filename}"
        f":{w.lineno}"
        for w in caught
        if "synchroniz" in str(w.message)
    )
    return dict(counts.most_common(15))


def check_fit(plan: CheckPlan, root: Path, device: torch.device, out: Path, deadlines: Deadlines) -> dict:
    """Train P1 model A (``full`` recipe, ``plan.p1_overrides``) through ``fit``; epoch times and sync counts."""
    from hw1lib.data import find_data_root, load_problem1
    from hw1lib.fit import fit

    tic = time.perf_counter()
    train, val = load_problem1(find_data_root(root))
    decode = time.perf_counter() - tic
    config = get_config("p1_model_a", "full", **plan.p1_overrides)
    epochs: list[dict] = []
    marks = [time.perf_counter()]

    def on_epoch_end(epoch: int, row: dict) -> None:
        marks.append(time.perf_counter())
        epochs.append(
            {
                "epoch": epoch,
                "seconds": row["seconds"],
                "wall_seconds": marks[-1] - marks[-2],
                "train_images_per_s": len(train) / row["seconds"],
                "val_acc": row["val_acc"],
            }
        )
        log(f"fit: epoch {epoch}: {row['seconds']:.2f} s (train + validation), val acc {row['val_acc']:.3f}")
        if deadlines.left("fit") <= 0 and epoch < config.epochs:
            raise _TimeSpent

    result = {
        "experiment": "p1_model_a",
        "recipe": "full",
        "overrides": plan.p1_overrides,
        "train_images": len(train),
        "val_images": len(val),
        "decode_seconds": decode,
        "epochs": epochs,
        "precision": resolve_precision(config, device),
    }
    cuda = device.type == "cuda"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            metrics = fit(
                config,
                train,
                val,
                out / "runs",
                "p1_model_a",
                device=str(device),
                force=True,
                progress=False,
                on_epoch_end=on_epoch_end,
            )
            result.update(best_val_acc=metrics["best_val_acc"], checkpoint=str(Path(metrics["run_dir"]) / "best.pt"))
        except _TimeSpent:
            result["stopped"] = f"after epoch {len(epochs)} of {config.epochs}: the fit section's time was spent"
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
    result["syncs"] = sum(1 for w in caught if "synchroniz" in str(w.message)) if cuda else None
    result["sync_sources"] = _sync_sources(caught) if cuda else {}
    result["note"] = (
        "one epoch plus validation and the run's file writes; the syncs include validation's and the writes' "
        "(reading metrics, saving weights): those inside training steps are the ones that cost"
    )
    return result


# ----------------------------------------------------------------------------------------------------
# (b) the memory envelope of each full recipe


def _memory_config(experiment: str, plan: CheckPlan):
    """``experiment``'s full recipe without pretrained weights (no download), as (b) measures it."""
    config = get_config(experiment, "full", pretrained=False, keep_mask_ids=[])
    overrides = dict(plan.memory_overrides)
    if overrides.pop("model_kwargs_input_size", None) and "input_size" in config.model_kwargs:
        config = dataclasses.replace(config, model_kwargs={**config.model_kwargs, "input_size": 32})
    return dataclasses.replace(config, **overrides)


def train_steps_peak(config, precision: str, side: int, device: torch.device, accumulation: int = 1) -> dict:
    """Peak allocated and reserved memory (GiB) of two training steps of ``config`` at its batch in ``precision``.

    Two steps: AdamW's state exists from the first step on, so the second's peak is a training run's.
    """
    from hw1lib.engine import build_training, train_step
    from hw1lib.precision import grad_scaler, to_input

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    training = build_training(config, device, config.batch_size)
    training.precision = precision  # the one asked for, which may not be the config's
    training.scaler = grad_scaler(device, precision) if device.type == "cuda" else None
    model = training.model
    images, targets = synthetic_data(config, side, config.batch_size, device)
    x = to_input(images, device, config.channels_last)
    tic = time.perf_counter()
    try:
        for _ in range(2):
            train_step(model, training, x, targets, accumulation)
        _sync(device)
        row = {"ok": True, "seconds": time.perf_counter() - tic}
    except torch.OutOfMemoryError:
        row = {"ok": False, "error": "out of memory"}
    except Exception as error:  # noqa: BLE001  e.g. a cuDNN error: a finding, the section goes on
        row = {"ok": False, "error": _first_line(error)}
    if device.type == "cuda":
        row["peak_allocated_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        row["peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / 2**30
    del model, training, x
    return row


def _estimate_gib(config, precision: str, side: int, batch: int) -> float | None:
    """:mod:`hw1lib.memory`'s estimate at ``batch`` in GiB, or None when it fails (the measurement still runs)."""
    from hw1lib import memory

    try:
        return memory.estimate_training_memory(config, precision, (3, side, side)).peak_bytes(batch) / 2**30
    except Exception as error:  # noqa: BLE001
        log(f"memory: no estimate for {config.model} {precision}: {_first_line(error)}")
        return None


def _fit_accumulation(config, side: int, card_gib: int) -> int:
    """The micro-batches ``fit`` would choose for ``config`` in fp16 on an idle card of ``card_gib`` (1 if unknown)."""
    from hw1lib import memory

    try:
        estimate = memory.estimate_training_memory(config, "fp16", (3, side, side))
    except Exception:  # noqa: BLE001
        return 1
    free = int(card_gib * 2**30 - memory.CONTEXT_BYTES)
    return memory.plan_training(estimate, config.batch_size, free, 0).accumulation_steps


def check_memory(plan: CheckPlan, device: torch.device, deadlines: Deadlines) -> dict:
    """(b): every full recipe in every precision; then fp16 as an 11 and a 15 GB card, as is and as ``fit`` plans."""
    from hw1lib import memory

    rows, skips = [], []
    for experiment in EXPERIMENTS:
        config = _memory_config(experiment, plan)
        side = 32 if config.task == "classification" else plan.memory_side
        for precision in PRECISIONS:
            item = f"{experiment} {precision}"
            if skip := skipped("memory", item, deadlines):
                skips.append(skip)
                continue
            row = {
                "item": item,
                "experiment": experiment,
                "model": config.model,
                "batch": config.batch_size,
                "precision": precision,
                "estimate_gib": _estimate_gib(config, precision, side, config.batch_size),
            }
            if device.type == "cuda":
                with cudnn_benchmark(device):  # as fit trains: cuDNN's chosen algorithms and their workspaces
                    row.update(train_steps_peak(config, precision, side, device))
            rows.append(row)
            log(f"memory: {item}: {row}")
    cards = []
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        for gib, name in SMALL_CARDS.items():
            # the allocator's share of an idle card of that size: its memory less a CUDA context
            torch.cuda.set_per_process_memory_fraction(min(1.0, (gib * 2**30 - memory.CONTEXT_BYTES) / total), device)
            try:
                for experiment in EXPERIMENTS:
                    config = _memory_config(experiment, plan)
                    side = 32 if config.task == "classification" else plan.memory_side
                    steps_chosen = _fit_accumulation(config, side, gib)
                    for steps in dict.fromkeys([1, steps_chosen]):
                        item = f"{experiment} fp16 on {gib} GB ({name}), {steps} micro-batch(es)"
                        if skip := skipped("memory", item, deadlines):
                            skips.append(skip)
                            continue
                        row = {"item": item, "card_gib": gib, "experiment": experiment, "accumulation_steps": steps}
                        with cudnn_benchmark(device):
                            cards.append({**row, **train_steps_peak(config, "fp16", side, device, steps)})
                        log(f"memory: {item}: {cards[-1]}")
            finally:
                torch.cuda.set_per_process_memory_fraction(1.0, device)
                torch.cuda.empty_cache()
    return {"rows": rows, "cards": cards, "skipped": skips}


# ----------------------------------------------------------------------------------------------------
# (c) training images/s of every model


def check_models(plan: CheckPlan, device: torch.device, deadlines: Deadlines) -> dict:
    """(c): every registered model at its recipe's batch: training images/s through the engine's epoch loop."""
    from hw1lib.engine import Data, build_training, train_one_epoch

    bench = make_plan(plan.quick, device)
    rows, skips = [], []
    for case in model_cases(bench, device):
        config = dataclasses.replace(case.config, max_train_batches=plan.model_steps)
        item = f"{config.model} batch {config.batch_size}"
        if skip := skipped("models", item, deadlines):
            skips.append(skip)
            continue
        try:
            n = config.batch_size * plan.model_steps
            data = Data(*synthetic_data(config, case.image_side, n, device))
            training = build_training(config, device, n)
            times = []
            for epoch in (1, 2):  # the first tunes cuDNN's algorithms
                _sync(device)
                tic = time.perf_counter()
                train_one_epoch(training.model, training, data, config, epoch, progress=False)
                _sync(device)
                times.append(time.perf_counter() - tic)
            rows.append(
                {
                    "item": item,
                    "model": config.model,
                    "input": f"{case.image_side}x{case.image_side}",
                    "working_side": case.working_side,
                    "batch": config.batch_size,
                    "precision": resolve_precision(config, device),
                    "steps": plan.model_steps,
                    "train_images_per_s": n / times[1],
                    "first_epoch_seconds": times[0],
                }
            )
            log(f"models: {item}: {rows[-1]['train_images_per_s']:.0f} train img/s")
        except Exception as error:  # noqa: BLE001  reported in the row, the check goes on
            rows.append({"item": item, "model": config.model, "batch": config.batch_size, "error": _first_line(error)})
            log(f"models: {item} failed: {rows[-1]['error']}")
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return {"rows": rows, "skipped": skips}


def _first_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"


# ----------------------------------------------------------------------------------------------------
# (d) the grader's commands


def random_checkpoint(experiment: str, folder: Path, overrides: dict | None = None) -> Path:
    """A checkpoint of ``experiment``'s ``full`` recipe (with ``overrides``) and untrained weights: speed does not
    depend on the weights, and no download is needed."""
    from hw1lib.checkpoints import model_meta
    from hw1lib.models import build_model
    from hw1lib.runs import RunFolder

    config = get_config(experiment, "full", **{"pretrained": False, **(overrides or {})})
    torch.manual_seed(0)
    model = build_model(config.model, num_classes=config.num_classes, **config.model_kwargs)
    weights = {"model": model.state_dict(), "meta": model_meta(config, model), "epoch": 0}
    return RunFolder(folder / f"{experiment}-untrained").save_weights(weights, "best")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}


def run_process(argv: list[str], timeout: float) -> dict:
    """Run ``argv`` and time the whole process; ``{"seconds", "returncode"[, "error"]}``."""
    tic = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=_env(), timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"seconds": time.perf_counter() - tic, "returncode": None, "error": f"timed out after {timeout:.0f} s"}
    row = {"seconds": time.perf_counter() - tic, "returncode": done.returncode}
    if done.returncode != 0:
        row["error"] = " ".join(done.stderr.strip().splitlines()[-1:])[:300]
    return row


#: run in a fresh process: the import, the checkpoint load and the command's own function, each timed
_PROBE = """
import json, sys, time
tic = time.perf_counter()
import torch
import hw1lib.grading as grading
from hw1lib.checkpoints import load_model
imported = time.perf_counter()
command, images, output, checkpoint, device = sys.argv[1:6]
model, _ = load_model(checkpoint, torch.device(device))
if device.startswith("cuda"):
    torch.cuda.synchronize()
loaded = time.perf_counter()
run = grading.classify_folder if command == "classify" else grading.segment_folder
count = run(images, output, checkpoint, device)
done = time.perf_counter()
print(json.dumps({"import_seconds": imported - tic, "load_seconds": loaded - imported,
                  "command_seconds": done - loaded, "count": count}))
"""


def probe_command(command: str, images: Path, output: Path, checkpoint: Path, device: torch.device) -> dict:
    """Import, load and per-image times of ``command`` measured inside a fresh process (:data:`_PROBE`).

    The command's function loads the checkpoint again (from the file cache): its time less the load measured just
    before, over the images, is the time per image.
    """
    argv = [sys.executable, "-c", _PROBE, command, str(images), str(output), str(checkpoint), str(device)]
    done = subprocess.run(argv, capture_output=True, text=True, env=_env(), timeout=300)
    if done.returncode != 0:
        return {"probe_error": " ".join(done.stderr.strip().splitlines()[-1:])[:300]}
    times = json.loads(done.stdout.strip().splitlines()[-1])
    per_image = (times["command_seconds"] - times["load_seconds"]) / max(1, times["count"])
    return {**times, "per_image_ms": 1000 * per_image}


def _outputs(command: str, output: Path) -> int:
    """Rows of a classify CSV (without the header) or masks a segment run wrote."""
    if command == "classify":
        return max(0, len(output.read_text().splitlines()) - 1) if output.is_file() else 0
    return len(list(output.glob("*.png"))) if output.is_dir() else 0


def check_grader(
    plan: CheckPlan, root: Path, checkpoints: dict[str, Path], device: torch.device, out: Path, deadlines: Deadlines
) -> dict:
    """(d): each of :data:`GRADER_COMMANDS`, timed as a process, with its import and load times measured apart."""
    rows, skips = [], []
    for command, experiment, folder, pattern in GRADER_COMMANDS:
        item = f"{command} {experiment}"
        if skip := skipped("grader", item, deadlines):
            skips.append(skip)
            continue
        images = root / folder
        count = len(list(images.glob(pattern)))
        output = out / "grader" / (f"{experiment}.csv" if command == "classify" else experiment)
        argv = [sys.executable, "-m", "hw1lib", command, str(images), str(output)]
        argv += ["--checkpoint", str(checkpoints[experiment]), "--device", device.type]
        row = run_process(argv, max(60.0, deadlines.left("grader") + 60.0))
        outputs = _outputs(command, output)
        probe = probe_command(command, images, out / "grader-probe" / output.name, checkpoints[experiment], device)
        rows.append(
            {
                "command": command,
                "experiment": experiment,
                "images": count,
                "outputs": outputs,
                "checkpoint": str(checkpoints[experiment]),
                "recipe_overrides": plan.grader_overrides.get(experiment, {}),
                **row,
                **probe,
            }
        )
        log(f"grader: {item}: {row['seconds']:.1f} s for {count} images (exit {row['returncode']})")
    return {"rows": rows, "skipped": skips}


# ----------------------------------------------------------------------------------------------------
# the whole check, its tables, the command line


def _timed(section: Callable[[], dict]) -> dict:
    """Run one section and add its wall time (``section_seconds``); an error is the section's result."""
    tic = time.perf_counter()
    try:
        result = section()
    except Exception as error:  # noqa: BLE001  a failed section is a finding; the next ones still run
        log(f"section failed: {_first_line(error)}")
        result = {"error": _first_line(error), "skipped": []}
    return {**result, "section_seconds": time.perf_counter() - tic}


def write_results(results: dict, out: Path) -> None:
    """Rewrite ``gpu_check.json`` and ``gpu_check.md`` atomically (after every section)."""
    save_json(results, out / "gpu_check.json")
    write_text(out / "gpu_check.md", format_markdown(results))


def run_check(plan: CheckPlan, device: torch.device, out: Path, standin: Path, command: str) -> dict:
    """Generate the data, then run the four sections within ``plan.budgets``, writing the results after each."""
    started = time.perf_counter()
    results: dict = {"environment": machine(device, command), "plan": dataclasses.asdict(plan), "sections_done": []}
    log(f"stand-in {plan.standin_size} in {standin}")
    results["standin"] = prepare_standin(plan.standin_size, standin)
    write_results(results, out)
    threads = torch.get_num_threads()
    if plan.quick:
        torch.set_num_threads(1)
    deadlines = Deadlines(plan.budgets)
    sections = {
        "fit": lambda: check_fit(plan, standin, device, out, deadlines),
        "memory": lambda: check_memory(plan, device, deadlines),
        "models": lambda: check_models(plan, device, deadlines),
        "grader": lambda: check_grader(
            plan, standin, grader_checkpoints(plan, out / "checkpoints"), device, out, deadlines
        ),
    }
    try:
        for name in SECTIONS:
            log(f"section {name}: {max(0.0, deadlines.left(name)):.0f} s left")
            results[name] = _timed(sections[name])
            results["sections_done"].append(name)
            results["seconds_total"] = time.perf_counter() - started
            write_results(results, out)
    finally:
        torch.set_num_threads(threads)
    return results


def grader_checkpoints(plan: CheckPlan, folder: Path) -> dict[str, Path]:
    """Untrained checkpoints of the graded experiments' ``full`` recipes (speed does not depend on weights)."""
    return {e: random_checkpoint(e, folder, plan.grader_overrides.get(e)) for _, e, _, _ in GRADER_COMMANDS}


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def header_lines(results: dict) -> list[str]:
    """Where and what: device, driver, versions, commit, command, stand-in and budget."""
    env, standin = results["environment"], results.get("standin")
    lines = [
        f"device: {env['device_name']} ({env['device']}, {_number(env.get('gpu_memory_gib'))} GiB, compute capability "
        f"{env.get('compute_capability', '-')}, precision policy {env['precision_policy']}), driver "
        f"{env['driver'] or 'unknown'}; torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, "
        f"torchvision {env['torchvision']}; {env['cpu_cores']} CPU cores",
        f"commit {env['commit']}, {env['date']}; command: `{env['command']}`",
    ]
    if standin:
        lines.append(
            f"stand-in: {standin['size']} ({standin['p1']['train']:,} + {standin['p1']['val']:,} P1 images, "
            f"{standin['p2']['train']:,} + {standin['p2']['validation']:,} P2 pairs at {standin['p2']['image_size']} "
            f"px), {'reused' if standin['reused'] else 'generated'} in {standin['wall_seconds']:.0f} s"
        )
    done = results.get("sections_done", [])
    lines.append(
        f"budget {results['plan']['budgets']} s; sections done: {', '.join(done) or 'none'}"
        + (f", {results['seconds_total']:.0f} s in all" if "seconds_total" in results else "")
    )
    return lines


def _table(rows: list[dict], columns: dict[str, Callable[[dict], object]]) -> list[str]:
    if not rows:
        return ["(no row measured)"]
    return [markdown_table(pd.DataFrame([{k: f(r) for k, f in columns.items()} for r in rows]))]


def fit_markdown(fit: dict) -> list[str]:
    """(a) as a paragraph, a table of epochs and the lines that synchronised most."""
    lines = [
        f"P1 model A, `full` recipe with {fit['overrides']}, {fit['train_images']:,} training and "
        f"{fit['val_images']:,} validation images (decoded in {fit['decode_seconds']:.1f} s), precision "
        f"{fit['precision']}; host-device synchronisations: {fit['syncs'] if fit['syncs'] is not None else '-'}.",
        "",
    ]
    lines += _table(
        fit["epochs"],
        {
            "epoch": lambda e: e["epoch"],
            "train + validation s": lambda e: f"{e['seconds']:.2f}",
            "wall s (with writes)": lambda e: f"{e['wall_seconds']:.2f}",
            "train img/s (incl. validation)": lambda e: f"{e['train_images_per_s']:,.0f}",
            "val acc": lambda e: f"{e['val_acc']:.3f}",
        },
    )
    lines += [f"- sync at `{where}`: {count}" for where, count in fit.get("sync_sources", {}).items()]
    return lines + (["", f"Stopped {fit['stopped']}."] if fit.get("stopped") else [])


def memory_markdown(section: dict) -> list[str]:
    """(b): the envelope table and the small-card table."""
    lines = _table(
        section["rows"],
        {
            "experiment": lambda r: r["experiment"],
            "model": lambda r: r["model"],
            "batch": lambda r: r["batch"],
            "precision": lambda r: r["precision"],
            "CPU estimate GiB": lambda r: _number(r.get("estimate_gib"), 2),
            "peak allocated GiB": lambda r: _number(r.get("peak_allocated_gib"), 2),
            "peak reserved GiB": lambda r: _number(r.get("peak_reserved_gib"), 2),
            "status": lambda r: "ok" if r.get("ok", True) else r.get("error", "failed"),
        },
    )
    if section.get("cards"):
        lines += [""] + _table(
            section["cards"],
            {
                "card": lambda r: f"{r['card_gib']} GB",
                "experiment": lambda r: r["experiment"],
                "micro-batches": lambda r: r["accumulation_steps"],
                "peak reserved GiB": lambda r: _number(r.get("peak_reserved_gib"), 2),
                "status": lambda r: "fits" if r["ok"] else r["error"],
            },
        )
    return lines


def models_markdown(section: dict) -> list[str]:
    """(c): one row per model."""
    lines = _table(
        [r for r in section["rows"] if "error" not in r],
        {
            "model": lambda r: r["model"],
            "input": lambda r: r["input"],
            "working side": lambda r: r["working_side"],
            "batch": lambda r: r["batch"],
            "precision": lambda r: r["precision"],
            "train img/s": lambda r: f"{r['train_images_per_s']:,.0f}",
            "first epoch s (tuning)": lambda r: f"{r['first_epoch_seconds']:.2f}",
        },
    )
    return lines + [f"- {r['item']}: failed: {r['error']}" for r in section["rows"] if "error" in r]


def grader_markdown(grader: dict) -> list[str]:
    """(d): one row per command."""
    return _table(
        grader["rows"],
        {
            "command": lambda r: f"python -m hw1lib {r['command']}",
            "experiment": lambda r: (
                r["experiment"] + (f" {r['recipe_overrides']}" if r.get("recipe_overrides") else "")
            ),
            "images": lambda r: r["images"],
            "outputs": lambda r: r["outputs"],
            "process s": lambda r: f"{r['seconds']:.1f}",
            "import s": lambda r: _number(r.get("import_seconds")),
            "load s": lambda r: _number(r.get("load_seconds"), 2),
            "ms per image": lambda r: _number(r.get("per_image_ms")),
            "status": lambda r: "ok" if r["returncode"] == 0 else f"failed: {r.get('error', '')}",
        },
    )


def format_markdown(results: dict) -> str:
    """The check's tables in markdown (what ``gpu_check.md`` holds): the sections done so far."""
    lines = ["# GPU check", "", *(f"- {line}" for line in header_lines(results)), ""]
    titles = {
        "fit": ("(a) P1 model A through `fit`", fit_markdown),
        "memory": ("(b) Memory of each `full` recipe", memory_markdown),
        "models": ("(c) Training images/s of every model", models_markdown),
        "grader": ("(d) The grader's commands", grader_markdown),
    }
    for name in results.get("sections_done", []):
        title, render = titles[name]
        body = [f"failed: {results[name]['error']}"] if "error" in results[name] else render(results[name])
        lines += [f"## {title}", "", *body, ""]
    skips = [s for name in results.get("sections_done", []) for s in results[name].get("skipped", [])]
    if skips:
        lines += ["## Skipped (time spent)", "", *(f"- {s['item']}: {s['skipped']}" for s in skips), ""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``argv`` without the program name; ``None``: ``sys.argv``)."""
    parser = argparse.ArgumentParser(prog="benchmarks/gpu_check.sh", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="where gpu_check.json, gpu_check.md and the runs go")
    parser.add_argument("--device", default="auto", help="auto (default), cuda, cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke stand-in, 1 epoch), a minute on a CPU")
    parser.add_argument(
        "--standin",
        type=Path,
        default=None,
        help="stand-in folder (default: OUT_DIR/standin-gpu-check, or with --quick OUT_DIR/standin-smoke)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the check as ``argv`` asks; write ``gpu_check.json`` and ``gpu_check.md`` into OUT_DIR."""
    args = parse_args(argv)
    out = args.out_dir
    try:
        device = resolve_device(args.device)
        if out.exists() and not out.is_dir():
            raise ValueError(f"{out} exists and is not a folder: OUT_DIR must be a folder (created if missing)")
    except ValueError as error:
        print(f"gpu_check: error: {error}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    plan = make_check_plan(args.quick)
    standin = args.standin or out / f"standin-{plan.standin_size}"
    command = "benchmarks/gpu_check.sh " + " ".join(sys.argv[1:] if argv is None else argv)
    results = run_check(plan, device, out, standin, command)
    print(format_markdown(results))
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
