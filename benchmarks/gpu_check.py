"""One GPU check in one command: ``benchmarks/gpu_check.sh OUT_DIR [--device cpu] [--quick]``.

For a machine with one CUDA GPU and a preinstalled PyTorch (no papermill, no internet; ``PYTHONPATH=.``
instead of an install). It generates the full stand-in with every core, then, within a time budget (8 minutes
on a GPU, split over four sections; time a section leaves unused passes to the next), measures:

(a) ``fit``: P1 model A, the ``full`` recipe, 5 epochs over the 22,500 stand-in images through
    :func:`hw1lib.fit.fit`; each epoch's time as the engine records it and its wall time with file writes.
(b) ``models``: every model's row of :mod:`benchmarks.bench` at its recipe's batches: training and inference
    images/s, peak GPU memory, and the fraction of a bf16 matmul peak measured in the same run.
(c) ``segmenters``: DeepLabV3 and FCN32s training images/s at 512 px, batch 8 and 16 (a row of (b) at the same
    batch is reused rather than measured twice).
(d) ``grader``: ``python -m hw1lib classify`` over the 2,500 validation images and ``segment`` over the 257, one
    command per experiment, timed as the grader sees it (process start and model load included).

It writes ``OUT_DIR/gpu_check.json`` (everything) and ``OUT_DIR/gpu_check.md`` (tables), with the GPU's name,
driver, torch and CUDA versions. When a section's time is spent, its remaining items are recorded as skipped,
not measured: the run keeps to its budget whatever the machine. ``--quick`` runs the same code at tiny sizes
(the smoke stand-in, 1 epoch, small batches) in a few minutes on a CPU; ``tests/test_gpu_check.py`` runs it.

What it is not: the benchmark (``python -m benchmarks.bench``, every figure with repeats), or a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from benchmarks.bench.levers import measure_model
from benchmarks.bench.plan import ModelCase, Plan, make_plan, model_cases
from benchmarks.bench.run import apply_peaks, environment, measure_peaks
from benchmarks.bench.tables import markdown_table, models_table
from benchmarks.bench.timing import log
from hw1lib.config import get_config
from hw1lib.experiments import EXPERIMENTS
from hw1lib.io import save_json, write_text
from hw1lib.paths import REPO_ROOT, standin_dir
from hw1lib.precision import resolve_device, resolve_precision

SECTIONS = ("fit", "models", "segmenters", "grader")
#: the grader's commands timed in (d): (command, experiment, validation folder under the data root)
GRADER_COMMANDS = tuple(
    ("classify", e.name, "p1_data/val_50") if e.task == "classification" else ("segment", e.name, "p2_data/validation")
    for e in EXPERIMENTS.values()
)
SEGMENTERS = (("p2_model_b", "deeplabv3_resnet50"), ("p2_model_a", "fcn32s"))


@dataclass(frozen=True)
class CheckPlan:
    """What one check measures, at which sizes, and the seconds each section may take."""

    quick: bool
    standin_size: str  # the stand-in generated and read (``full``: the real archive's counts and sizes)
    p1_overrides: dict  # fields of P1 model A's ``full`` recipe changed for (a): epochs; quick: batches too
    bench: Plan  # what (b) and (c) measure with (benchmarks.bench)
    segmenter_batches: tuple[int, ...]
    segmenter_side: int
    budgets: dict  # seconds per section (SECTIONS order)
    grader_overrides: dict = dataclasses.field(default_factory=dict)  # experiment -> recipe fields changed for (d)

    @property
    def total_budget(self) -> float:
        return float(sum(self.budgets.values()))


def make_check_plan(quick: bool, device: torch.device) -> CheckPlan:
    """The GPU plan (homework sizes, 8 minutes) or the ``quick`` one (tiny sizes, CPU, for the test)."""
    bench = make_plan(quick, device)
    if quick:
        # (c) at the smoke recipes' batch 4 (the models section's rows, reused) and at batch 2 (measured)
        # (d) with EfficientNetV2-S at the quick plan's 32 px instead of 224 (the costliest command on a CPU)
        return CheckPlan(
            True,
            "smoke",
            {"epochs": 1, "batch_size": 50, "eval_batch_size": 100},
            bench,
            (4, 2),
            bench.p2_side,
            {"fit": 15, "models": 40, "segmenters": 20, "grader": 45},
            {"p1_model_b": {"model_kwargs": {"input_size": bench.pretrained_side}}},
        )
    # fewer repeats than the benchmark's: (b) is a check of every model, not the benchmark's medians
    bench = dataclasses.replace(bench, warmup_steps=1, timed_steps=5, steps_per_call=5)
    return CheckPlan(
        False, "full", {"epochs": 5}, bench, (8, 16), 512, {"fit": 90, "models": 180, "segmenters": 90, "grader": 120}
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
    """:func:`benchmarks.bench.run.environment` plus driver, CUDA, cuDNN, torchvision and the GPU's memory."""
    import torchvision

    info = {
        **environment(device, command),
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "driver": driver_version(),
    }
    if device.type == "cuda":
        info["gpu_memory_gib"] = torch.cuda.get_device_properties(device).total_memory / 2**30
    return info


