"""The report's tables (and which data, which runs), computed from finished runs.

Everything the report notebook (``06_report.ipynb``) shows as a table comes from here, from the run folders'
parameters, metrics and history (read through :mod:`hw1lib.runs`); nothing here trains or draws.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from hw1lib.config import format_overrides, get_config, has_recipe, recipe_diff, without_seed
from hw1lib.data import data_source
from hw1lib.data.palette import CLASS_NAMES, SCORED_CLASSES
from hw1lib.environment import git_commit
from hw1lib.experiments import experiment_names, get_experiment, notebook_experiment
from hw1lib.experiments import label as experiment_label
from hw1lib.runs import Run, count_parameters, find_run


def load_experiments(
    out_root: str | Path,
    profile: str = "demo",
    overrides: dict[str, dict] | None = None,
    seed: int = 0,
    fast_dev_run: bool = False,
    experiments: list[str] | None = None,
) -> dict[str, Run]:
    """The run of each experiment's recipe in ``out_root``: the finished run whose stored configuration is
    ``get_config(experiment, profile, fast_dev_run, **overrides[experiment], seed=seed)`` (the newest if several,
    e.g. other data folders); a run trained later with other parameters never replaces it.

    Args:
        out_root: the folder of run folders.
        profile: the recipes' profile.
        overrides: per experiment, the recipe fields its notebook was given (``{"p1_model_a": {"lr": 1e-3}}``).
        seed: the training seed the notebooks were given.
        fast_dev_run: whether the notebooks ran capped.
        experiments: which (default: every registered experiment with a recipe under ``profile``).

    Raises:
        ValueError: overrides for an experiment that is not registered, or an invalid override.
        FileNotFoundError: an experiment without such a run (names what was looked for).
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(experiment_names()))
    if unknown:
        raise ValueError(f"overrides for unknown experiments {unknown}; valid: {experiment_names()}")
    names = experiments if experiments is not None else [n for n in experiment_names() if has_recipe(n, profile)]
    runs = {}
    for name in names:
        changes = {**without_seed(overrides.get(name)), "seed": seed}
        config = get_config(name, profile, fast_dev_run=fast_dev_run, **changes)
        runs[name] = find_run(out_root, name, config.to_dict())
    return runs


def run_profile(run: Run) -> str:
    """The profile ``run`` was trained under: its recorded recipe, else its run folder's parent folder's name
    (``runs/<profile>``, ``runs/<profile>-fastdev``)."""
    recorded = run.params.get("recipe") or {}
    return recorded.get("profile") or run.run_dir.parent.name.removesuffix("-fastdev")


def run_overrides(run: Run) -> dict[str, object]:
    """The fields of ``run``'s configuration that differ from its experiment's recipe (seed excluded).

    A run whose profile or experiment has no recipe (e.g. trained from Python into another folder) reports
    nothing rather than failing: the report shows its configuration anyway.
    """
    try:
        return recipe_diff(run.folder.name, run_profile(run), run.config)
    except ValueError:
        return {}


def recipe_line(experiment: str, profile: str, config: dict) -> str:
    """One Markdown line for under a recipe table: the overrides of the ``profile`` recipe in force, or none."""
    diff = recipe_diff(experiment, profile, config)
    seed = f"seed {config.get('seed', 0)}"
    what = f"**Recipe:** `{profile}`'s recipe of {experiment_label(experiment)}"
    if not diff:
        return f"{what}, unchanged ({seed})."
    return f"{what} **with overrides** `{format_overrides(diff)}` ({seed})."


def overrides_text(runs: dict[str, Run]) -> str:
    """A line for under the results table naming every run trained with overrides of its recipe; ``""`` if none."""
    changed = {name: run_overrides(run) for name, run in runs.items()}
    changed = {name: diff for name, diff in changed.items() if diff}
    seeds = sorted({run.config.get("seed", 0) for run in runs.values()})
    parts = [f"{experiment_label(name)}: `{format_overrides(diff)}`" for name, diff in changed.items()]
    text = ("**Overrides of the recipes:** " + "; ".join(parts) + ". ") if parts else ""
    return text + (f"Training seed {', '.join(map(str, seeds))}." if seeds != [0] else "")


def label_of(run: Run) -> str:
    """The registry's label of ``run``'s experiment (``"P1 model A"``), or its folder's experiment name."""
    try:
        return experiment_label(run.folder.name)
    except ValueError:
        return run.folder.name


