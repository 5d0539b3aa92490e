"""The report: tables and generated sentences from run folders, and the command that builds it all.

Two halves:
- What the report notebook (``06_report.ipynb``) calls: every number and every sentence that states a
  result is computed here from run folders (``metrics.json``, ``params.json``, ``history.csv``), never
  typed into markdown.
- :func:`build_report`: runs notebooks 01-05 and the report notebook with papermill, in order, then
  exports the report to HTML (code hidden) and PDF, with the executed notebooks as HTML beside it.
"""

from __future__ import annotations

import json
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from hw1lib.data.palette import CLASS_NAMES, SCORED_CLASSES
from hw1lib.paths import REPO_ROOT
from hw1lib.runs import Run, load_current

EXPERIMENT_NAMES = ("p1_model_a", "p1_model_b", "p2_model_a", "p2_model_b")
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
TRAINING_NOTEBOOKS = ("01_p1_model_a", "02_p1_model_b", "03_p1_representations", "04_p2_model_a", "05_p2_model_b")
REPORT_NOTEBOOK = "06_report"

#: the reference report's validation numbers and the course pass marks (``HW1_SPEC.md``)
REFERENCE = {
    "p1_model_a": {"problem": "P1", "role": "model A", "metric": "accuracy", "reference": 0.62, "pass_simple": 0.75, "pass_strong": 0.86},
    "p1_model_b": {"problem": "P1", "role": "model B", "metric": "accuracy", "reference": 0.88, "pass_simple": 0.75, "pass_strong": 0.86},
    "p2_model_a": {"problem": "P2", "role": "model A", "metric": "mIoU", "reference": 0.57, "pass_simple": 0.69, "pass_strong": 0.73},
    "p2_model_b": {"problem": "P2", "role": "model B", "metric": "mIoU", "reference": 0.73, "pass_simple": 0.69, "pass_strong": 0.73},
}


class ReportError(RuntimeError):
    """A notebook failed while building the report (the message names the notebook and the cell)."""


# ----------------------------------------------------------------------------------------------------
# reading the runs


def load_experiments(out_root: str | Path) -> dict[str, Run]:
    """The current run of each of the four experiments in ``out_root`` (raises if one is missing)."""
    return {name: load_current(out_root, name) for name in EXPERIMENT_NAMES}


def data_source_of(run: Run) -> str:
    """``"stand-in"`` when the run's training folder belongs to a generated stand-in, else ``"real"``."""
    train_folder = Path(run.params.get("data_folders", {}).get("train", ""))
    return "stand-in" if (train_folder.parent.parent / "standin.json").exists() else "real"


def data_statement(runs: dict[str, Run]) -> str:
    """One paragraph saying which data the numbers come from, and what that means for comparisons."""
    sources = {data_source_of(run) for run in runs.values()}
    folders = sorted({str(Path(run.params["data_folders"]["train"]).parent.parent) for run in runs.values()})
    if sources == {"real"}:
        return (f"**Data: the homework's real data** (`{'`, `'.join(folders)}`). The numbers below are validation "
                "results on the course's validation sets and can be compared with the reference report and the pass marks.")
    return (f"**Data: the generated stand-in** (`{'`, `'.join(folders)}`), in the real on-disk layout but with "
            "synthetic images. **Stand-in numbers are not comparable with the real-data numbers** of the reference "
            "report or the course pass marks shown beside them; they show that the whole pipeline runs end to end. "
            "Run `make report PROFILE=full DATA=/path/to/hw1_data` on a GPU for the real results.")


# ----------------------------------------------------------------------------------------------------
# tables


def results_table(runs: dict[str, Run]) -> pd.DataFrame:
    """All four models: our best validation score beside the reference report's and the pass marks."""
    rows = []
    for name, run in runs.items():
        ref = REFERENCE[name]
        rows.append({"problem": ref["problem"], "": ref["role"], "model": run.config["model"],
                     "weights": run.metrics["weights_source"], "metric": ref["metric"],
                     "this run": round(run.best_value, 4), "reference report": ref["reference"],
                     "pass (simple / strong)": f"{ref['pass_simple']} / {ref['pass_strong']}",
                     "epochs": run.metrics["final_epoch"], "train time": _duration(run.metrics["train_seconds"])})
    return pd.DataFrame(rows).set_index(["problem", ""])