def prepare_standin(size: str, folder: Path) -> dict:
    """Generate (or reuse) the stand-in of ``size`` in ``folder`` with every core; return its summary."""
    from hw1lib.data.standin import generate_standin

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    tic = time.perf_counter()
    summary = generate_standin(folder, size=size, seed=0, workers=cores if size == "full" else None)
    return {**summary, "wall_seconds": time.perf_counter() - tic}


# ----------------------------------------------------------------------------------------------------
# (a) P1 model A through fit


class _TimeSpent(Exception):
    """Raised from ``fit``'s epoch callback to stop training when the section's time is spent."""


def check_fit(plan: CheckPlan, root: Path, device: torch.device, out: Path, deadlines: Deadlines) -> dict:
    """Train P1 model A (``full`` recipe, ``plan.p1_overrides``) through ``fit``; record every epoch's times."""
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
    }
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
    result["first_epoch_note"] = (
        "epoch 1's wall time includes fit's set-up (building the model, moving the data "
        "to the device); on a GPU both its times include cudnn's autotuning"
    )
    result["precision"] = resolve_precision(config, device)
    return result


# ----------------------------------------------------------------------------------------------------
# (b) every model's bench row, (c) the segmenters at two batches


def _measure_rows(
    cases: list[tuple[str, ModelCase]], section: str, device: torch.device, plan: CheckPlan, deadlines: Deadlines
) -> tuple[list[dict], list[dict]]:
    """Measure each ``(name, case)`` with :func:`measure_model` while ``section`` has time; ``(rows, skipped)``.

    A case that fails (out of memory on a smaller GPU, say) is a finding: its row holds the error.
    """
    rows, skips = [], []
    for name, case in cases:
        skip = skipped(section, name, deadlines)
        if skip:
            skips.append(skip)
            continue
        try:
            rows.append({**measure_model(case, device, plan.bench), "item": name})
            log(f"{section}: {name}: {rows[-1]['train_images_per_s']:.1f} train img/s")
        except Exception as error:  # noqa: BLE001  reported in the row, the check goes on
            rows.append(
                {
                    "item": name,
                    "model": case.config.model,
                    "batch_size": case.config.batch_size,
                    "error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}",
                }
            )
            log(f"{section}: {name} failed: {rows[-1]['error']}")
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows, skips


def check_models(plan: CheckPlan, device: torch.device, deadlines: Deadlines) -> dict:
    """(b): every registered model at its recipe's batches, through :mod:`benchmarks.bench`."""
    cases = [(f"{case.config.model} batch {case.config.batch_size}", case) for case in model_cases(plan.bench, device)]
    rows, skips = _measure_rows(cases, "models", device, plan, deadlines)
    return {"rows": rows, "skipped": skips}