def figure_title(run: Run, what: str = "") -> str:
    """``"P1 model A (VGG-like CNN): learning curves"``: a title from the registry's and the model's labels."""
    from hw1lib.models import model_label

    text = f"{label_of(run)} ({model_label(run.config['model'])})"
    return f"{text}: {what}" if what else text


def confused_pair_list(pairs: pd.DataFrame, k: int = 3) -> list[tuple[int, int]]:
    """The first ``k`` (true class, predicted class) pairs of :func:`confused_pairs`, for the example figure."""
    return list(zip(pairs["true class"], pairs["predicted as"]))[:k]


def tsne_panels(embeddings: dict) -> dict[str, np.ndarray]:
    """``{"epoch 3": points, ...}``: the t-SNE planes of ``features.representations`` as figure panels."""
    return {f"epoch {e}": points for e, points in embeddings["tsne"].items()}


def stage_columns(run: Run, epochs: list[int]) -> dict[str, tuple[Run, int]]:
    """``{"epoch 3 (middle)": (run, 3), ...}``: the columns of a mask figure over one run's epochs."""
    from hw1lib.runs import stage_labels

    return {text: (run, epoch) for epoch, text in stage_labels(epochs).items()}


def mask_columns(columns: dict[str, tuple[Run, int]]) -> tuple[dict, dict, dict]:
    """The arrays of a mask figure (``viz.plot_kept_masks``): the kept inputs and ground truths (of the first
    column's run) and, per column title, the predicted masks of a run at an epoch, keyed by validation id."""
    images = truths = None
    masks = {}
    for title, (run, epoch) in columns.items():
        run_images, run_truths, predictions = run.kept_masks([epoch])
        if images is None:
            images, truths = run_images, run_truths
        masks[title] = predictions[epoch]
    return images or {}, truths or {}, masks


def data_source_of(run: Run) -> str:
    """``"stand-in"`` or ``"real"``: where the run's training data came from."""
    return data_source(run.data_folders.get("train", Path("")))


def is_fast_dev_run(run: Run) -> bool:
    """Whether ``run`` was a fast dev run: its parameters cap the validation batches (``max_eval_batches``)."""
    return run.config.get("max_eval_batches") is not None


def fast_dev_run_statement(runs: dict[str, Run], requested: bool = False) -> str:
    """A plain warning for the top of the report when its runs are fast dev runs; ``""`` for real runs.

    The runs' own parameters decide (a validation-batch cap), not the notebook's parameter: a report never
    presents capped runs as results. ``requested`` (the notebook's ``fast_dev_run``) only adds a warning when a
    fast dev run was asked for but the runs found are not capped.
    """
    capped = {name: run for name, run in runs.items() if is_fast_dev_run(run)}
    if not capped:
        return (
            (
                "**A fast dev run was asked for, but the runs found are not capped**: the numbers below come from "
                "full trainings."
            )
            if requested
            else ""
        )
    epochs, train, val = (
        max(r.config.get(key) or 0 for r in capped.values())
        for key in ("epochs", "max_train_batches", "max_eval_batches")
    )
    limits = f"{_count(epochs, 'epoch')} of {_count(train, 'training batch')} and {_count(val, 'validation batch')}"
    which = "Every training was" if len(capped) == len(runs) else f"The trainings of {', '.join(capped)} were"
    return (
        f"**FAST DEV RUN: the numbers in this report mean nothing.** {which} capped to at most {limits}, at the "
        "profile's real sizes (batch and input sizes, pretrained weights, kept masks), only to prove that the "
        "whole path runs end to end. Accuracies, mIoUs, curves, projections and masks below come from models "
        "that barely trained, scored on a subset of the validation set. Build the report without "
        "`FAST_DEV_RUN=1` (`--fast-dev-run`) for real results."
    )


