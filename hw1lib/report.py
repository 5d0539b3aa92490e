"""The report's content: tables and the paragraphs that state results, computed from finished runs.

Everything the report notebook (``06_report.ipynb``) says about a result comes from here, from the run
folders' parameters, metrics and history (read through :mod:`hw1lib.runs`), never typed into markdown.
Each function returns a DataFrame or a Markdown string; nothing here trains or draws.

What this is not: the build (papermill and export, :mod:`hw1lib.build`) or the figures (:mod:`hw1lib.viz`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from hw1lib.config import EXPERIMENTS, FULL_DEPARTURES
from hw1lib.data import data_source
from hw1lib.data.palette import CLASS_NAMES, SCORED_CLASSES
from hw1lib.io import git_commit
from hw1lib.runs import Run, count_parameters, load_current

#: the reference report's validation numbers and the course pass marks (the course's homework sheet)
REFERENCE = {
    "p1_model_a": {"problem": "P1", "role": "model A", "metric": "accuracy", "reference": 0.62, "pass_simple": 0.75,
                   "pass_strong": 0.86},
    "p1_model_b": {"problem": "P1", "role": "model B", "metric": "accuracy", "reference": 0.88, "pass_simple": 0.75,
                   "pass_strong": 0.86},
    "p2_model_a": {"problem": "P2", "role": "model A", "metric": "mIoU", "reference": 0.57, "pass_simple": 0.69,
                   "pass_strong": 0.73},
    "p2_model_b": {"problem": "P2", "role": "model B", "metric": "mIoU", "reference": 0.73, "pass_simple": 0.69,
                   "pass_strong": 0.73},
}


def load_experiments(out_root: str | Path) -> dict[str, Run]:
    """The current run of each of the four experiments in ``out_root`` (raises if one is missing)."""
    return {name: load_current(out_root, name) for name in EXPERIMENTS}


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
        return ("**A fast dev run was asked for, but the runs found are not capped**: the numbers below come from "
                "full trainings.") if requested else ""
    epochs, train, val = (max(r.config.get(key) or 0 for r in capped.values())
                          for key in ("epochs", "max_train_batches", "max_eval_batches"))
    limits = f"{_count(epochs, 'epoch')} of {_count(train, 'training batch')} and {_count(val, 'validation batch')}"
    which = "Every training was" if len(capped) == len(runs) else f"The trainings of {', '.join(capped)} were"
    return (f"**FAST DEV RUN: the numbers in this report mean nothing.** {which} capped to at most {limits}, at the "
            "profile's real sizes (batch and input sizes, pretrained weights, kept masks), only to prove that the "
            "whole path runs end to end. Accuracies, mIoUs, curves, projections and masks below come from models "
            "that barely trained, scored on a subset of the validation set. Build the report without "
            "`FAST_DEV_RUN=1` (`--fast-dev-run`) for real results.")


def _count(n: int, noun: str) -> str:
    """``"1 epoch"``, ``"2 epochs"``, ``"2 training batches"``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}{'es' if noun.endswith('batch') else 's'}"


def data_statement(runs: dict[str, Run]) -> str:
    """One paragraph saying which data the numbers come from, and what that means for comparisons."""
    sources = {data_source_of(run) for run in runs.values()}
    folders = sorted({str(run.data_folders["train"].parent.parent) for run in runs.values()})
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
# the report's paragraphs, one per question that states results


def departures_text(run: Run, profile: str) -> str:
    """Where the run's recipe departs from the reference report's, as a Markdown list."""
    name = run.folder.name
    departures = FULL_DEPARTURES.get(name, []) if profile == "full" else [
        f"the {profile} profile scales the full recipe down to run on the stand-in on a CPU (see its notebook)"]
    return "Read from the run's resolved parameters. Departures from the reference recipe:\n\n" + "\n".join(
        f"- {d}" for d in departures)


def vgg_like_text(run: Run, parameters: int) -> str:
    """Question 1: what P1 model A is."""
    kwargs = run.config["model_kwargs"]
    return (f"Model A is a VGG-style network built from a configuration list: three blocks of two 3x3 convolution + "
            f"batch norm + ReLU layers and a 2x2 max pool, with widths {kwargs.get('widths')}, then a two-layer MLP "
            f"head (hidden width {kwargs.get('hidden')}) with dropout; {parameters:,} parameters. The diagram is "
            "traced from the model object.")


def accuracy_text(a: Run, b: Run) -> str:
    """Question 2: both validation accuracies and how training went."""
    return (compare_sentence("Model A", a.best_value, "Model B", b.best_value, "accuracy")
            + " Model A: " + curve_sentence(a) + " Model B: " + curve_sentence(b))


def model_b_text(b: Run, a: Run, parameters_b: int, parameters_a: int) -> str:
    """Question 4: what P1 model B is and how it differs from model A."""
    c = b.config
    loss = "cross-entropy" if c["loss"] == "ce" else "focal loss"
    return (f"Model B is `{c['model']}`, an EfficientNet with {parameters_b:,} parameters "
            f"({parameters_b / parameters_a:.1f}x model A), initialised from **{b.metrics['weights_source']}** and "
            "fine-tuned end to end. Unlike model A it does not learn its features from 50 x 32x32 images alone: it "
            f"reuses ImageNet features, sees the images resized on the device to {c['model_kwargs'].get('input_size')} "
            "px and normalised with the weights' statistics, and uses depthwise-separable MBConv blocks with global "
            "average pooling instead of plain convolutions and a large MLP. Training: AdamW lr "
            f"{c['lr']:g}, weight decay {c['weight_decay']:g}, {c['epochs']} epochs, {loss} with label smoothing "
            f"{c['label_smoothing']:g}. " + compare_sentence("Model A", a.best_value, "Model B", b.best_value, "accuracy"))