def segmenter_case(experiment: str, batch: int, side: int) -> ModelCase:
    """The ``full`` recipe of a P2 experiment at ``batch`` (training and inference) on ``side``-pixel images."""
    config = get_config(experiment, "full")
    augment = {k: v for k, v in config.augment.items() if k != "out_size"}
    config = dataclasses.replace(
        config, pretrained=False, batch_size=batch, eval_batch_size=batch, augment=augment, keep_mask_ids=[]
    )
    return ModelCase(config, side, side)


def check_segmenters(plan: CheckPlan, device: torch.device, deadlines: Deadlines, model_rows: list[dict]) -> dict:
    """(c): DeepLabV3 and FCN32s training at ``plan.segmenter_side`` px and each batch of the plan."""
    reused, cases = [], []
    for experiment, model in SEGMENTERS:
        for batch in plan.segmenter_batches:
            same = [
                r
                for r in model_rows
                if r.get("model") == model
                and r.get("batch_size") == batch
                and r.get("input") == f"{plan.segmenter_side}x{plan.segmenter_side}"
                and "error" not in r
            ]
            if same:
                reused.append({**same[0], "item": f"{model} batch {batch}", "source": "the models section's row"})
            else:
                cases.append((f"{model} batch {batch}", segmenter_case(experiment, batch, plan.segmenter_side)))
    rows, skips = _measure_rows(cases, "segmenters", device, plan, deadlines)
    return {"rows": reused + [{**row, "source": "measured here"} for row in rows], "skipped": skips}


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


def run_grader_command(
    command: str, image_dir: Path, output: Path, checkpoint: Path, device: torch.device, timeout: float
) -> dict:
    """Run ``python -m hw1lib <command>`` as the grader would, and time the whole process."""
    argv = [
        sys.executable,
        "-m",
        "hw1lib",
        command,
        str(image_dir),
        str(output),
        "--checkpoint",
        str(checkpoint),
        "--device",
        device.type,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    tic = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"seconds": time.perf_counter() - tic, "returncode": None, "error": f"timed out after {timeout:.0f} s"}
    row = {"seconds": time.perf_counter() - tic, "returncode": done.returncode}
    if done.returncode != 0:
        row["error"] = " ".join(done.stderr.strip().splitlines()[-1:])[:300]
    return row


def _outputs(command: str, output: Path) -> int:
    """Rows of a classify CSV (without the header) or masks a segment run wrote."""
    if command == "classify":
        return max(0, len(output.read_text().splitlines()) - 1) if output.is_file() else 0
    return len(list(output.glob("*.png"))) if output.is_dir() else 0


def check_grader(
    plan: CheckPlan, root: Path, checkpoints: dict[str, Path], device: torch.device, out: Path, deadlines: Deadlines
) -> dict:
    """(d): each of :data:`GRADER_COMMANDS` on the stand-in's validation images, with ``checkpoints[experiment]``."""
    rows, skips = [], []
    for command, experiment, folder in GRADER_COMMANDS:
        item = f"{command} {experiment}"
        skip = skipped("grader", item, deadlines)
        if skip:
            skips.append(skip)
            continue
        images = root / folder
        count = len(list(images.glob("*.png" if command == "classify" else "*.jpg")))
        output = out / "grader" / (f"{experiment}.csv" if command == "classify" else experiment)
        timeout = max(60.0, deadlines.left("grader") + 60.0)
        row = run_grader_command(command, images, output, checkpoints[experiment], device, timeout)
        rows.append(
            {
                "command": command,
                "experiment": experiment,
                "images": count,
                "outputs": _outputs(command, output),
                "checkpoint": str(checkpoints[experiment]),
                "recipe_overrides": plan.grader_overrides.get(experiment, {}),
                **row,
            }
        )
        log(f"grader: {item}: {row['seconds']:.1f} s for {count} images (exit {row['returncode']})")
    return {"rows": rows, "skipped": skips}