def iou_table(runs: dict[str, Run]) -> pd.DataFrame:
    """Per-class IoU at each run's best epoch, plus the mIoU; an absent class is written as "absent"."""
    columns = {}
    for label, run in runs.items():
        iou = run.metrics["best"]["iou"]
        values = {CLASS_NAMES[c]: ("absent" if iou[str(c)] is None else round(iou[str(c)], 4)) for c in SCORED_CLASSES}
        columns[label] = {**values, "mIoU": round(run.best_value, 4)}
    return pd.DataFrame(columns)


def implementation_details(run: Run) -> pd.DataFrame:
    """Question 3: model A's training setup, read from its resolved parameters and metrics."""
    c = run.config
    loss = f"focal loss (gamma {c['focal_gamma']})" if c["loss"] == "focal" else "cross-entropy"
    if c["label_smoothing"]:
        loss += f", label smoothing {c['label_smoothing']}"
    schedule = f"cosine annealing over {c['epochs']} epochs to {c['min_lr_ratio']:g} x lr"
    if c["warmup_epochs"]:
        schedule = f"linear warm-up for {c['warmup_epochs']:g} epochs, then " + schedule
    augment = c["augment"]
    aug_text = "none" if not augment else (
        f"random crop with {augment.get('padding', 0)}-pixel zero padding" + (", horizontal flip" if augment.get("flip") else ""))
    early = "none" if c["patience"] is None else f"patience {c['patience']} epochs on validation accuracy"
    rows = {
        "network": f"{c['model']} {c['model_kwargs']}, random initialisation",
        "optimizer": f"AdamW, lr {c['lr']:g}, weight decay {c['weight_decay']:g}",
        "learning-rate schedule": schedule, "loss": loss, "batch size": c["batch_size"],
        "epochs (planned / run)": f"{c['epochs']} / {run.metrics['final_epoch']} ({run.metrics['stop_reason']})",
        "early stopping": early, "augmentation (on the device)": aug_text,
        "checkpoint kept": f"best validation accuracy (epoch {run.metrics['best_epoch']})",
        "precision": _precision_text(run.params.get("precision", "fp32")),
        "seed": c["seed"], "device": run.params["environment"]["device"],
    }
    return pd.DataFrame({"setting": rows}).rename_axis("model A")


def _precision_text(precision: str) -> str:
    return "bf16 autocast (mixed precision), channels_last" if precision == "bf16" else "fp32, channels_last"


def environment_table(runs: dict[str, Run], timings: dict[str, float]) -> pd.DataFrame:
    """Device, library versions and the git commit, and wall time per notebook."""
    env = next(iter(runs.values())).params["environment"]
    rows = {"device": f"{env['device']} ({env.get('device_name', '')})", "torch": env["torch"], "hw1lib": env["hw1lib"],
            "python": env["python"], "git commit": git_commit()}
    rows.update({f"wall time {name}": _duration(seconds) for name, seconds in timings.items()})
    return pd.DataFrame({"value": rows})