def _count(n: int, noun: str) -> str:
    """``"1 epoch"``, ``"2 epochs"``, ``"2 training batches"``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}{'es' if noun.endswith('batch') else 's'}"


def data_statement(runs: dict[str, Run]) -> str:
    """One paragraph saying which data the numbers come from, and what that means for comparisons."""
    sources = {data_source_of(run) for run in runs.values()}
    folders = sorted({str(run.data_folders["train"].parent.parent) for run in runs.values()})
    if sources == {"real"}:
        return (
            f"**Data: the homework's real data** (`{'`, `'.join(folders)}`). The numbers below are validation "
            "results on the course's validation sets and can be compared with the reference report and the pass marks."
        )
    return (
        f"**Data: the generated stand-in** (`{'`, `'.join(folders)}`), in the real on-disk layout but with "
        "synthetic images. **Stand-in numbers are not comparable with the real-data numbers** of the reference "
        "report or the course pass marks shown beside them; they show that the whole pipeline runs end to end. "
        "Run `make report PROFILE=full DATA=/path/to/hw1_data` on a GPU for the real results."
    )


# ----------------------------------------------------------------------------------------------------
# tables


def results_table(runs: dict[str, Run]) -> pd.DataFrame:
    """Every experiment's best validation score beside the reference report's and the course's pass marks (from
    the registry, :mod:`hw1lib.experiments`)."""
    rows = []
    for name, run in runs.items():
        ref = get_experiment(name)
        rows.append(
            {
                "problem": ref.problem.upper(),
                "": ref.role or ref.label,
                "model": run.config["model"],
                "weights": weights_label(run.metrics["weights_source"]),
                "metric": ref.metric_label,
                "this run": round(run.best_value, 4),
                "reference report": "" if ref.reference is None else ref.reference,
                "pass (simple / strong)": f"{ref.pass_simple} / {ref.pass_strong}",
                "epochs": run.metrics["final_epoch"],
                "train time": _duration(run.metrics["train_seconds"]),
            }
        )
    return pd.DataFrame(rows).set_index(["problem", ""])


def weights_label(source: str) -> str:
    """A table-width name of a run's initial weights ("ImageNet-1k", "random init"); the sentence is in the text.

    Why: the full ``weights_source`` sentence made the results table wider than an A4 page.
    """
    if source.startswith("random"):
        return "random init"
    if source.startswith("COCO"):
        return "COCO (VOC classes)"
    return source.split(",")[0].split(";")[0]


def class_accuracy(run: Run) -> list[float | None]:
    """Accuracy of each class (its recall) at the best epoch, from the run's validation confusion matrix.

    A class with no validation image gets ``None`` (no accuracy to state, not zero).
    """
    cm = np.asarray(run.metrics["best_confusion"], dtype=np.float64)
    totals = cm.sum(axis=1)
    return [None if totals[c] == 0 else float(cm[c, c] / totals[c]) for c in range(len(cm))]


def confused_pairs(run: Run, k: int = 5) -> pd.DataFrame:
    """The ``k`` most frequent (true class, predicted class) errors at the best epoch, most frequent first.

    Ties are broken by class numbers, so the table is the same on every run of the report.
    """
    cm = np.asarray(run.metrics["best_confusion"], dtype=np.int64)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = sorted(zip(*np.nonzero(off)), key=lambda tp: (-off[tp], tp))[:k]
    totals = cm.sum(axis=1)
    rows = [
        {
            "true class": int(t),
            "predicted as": int(p),
            "images": int(off[t, p]),
            "share of the true class": round(float(off[t, p] / totals[t]), 3),
        }
        for t, p in order
    ]
    return pd.DataFrame(rows, columns=["true class", "predicted as", "images", "share of the true class"])


def iou_scores(run: Run) -> list[float | None]:
    """IoU of each scored class at the best epoch, in ``SCORED_CLASSES`` order (``None``: absent class)."""
    iou = run.metrics["best"]["iou"]
    return [iou[str(c)] for c in SCORED_CLASSES]


def best_mask_epoch(run: Run) -> int:
    """The epoch whose kept masks match the reported score: the best one, else the last kept (a capped run)."""
    kept = run.mask_epochs()
    return run.metrics["best_epoch"] if run.metrics["best_epoch"] in kept else kept[-1]


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
    aug_text = (
        "none"
        if not augment
        else (
            f"random crop with {augment.get('padding', 0)}-pixel zero padding"
            + (", horizontal flip" if augment.get("flip") else "")
        )
    )
    early = "none" if c["patience"] is None else f"patience {c['patience']} epochs on validation accuracy"
    rows = {
        "network": f"{c['model']} {c['model_kwargs']}, random initialisation",
        "optimizer": f"AdamW, lr {c['lr']:g}, weight decay {c['weight_decay']:g}",
        "learning-rate schedule": schedule,
        "loss": loss,
        "batch size": c["batch_size"],
        "epochs (planned / run)": f"{c['epochs']} / {run.metrics['final_epoch']} ({run.metrics['stop_reason']})",
        "early stopping": early,
        "augmentation (on the device)": aug_text,
        "checkpoint kept": f"best validation accuracy (epoch {run.metrics['best_epoch']})",
        "precision": _precision_text(run.params.get("precision", "fp32")),
        "seed": c["seed"],
        "overrides of the recipe": format_overrides(run_overrides(run)) or "none",
        "device": run.params["environment"]["device"],
    }
    return pd.DataFrame({"setting": rows}).rename_axis(label_of(run))


def _precision_text(precision: str) -> str:
    texts = {
        "bf16": "bf16 autocast (mixed precision)",
        "fp16": "fp16 autocast with loss scaling (mixed precision)",
    }
    return f"{texts.get(precision, 'fp32')}, channels_last"


def environment_table(runs: dict[str, Run]) -> pd.DataFrame:
    """Device, library versions and the git commit (the times are in :func:`time_table`)."""
    env = next(iter(runs.values())).params["environment"]
    rows = {
        "device": f"{env['device']} ({env.get('device_name', '')})",
        "torch": env["torch"],
        "hw1lib": env["hw1lib"],
        "python": env["python"],
        "git commit": git_commit(),
    }
    return pd.DataFrame({"value": rows})


def read_timings(path: str | Path) -> dict:
    """The build's ``timings.json`` (``{"started": ..., "notebooks": {name: seconds}}``); ``{}`` for ``""``.

    A file of an older build (``{name: seconds}``, no start time) is read as notebooks without a start.

    Raises:
        ValueError: the file is not such a JSON object (names the file).
    """
    if not str(path):
        return {}
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of notebook times, written by `make report`")
    return data if "notebooks" in data else {"started": None, "notebooks": data}


def time_table(runs: dict[str, Run], timings: dict) -> pd.DataFrame:
    """One row per notebook: the run it trains (or reads), that run's own training time, whether this build
    trained it or reused a run finished before, and this build's time for the notebook.

    Why two times: a rebuild that reuses a run takes seconds for a notebook whose training took minutes; a single
    "wall time" column read as the training time would understate it.

    Args:
        runs: the report's runs, by experiment.
        timings: :func:`read_timings`' result (``{}``: the notebooks were not run by ``make report``).
    """
    seconds = timings.get("notebooks", {})
    started = _timestamp(timings.get("started"))
    notebooks = list(seconds) or sorted({get_experiment(name).notebook for name in runs})
    rows = {}
    for notebook in notebooks:
        name = notebook_experiment(notebook)
        run = runs.get(name) if name else None
        trains = run is not None and get_experiment(name).notebook == notebook
        rows[notebook] = {
            "run": "" if run is None else label_of(run) if trains else f"reads {label_of(run)}",
            "training time of the run": _duration(run.metrics["train_seconds"]) if trains else "",
            "the run was": _provenance(run, started) if trains else "",
            "this build's time for the notebook": _duration(seconds[notebook]) if notebook in seconds else "",
        }
    return pd.DataFrame(rows).T.rename_axis("notebook")


def _timestamp(text: str | None) -> datetime | None:
    """A ``%Y-%m-%dT%H:%M:%S%z`` time stamp (metrics.json's ``finished``, the build's ``started``), or None."""
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _provenance(run: Run, started: datetime | None) -> str:
    """``"trained by this build"``, or ``"reused (finished 2026-12-05 09:40)"``: whether the run finished after the
    build started; only the finish time without a build start."""
    finished = _timestamp(run.metrics.get("finished"))
    if finished is None:
        return "finished at an unrecorded time"
    when = finished.strftime("%Y-%m-%d %H:%M")
    if started is None:
        return f"finished {when}"
    return "trained by this build" if finished >= started else f"reused (finished {when})"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# ----------------------------------------------------------------------------------------------------
def comparison_table(runs: dict[str, Run]) -> pd.DataFrame:
    """Models side by side: weights, parameters, input size, epochs, training time, best validation score."""
    rows = {}
    for name, run in runs.items():
        rows[name] = {
            "model": run.config["model"],
            "weights": weights_label(run.metrics["weights_source"]),
            "parameters": count_parameters(run.build_model()),
            "input size": run.config["model_kwargs"].get("input_size", 32),
            "epochs": run.metrics["final_epoch"],
            "train seconds": round(run.metrics["train_seconds"]),
            f"val {run.metric}": round(run.best_value, 4),
        }
    return pd.DataFrame(rows).T


def config_table(config) -> pd.DataFrame:
    """A ``TrainConfig`` as a one-column table (the notebooks show the recipe they train)."""
    return pd.Series(config.to_dict(), dtype=object).to_frame("value")