def grader_checkpoints(plan: CheckPlan, fit_result: dict, folder: Path) -> dict[str, Path]:
    """P1 model A's best checkpoint from (a) when it finished; untrained ones for the other experiments."""
    paths = {
        experiment: random_checkpoint(experiment, folder, plan.grader_overrides.get(experiment))
        for _, experiment, _ in GRADER_COMMANDS
        if experiment != "p1_model_a" or not fit_result.get("checkpoint")
    }
    if fit_result.get("checkpoint"):
        paths["p1_model_a"] = Path(fit_result["checkpoint"])
    return paths


# ----------------------------------------------------------------------------------------------------
# the whole check, its tables, the command line


def run_check(plan: CheckPlan, device: torch.device, out: Path, standin: Path, command: str) -> dict:
    """Generate the stand-in, then run the four sections within ``plan.budgets``; return what the JSON holds."""
    results: dict = {"environment": machine(device, command), "plan": dataclasses.asdict(plan)}
    log(f"stand-in {plan.standin_size} in {standin}")
    results["standin"] = prepare_standin(plan.standin_size, standin)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the engine
    threads = torch.get_num_threads()
    if plan.bench.threads:
        torch.set_num_threads(plan.bench.threads)
    try:
        deadlines = Deadlines(plan.budgets)
        peaks = [measure_peaks(device, plan.bench)]
        results["fit"] = _timed(lambda: check_fit(plan, standin, device, out, deadlines))
        results["models"] = _timed(lambda: check_models(plan, device, deadlines))
        results["segmenters"] = _timed(lambda: check_segmenters(plan, device, deadlines, results["models"]["rows"]))
        checkpoints = grader_checkpoints(plan, results["fit"], out / "checkpoints")
        results["grader"] = _timed(lambda: check_grader(plan, standin, checkpoints, device, out, deadlines))
        peaks.append(measure_peaks(device, plan.bench))
    finally:
        torch.set_num_threads(threads)
    _apply_peaks(results, peaks)
    results["seconds_after_standin"] = time.perf_counter() - deadlines.start
    return results


def _timed(section: Callable[[], dict]) -> dict:
    """Run one section and add its wall time (``section_seconds``)."""
    tic = time.perf_counter()
    result = section()
    return {**result, "section_seconds": time.perf_counter() - tic}


def _apply_peaks(results: dict, samples: list[dict]) -> None:
    """Fill in the fraction of the measured matmul peak of every (b) and (c) row (:func:`apply_peaks`)."""
    rows = [r for r in results["models"]["rows"] + results["segmenters"]["rows"] if "error" not in r]
    holder = {"environment": results["environment"], "models": rows, "levers": []}
    apply_peaks(holder, samples)
    results["peaks"] = holder["peaks"]


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def header_lines(results: dict) -> list[str]:
    """Where and what: device, driver, versions, commit, command, stand-in, peak and budget."""
    env, standin, peak = results["environment"], results["standin"], results["peaks"]["main"]
    return [
        f"device: {env['device_name']} ({env['device']}, {_number(env.get('gpu_memory_gib'))} GiB), driver "
        f"{env['driver'] or 'unknown'}; torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, "
        f"torchvision {env['torchvision']}; {env['cpu_cores']} CPU cores",
        f"commit {env['commit']}, {env['date']}; command: `{env['command']}`",
        f"stand-in: {standin['size']} ({standin['p1']['train']:,} + {standin['p1']['val']:,} P1 images, "
        f"{standin['p2']['train']:,} + {standin['p2']['validation']:,} P2 pairs at {standin['p2']['image_size']} px), "
        f"{'reused' if standin['reused'] else 'generated'} in {standin['wall_seconds']:.0f} s",
        f"matmul peak: {_number(None if peak is None else peak / 1e12, 1)} TFLOP/s ({results['peaks']['main_kind']})",
        f"budget {results['plan']['budgets']} s; the four sections took {results['seconds_after_standin']:.0f} s",
    ]