def git_commit() -> str:
    """The repository's commit (with ``+changes`` when the work tree differs), or ``unknown``."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + (" +changes" if dirty else "")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# ----------------------------------------------------------------------------------------------------
# numbers behind the comments


def neighbour_accuracy(points: np.ndarray, labels: np.ndarray, k: int = 5, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated k-nearest-neighbour accuracy of the labels in a 2-D projection.

    A plain number for "how well separated are the classes in this picture": 1.0 when every point's
    neighbours share its class, 1/50 for random scatter of 50 classes.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    folds = max(2, min(folds, int(np.bincount(labels).min())))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # tiny (smoke) sets have few samples per class; the number stays valid
        warnings.simplefilter("ignore", UserWarning)
        return float(cross_val_score(KNeighborsClassifier(n_neighbors=k), points, labels, cv=splitter).mean())


def compare_sentence(name_a: str, value_a: float, name_b: str, value_b: float, metric: str) -> str:
    """"Model B reaches 0.91 validation accuracy, 0.12 above model A (0.79)." from two numbers."""
    better, worse = ((name_b, value_b), (name_a, value_a)) if value_b >= value_a else ((name_a, value_a), (name_b, value_b))
    return (f"{better[0]} reaches a validation {metric} of {better[1]:.4f}, {better[1] - worse[1]:.4f} above "
            f"{worse[0]} ({worse[1]:.4f}).")


def curve_sentence(run: Run) -> str:
    """How the validation metric moved during training, from the history."""
    column = f"val_{run.metric}"
    history = run.history
    first, best = history[column].iloc[0], history[column].max()
    best_epoch = int(history.loc[history[column].idxmax(), "epoch"])
    return (f"Validation {run.metric} went from {first:.4f} after epoch 1 to {best:.4f} at epoch {best_epoch} "
            f"of {len(history)}.")


# ----------------------------------------------------------------------------------------------------
# building the report


def _execute(notebook: Path, output: Path, parameters: dict) -> None:
    """Execute one notebook with papermill; a failure raises :class:`ReportError` naming notebook and cell."""
    import papermill as pm

    try:
        pm.execute_notebook(str(notebook), str(output), parameters=parameters, cwd=str(NOTEBOOK_DIR),
                            kernel_name="python3", progress_bar=False)
    except pm.PapermillExecutionError as error:
        raise ReportError(f"{notebook.name} failed in cell [{error.exec_count}] ({error.ename}: {error.evalue}). "
                          f"The executed copy with the traceback is {output}; finished trainings are kept in their "
                          "run folders and will be reused.") from None


def build_report(profile: str = "demo", data: str = "", out_dir: str | Path | None = None, device: str = "auto",
                 seed: int = 0) -> dict[str, Path]:
    """Run notebooks 01-05 and the report notebook, then export HTML and PDF.

    Args:
        profile: ``smoke``, ``demo`` or ``full``.
        data: the real data root; ``""`` generates/uses the stand-in.
        out_dir: where the report goes (default ``report/<profile>``).
        device: ``auto``, ``cpu`` or ``cuda``.
        seed: the notebooks' seed.

    Returns:
        paths of what was written: ``html``, ``pdf`` (absent when no PDF tool is installed), ``notebooks``.
    """
    from hw1lib.data import prepare_data_root
    from hw1lib.engine import save_json
    from hw1lib.export import PdfToolMissing, export_html, html_to_pdf

    out = Path(out_dir) if out_dir else REPO_ROOT / "report" / profile
    executed = out / "notebooks"
    executed.mkdir(parents=True, exist_ok=True)
    prepare_data_root(data, profile, seed)  # a bad data path fails here, before any training
    parameters = {"data_root": str(data), "profile": profile, "device": device, "seed": seed, "out_dir": ""}
    timings: dict[str, float] = {}
    for name in TRAINING_NOTEBOOKS:
        started = time.perf_counter()
        print(f"[report] running {name}.ipynb ...", flush=True)
        _execute(NOTEBOOK_DIR / f"{name}.ipynb", executed / f"{name}.ipynb", parameters)
        timings[name] = time.perf_counter() - started
        print(f"[report] {name}.ipynb done in {timings[name]:.0f} s", flush=True)
    save_json(timings, out / "timings.json")
    report_params = {"profile": profile, "out_dir": "", "timings_file": str(out / "timings.json")}
    _execute(NOTEBOOK_DIR / f"{REPORT_NOTEBOOK}.ipynb", executed / f"{REPORT_NOTEBOOK}.ipynb", report_params)
    written = {"html": export_html(executed / f"{REPORT_NOTEBOOK}.ipynb", out / "report.html", hide_code=True),
               "notebooks": executed}
    for name in (*TRAINING_NOTEBOOKS, REPORT_NOTEBOOK):
        export_html(executed / f"{name}.ipynb", executed / f"{name}.html", hide_code=False)
    try:
        written["pdf"] = html_to_pdf(out / "report.html", out / "report.pdf")
    except PdfToolMissing as missing:
        print(f"[report] HTML only: {missing}")
    print(f"[report] done: {', '.join(str(p) for p in written.values())}")
    return written