def pca_text(embeddings: dict, knn: float, run: Run) -> str:
    """Question 5: the PCA picture in words, with the 5-NN accuracy of the labels in the plane."""
    structure = ("a linear 2-D view keeps most of the class structure." if knn >= 0.5 * run.best_value else
                 "a linear 2-D view loses most of the class structure, which lives in more than two directions; "
                 "classes appear as overlapping clouds ordered along the main directions of variance.")
    return (f"The second-last layer (the MLP's hidden activations) of the best checkpoint (epoch "
            f"{embeddings['pca_epoch']}), projected on its first two principal components, which explain "
            f"{embeddings['pca_explained'].sum():.0%} of its variance. The 5-nearest-neighbour accuracy of the labels "
            f"in this plane is {knn:.3f} (chance 0.02), against {run.best_value:.3f} for the classifier itself: "
            + structure)


def tsne_text(knn: dict[int, float]) -> str:
    """Question 6: how the t-SNE clusters changed over the epochs, from the 5-NN accuracy in each plane."""
    epochs = sorted(knn)
    trend = (": the classes form tighter, better separated clusters as training proceeds."
             if knn[epochs[-1]] > knn[epochs[0]] else ": the clusters did not become better separated.")
    return ("t-SNE (scikit-learn, after PCA to 50 dimensions) of the second-last layer at epochs "
            + ", ".join(str(e) for e in epochs) + ". The 5-nearest-neighbour accuracy of the labels in the t-SNE plane "
            "goes " + " -> ".join(f"{knn[e]:.3f} (epoch {e})" for e in epochs) + trend)


def fcn_text(run: Run, parameters: int) -> str:
    """Question 7: what FCN32s is, and which VGG16 this run used."""
    text = ("FCN32s: the 13 convolutions and 5 max pools of VGG16 (stride 32), VGG16's fully connected fc6/fc7 recast "
            "as 7x7 and 1x1 convolutions, a 1x1 score layer to 7 classes and a single x32 bilinear upsampling back to "
            f"the input size; {parameters:,} parameters. Weights: {run.metrics['weights_source']}.")
    if run.config["model_kwargs"].get("batch_norm", False):
        text += (" This run uses VGG16 with batch norm after every convolution: from a random initialisation the "
                 "plain VGG16 stays at the majority class within a CPU budget (the full profile uses the plain, "
                 "ImageNet-pretrained VGG16 of the FCN paper).")
    return text


def deeplab_text(run: Run, parameters: int, fcn_parameters: int) -> str:
    """Question 8: what DeepLabV3 is and how it differs from FCN32s."""
    return ("DeepLabV3 with a ResNet50 backbone: residual blocks with batch norm instead of VGG's plain convolutions; "
            "the last two stages use dilated convolutions so the features keep 1/8 of the input resolution (FCN32s: "
            "1/32), and an atrous spatial pyramid pooling head (rates 12, 24, 36 and image pooling) mixes context at "
            "several scales before the bilinear upsampling; an auxiliary FCN head on stage 3 adds a second loss "
            f"(weight {run.config['aux_weight']:g}) during training. {parameters:,} parameters "
            f"({parameters / fcn_parameters:.2f}x FCN32s). Weights: {run.metrics['weights_source']}.")


def miou_text(a: Run, b: Run) -> str:
    """Question 9: both mIoUs and how training went."""
    return (compare_sentence("FCN32s", a.best_value, "DeepLabV3", b.best_value, "mIoU")
            + " FCN32s: " + curve_sentence(a) + " DeepLabV3: " + curve_sentence(b))


def masks_text(run: Run, epochs: list[int], labels: dict[int, str]) -> str:
    """Question 10: which epochs the mask grid shows, with the validation mIoU at each."""
    miou_at = run.history.set_index("epoch")["val_miou"]
    return "Input, ground truth and model B's prediction at " + ", ".join(
        f"{labels[e]} (validation mIoU {miou_at[e]:.4f})" for e in epochs) + "."


def comparison_table(runs: dict[str, Run]) -> pd.DataFrame:
    """Models side by side: weights, parameters, input size, epochs, training time, best validation score."""
    rows = {}
    for name, run in runs.items():
        rows[name] = {"model": run.config["model"], "weights": run.metrics["weights_source"],
                      "parameters": count_parameters(run.build_model()),
                      "input size": run.config["model_kwargs"].get("input_size", 32),
                      "epochs": run.metrics["final_epoch"], "train seconds": round(run.metrics["train_seconds"]),
                      f"val {run.metric}": round(run.best_value, 4)}
    return pd.DataFrame(rows).T


def config_table(config) -> pd.DataFrame:
    """A ``TrainConfig`` as a one-column table (the notebooks show the recipe they train)."""
    return pd.Series(config.to_dict(), dtype=object).to_frame("value")