def fit_markdown(fit: dict) -> list[str]:
    """(a) as a paragraph and a table of epochs."""
    rows = [
        {
            "epoch": e["epoch"],
            "train + validation s": f"{e['seconds']:.2f}",
            "wall s (with checkpoint writes)": f"{e['wall_seconds']:.2f}",
            "train img/s (epoch incl. validation)": f"{e['train_images_per_s']:,.0f}",
            "val acc": f"{e['val_acc']:.3f}",
        }
        for e in fit["epochs"]
    ]
    lines = [
        f"P1 model A, `full` recipe with {fit['overrides']}, {fit['train_images']:,} training and "
        f"{fit['val_images']:,} validation images (decoded in {fit['decode_seconds']:.1f} s), "
        f"precision {fit['precision']}. {fit['first_epoch_note']}.",
        "",
        markdown_table(pd.DataFrame(rows)),
    ]
    return lines + (["", f"Stopped {fit['stopped']}."] if fit.get("stopped") else [])


def rows_markdown(section: dict) -> list[str]:
    """(b) or (c): the benchmark's model table, then failed rows and reused ones."""
    rows = [r for r in section["rows"] if "error" not in r]
    lines = [markdown_table(models_table(rows))] if rows else ["(no row measured)"]
    lines += [f"- {r['item']}: failed: {r['error']}" for r in section["rows"] if "error" in r]
    lines += [f"- {r['source']}: {r['item']}" for r in section["rows"] if r.get("source") == "the models section's row"]
    return lines


def grader_markdown(grader: dict) -> list[str]:
    """(d): one row per command."""
    rows = [
        {
            "command": f"python -m hw1lib {r['command']}",
            "experiment": r["experiment"] + (f" {r['recipe_overrides']}" if r.get("recipe_overrides") else ""),
            "images": r["images"],
            "outputs": r["outputs"],
            "seconds (process, model load included)": f"{r['seconds']:.1f}",
            "status": "ok" if r["returncode"] == 0 else f"failed: {r.get('error', '')}",
        }
        for r in grader["rows"]
    ]
    return [markdown_table(pd.DataFrame(rows))]


def format_markdown(results: dict) -> str:
    """The check's tables in markdown (what ``gpu_check.md`` holds)."""
    lines = ["# GPU check", "", *(f"- {line}" for line in header_lines(results)), ""]
    sections = [
        ("(a) P1 model A through `fit`", fit_markdown(results["fit"])),
        ("(b) Every model at its recipe's batches", rows_markdown(results["models"])),
        ("(c) DeepLabV3 and FCN32s training", rows_markdown(results["segmenters"])),
        ("(d) The grader's commands", grader_markdown(results["grader"])),
    ]
    for title, body in sections:
        lines += [f"## {title}", "", *body, ""]
    skips = [s for name in SECTIONS for s in results[name].get("skipped", [])]
    if skips:
        lines += ["## Skipped (time spent)", "", *(f"- {s['item']}: {s['skipped']}" for s in skips), ""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``argv`` without the program name; ``None``: ``sys.argv``)."""
    parser = argparse.ArgumentParser(prog="benchmarks/gpu_check.sh", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="where gpu_check.json, gpu_check.md and the runs go")
    parser.add_argument("--device", default="auto", help="auto (default), cuda, cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke stand-in, 1 epoch), minutes on a CPU")
    parser.add_argument(
        "--standin",
        type=Path,
        default=None,
        help="stand-in folder (default: data/standin-full, which make report PROFILE=full reads; "
        "with --quick, OUT_DIR/standin-smoke)",
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
    plan = make_check_plan(args.quick, device)
    standin = args.standin or (out / "standin-smoke" if plan.quick else standin_dir(plan.standin_size))
    command = "benchmarks/gpu_check.sh " + " ".join(sys.argv[1:] if argv is None else argv)
    results = run_check(plan, device, out, standin, command)
    save_json(results, out / "gpu_check.json")
    write_text(out / "gpu_check.md", format_markdown(results))
    print(format_markdown(results))
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
