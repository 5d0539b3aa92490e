"""The benchmark's results as tables: plain text for the terminal, markdown for the file beside the JSON.

Both render the same three tables (models, levers, data paths) from a results dict as
:func:`benchmarks.bench.run.run_benchmark` returns it; the JSON keeps every repeat, the tables the medians.
"""

from __future__ import annotations

import pandas as pd


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f}"


def models_table(rows: list[dict]) -> pd.DataFrame:
    """One row per model: sizes, precision, images/s, peak memory, FLOPs and the fraction of the peak."""
    return pd.DataFrame(
        [
            {
                "model": r["model"],
                "input": r["input"],
                "works at": r["working_side"],
                "batch": r["batch_size"],
                "precision": r["precision"],
                "train img/s": f"{r['train_images_per_s']:.1f}",
                "infer img/s": f"{r['infer_images_per_s']:.1f}",
                "peak MiB": "-" if r["peak_memory_mib"] is None else f"{r['peak_memory_mib']:.0f}",
                "GFLOP/img train": f"{r['train_gflop_per_image']:.2f}",
                "train TFLOP/s": f"{r['train_achieved_tflops']:.3f}",
                "% of peak": _percent(r["train_fraction_of_peak"]),
                "infer % of peak": _percent(r["infer_fraction_of_peak"]),
            }
            for r in rows
        ]
    )


def levers_table(rows: list[dict]) -> pd.DataFrame:
    """One row per lever of P1 model A (the engine's own setting marked; a failed lever shows its error)."""
    return pd.DataFrame(
        [
            {
                "model": r["model"],
                "setting": r["lever"] + (" (the engine's)" if r.get("engine") else ""),
                "precision": r.get("precision", "-"),
                "batch": r["batch_size"],
                "train img/s": f"{r['train_images_per_s']:.1f}" if "error" not in r else "failed: " + r["error"][:60],
                "% of its peak": _percent(r.get("train_fraction_of_peak")),
                "peak": r.get("peak_used", "-"),
                "compile s": f"{r['compile_seconds']:.0f}" if r.get("compile_seconds") else "-",
            }
            for r in rows
        ]
    )


def paths_table(comparisons: dict) -> pd.DataFrame:
    """Both rows (conventional, project) of every data-path comparison."""
    return pd.DataFrame(
        [
            {
                "experiment": r["experiment"],
                "pipeline": r["pipeline"],
                "setting": r["lever"],
                "precision": r["precision"],
                "images": r["images_per_pass"],
                "epoch": "whole" if r["whole_epoch"] else "bounded",
                "batch": r["batch_size"],
                "side": r["image_side"],
                "seconds": f"{r['epoch_seconds']:.2f}",
                "train img/s": f"{r['train_images_per_s']:.1f}",
                "data-only img/s": f"{r['data_only_images_per_s']:.0f}",
                "one-off s": (
                    f"{r['one_off']['decode_seconds']:.2f} decode, {r['one_off']['cache_load_seconds']:.2f} cache"
                )
                if r["one_off"]
                else "-",
            }
            for comparison in comparisons.values()
            for r in comparison["rows"]
        ]
    )


def _header(results: dict) -> list[str]:
    """The device line and the matmul-peak line every rendering starts with."""
    env, peaks = results["environment"], results["peaks"]
    peak_text = "unmeasured" if peaks["main"] is None else f"{peaks['main'] / 1e12:.3f} TFLOP/s ({peaks['main_kind']})"
    if peaks.get("cpu_bf16"):
        peak_text += f"; CPU bf16 matmul {peaks['cpu_bf16'] / 1e12:.3f} TFLOP/s (the peak of rows in bf16)"
    return [
        f"{env['device_name']} ({env['device']}, {env['cpu_cores']} cores, {env['torch_threads']} torch threads), "
        f"torch {env['torch']}, commit {env['commit']}, {env['date']}",
        f"matmul peak: {peak_text}",
    ]


def _ratios(results: dict) -> list[str]:
    """One line per data-path comparison: the project's speed-up over the conventional path."""
    lines = []
    for name, comparison in results["data_paths"].items():
        r = comparison["ratios"]
        lines.append(
            f"{name}: project/conventional = {r['train_speedup']:.2f}x per epoch (training), "
            f"{r['data_only_speedup']:.1f}x data path alone"
        )
    return lines


_TITLES = (
    "models (through the engine)",
    "levers for P1 model A (memory format, precision, compilation)",
    "data paths (same folder, model, optimiser, loss; the setting of each side as listed)",
)


def _frames(results: dict) -> list[pd.DataFrame]:
    return [models_table(results["models"]), levers_table(results["levers"]), paths_table(results["data_paths"])]


def format_tables(results: dict) -> str:
    """The printed summary: models, levers and data paths as plain-text tables, then the ratios."""
    lines = [*_header(results), ""]
    for title, frame in zip(_TITLES, _frames(results)):
        lines += [title, frame.to_string(index=False), ""]
    return "\n".join(lines + _ratios(results))


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table (cells as they are; ``|`` escaped), without extra dependencies."""
    if frame.empty:
        return "(none)"

    def cells(values) -> str:
        return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"

    return "\n".join(
        [
            cells(frame.columns),
            "|" + "---|" * len(frame.columns),
            *(cells(row) for row in frame.itertuples(index=False)),
        ]
    )


def format_markdown(results: dict) -> str:
    """The same summary as :func:`format_tables` in markdown, with the command that measured it."""
    env = results["environment"]
    lines = [
        "# Benchmark results",
        "",
        *(f"- {line}" for line in _header(results)),
        f"- command: `{env['command']}`",
        "",
    ]
    for title, frame in zip(_TITLES, _frames(results)):
        lines += [f"## {title[0].upper()}{title[1:]}", "", markdown_table(frame), ""]
    lines += ["## Ratios", "", *(f"- {line}" for line in _ratios(results))]
    return "\n".join(lines) + "\n"
