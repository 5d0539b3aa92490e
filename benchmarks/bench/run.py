"""One whole benchmark run: the plan's model rows, levers and data paths, with the peaks and the environment.

:func:`run_benchmark` returns what the JSON holds; :mod:`benchmarks.bench.__main__` prints and writes it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.bench.data_paths import compare_data_paths
from benchmarks.bench.levers import measure_levers, measure_model
from benchmarks.bench.plan import Plan, model_cases
from benchmarks.bench.timing import log, matmul_peak
from hw1lib.config import get_config
from hw1lib.environment import environment_info, git_commit
from hw1lib.paths import data_dir, standin_dir


def environment(device: torch.device, command: str) -> dict:
    """Where and when the figures were measured: :func:`hw1lib.environment.environment_info` (device, cores, versions)
    plus the date, commit, command, niceness and load average at the start."""
    return {
        **environment_info(device),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": git_commit(),
        "command": command,
        "nice": os.nice(0) if hasattr(os, "nice") else None,
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def standin_folder(size: str, p2_side: int, quick: bool) -> Path:
    """Where the data-path comparison's stand-in lives: a temporary folder (quick), the project's own
    ``data/standin-<size>`` when the P2 side is that size's default, else ``data/standin-bench-<size>-<side>``."""
    from hw1lib.data.standin import STANDIN_SIZES

    if quick:
        return Path(tempfile.mkdtemp(prefix="hw1-bench-")) / "standin"
    if STANDIN_SIZES[size].p2_image_size == p2_side:
        return standin_dir(size)
    return data_dir() / f"standin-bench-{size}-{p2_side}"


def prepare_standins(plan: Plan) -> dict[tuple[str, int], Path]:
    """Generate (or reuse) the stand-ins the plan's data paths read, once per distinct (size, P2 side)."""
    from hw1lib.data.standin import generate_standin

    folders = {}
    for size, side in dict.fromkeys([plan.p1_standin, plan.p2_standin]):
        folders[(size, side)] = standin_folder(size, side, plan.quick)
        log(f"stand-in {size} (P2 {side} px) in {folders[(size, side)]}")
        generate_standin(folders[(size, side)], size=size, seed=0, p2_image_size=side)
    return folders


def measure_peaks(device: torch.device, plan: Plan) -> dict[str, float | None]:
    """The device's matmul peak (``main``: bf16 on CUDA, fp32 on the CPU) and, on the CPU, a bf16 one."""
    peaks = {"main": matmul_peak(device, size=plan.matmul_size)}
    if device.type == "cpu":
        peaks["cpu_bf16"] = matmul_peak(device, torch.bfloat16, size=2 * plan.matmul_size, repeats=5)
    return peaks


def apply_peaks(results: dict, samples: list[dict]) -> None:
    """Keep the best of the peak measurements (start and end of the run) and fill in every row's fraction of it."""
    peaks: dict = {name: max((p[name] for p in samples if p.get(name)), default=None) for name in samples[0]}
    on_cuda = torch.device(results["environment"]["device"]).type == "cuda"
    peaks.update(main_kind="bf16 matmul" if on_cuda else "fp32 matmul (rows in bf16 use cpu_bf16)", samples=samples)
    results["peaks"] = peaks
    for row in results["models"] + results["levers"]:
        peak = peaks.get(row.get("peak_used", "main"))
        for kind in ("train", "infer"):
            if f"{kind}_achieved_tflops" in row:
                row[f"{kind}_fraction_of_peak"] = row[f"{kind}_achieved_tflops"] * 1e12 / peak if peak else None


def measure_data_paths(device: torch.device, plan: Plan) -> dict:
    """P1 model A's and P2 model B's data-path comparisons, and P1's engine against ``plan.conventional_baseline``."""
    folders = prepare_standins(plan)
    try:
        p1 = folders[plan.p1_standin] / "p1_data" / "train_50"
        p2 = folders[plan.p2_standin] / "p2_data" / "train"
        paths = {
            "p1_model_a": compare_data_paths("p1_model_a", p1, device, plan),
            "p2_model_b": compare_data_paths("p2_model_b", p2, device, plan, plan.p2_batches),
        }
        if plan.conventional_baseline:
            paths[f"p1_model_a, conventional loop in {plan.conventional_baseline.name}"] = compare_data_paths(
                "p1_model_a", p1, device, plan, conventional_lever=plan.conventional_baseline
            )
        return paths
    finally:
        if plan.quick:
            for folder in folders.values():
                shutil.rmtree(folder.parent, ignore_errors=True)


def run_benchmark(device: torch.device, plan: Plan, command: str) -> dict:
    """Measure everything the plan asks for and return the results (what the JSON holds).

    The plan's ``threads`` (torch intra-op threads) apply during the run only; torch's own count is restored.
    """
    threads = torch.get_num_threads()
    if plan.threads:
        torch.set_num_threads(plan.threads)
    try:
        return _run(device, plan, command)
    finally:
        torch.set_num_threads(threads)


def _run(device: torch.device, plan: Plan, command: str) -> dict:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the engine
    results: dict = {"environment": environment(device, command), "plan": dataclasses.asdict(plan)}
    samples = [measure_peaks(device, plan)]
    log(f"matmul peaks (FLOP/s): {samples[0]}")
    cases = model_cases(plan, device)
    results["models"] = []
    for case in cases:
        results["models"].append(measure_model(case, device, plan))
        log(f"{case.config.model}: {results['models'][-1]['train_images_per_s']:.1f} train img/s")
    model_a = next(c for c in cases if c.config.model == get_config("p1_model_a", plan.profile).model)
    results["levers"] = measure_levers(model_a, plan.levers, device, plan)
    log("levers: " + ", ".join(f"{r['lever']} {r.get('train_images_per_s', 0):.1f}" for r in results["levers"]))
    results["data_paths"] = measure_data_paths(device, plan)
    samples.append(measure_peaks(device, plan))
    apply_peaks(results, samples)
    results["environment"]["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    return results
