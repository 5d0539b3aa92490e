"""The report's paragraphs: every sentence that states a result, computed from finished runs.

Each function takes runs (and numbers computed from them) and returns Markdown; notebook 06 displays it,
and ``tests/test_report_text.py`` checks it directly.
"""

from __future__ import annotations

import warnings

import numpy as np

from hw1lib.config import DEMO_DEPARTURES, FULL_DEPARTURES, format_overrides
from hw1lib.data.palette import CLASS_NAMES, SCORED_CLASSES
from hw1lib.runs import Run

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


def tsne_neighbour_accuracy(embeddings: dict) -> dict[int, float]:
    """:func:`neighbour_accuracy` of the labels in each epoch's t-SNE plane of ``features.representations``."""
    return {e: neighbour_accuracy(points, embeddings["labels"]) for e, points in embeddings["tsne"].items()}


def separation_table(embeddings: dict):
    """The 5-NN accuracy of the labels in the PCA plane and in each t-SNE plane, as a one-column table."""
    import pandas as pd

    values = {"PCA (best epoch)": neighbour_accuracy(embeddings["pca"], embeddings["labels"])}
    values.update({f"t-SNE epoch {e}": v for e, v in tsne_neighbour_accuracy(embeddings).items()})
    return pd.Series(values, name="5-NN accuracy in 2-D").round(3).to_frame()


def compare_sentence(name_a: str, value_a: float, name_b: str, value_b: float, metric: str) -> str:
    """ "Model B reaches 0.91 validation accuracy, 0.12 above model A (0.79)." from two numbers."""
    better, worse = (
        ((name_b, value_b), (name_a, value_a)) if value_b >= value_a else ((name_a, value_a), (name_b, value_b))
    )
    return (
        f"{better[0]} reaches a validation {metric} of {better[1]:.4f}, {better[1] - worse[1]:.4f} above "
        f"{worse[0]} ({worse[1]:.4f})."
    )


def curve_sentence(run: Run) -> str:
    """How the validation metric moved during training, from the history."""
    column = f"val_{run.metric}"
    history = run.history
    first, best = history[column].iloc[0], history[column].max()
    best_epoch = int(history.loc[history[column].idxmax(), "epoch"])
    return (
        f"Validation {run.metric} went from {first:.4f} after epoch 1 to {best:.4f} at epoch {best_epoch} "
        f"of {len(history)}."
    )


# ----------------------------------------------------------------------------------------------------
# the report's paragraphs, one per question that states results


def _departures(name: str, profile: str) -> list[str]:
    """The departures of experiment ``name`` under ``profile``: full's from the reference, and demo's from full."""
    full = [f"`full`: {d}" for d in FULL_DEPARTURES.get(name, [])]
    if profile == "full":
        return full
    if profile == "demo":
        return [f"`demo`: {d}" for d in DEMO_DEPARTURES.get(name, [])] + full
    return [f"the `{profile}` profile shrinks every size to prove the pipeline in seconds; its numbers mean nothing"]


def _overrides_item(run: Run) -> list[str]:
    """``["overrides of this run: `lr=0.001`"]`` when the run departs from its profile's recipe, else ``[]``."""
    from hw1lib.report.tables import run_overrides

    diff = run_overrides(run)
    return [f"**overrides of the recipe in this run**: `{format_overrides(diff)}`"] if diff else []


def departures_text(run: Run, profile: str) -> str:
    """Where the run's recipe departs from the reference report's (and, in ``demo``, from ``full``), as a list,
    with the overrides the run was trained with first."""
    return "Read from the run's resolved parameters. Departures from the reference recipe:\n\n" + "\n".join(
        f"- {d}" for d in _overrides_item(run) + _departures(run.folder.name, profile)
    )


def profile_departures_text(runs: dict[str, Run], profile: str) -> str:
    """Every experiment's departures, one list each: the recipes this report's numbers come from."""
    intro = {
        "full": "The `full` recipes depart from the reference report's where peers' results on the same data say it "
        "pays:",
        "demo": "The `demo` profile scales each `full` recipe down to train on the stand-in on a 2-core CPU in "
        "minutes; each departure (`demo`) is listed with the `full` recipe's own departures from the reference "
        "report (`full`):",
    }.get(profile, f"The `{profile}` profile:")
    blocks = [intro]
    for name, run in runs.items():
        items = "\n".join(f"  - {d}" for d in _overrides_item(run) + _departures(name, profile))
        blocks.append(f"- **{name}** (`{run.config['model']}`):\n{items}")
    return "\n".join(blocks)


def vgg_like_text(run: Run, parameters: int) -> str:
    """Question 1: what P1 model A is."""
    kwargs = run.config["model_kwargs"]
    return (
        f"Model A is a VGG-style network built from a configuration list: three blocks of two 3x3 convolution + "
        f"batch norm + ReLU layers and a 2x2 max pool, with widths {kwargs.get('widths')}, then a two-layer MLP "
        f"head (hidden width {kwargs.get('hidden')}) with dropout; {parameters:,} parameters. The diagram is "
        "traced from the model object."
    )


def accuracy_text(a: Run, b: Run) -> str:
    """Question 2: both validation accuracies and how training went."""
    return (
        compare_sentence("Model A", a.best_value, "Model B", b.best_value, "accuracy")
        + " Model A: "
        + curve_sentence(a)
        + " Model B: "
        + curve_sentence(b)
    )


def model_b_text(a: Run, b: Run, parameters_a: int, parameters_b: int) -> str:
    """Question 4: what P1 model B is and how it differs from model A."""
    c = b.config
    loss = "cross-entropy" if c["loss"] == "ce" else "focal loss"
    return (
        f"Model B is `{c['model']}`, an EfficientNet with {parameters_b:,} parameters "
        f"({parameters_b / parameters_a:.1f}x model A), initialised from **{b.metrics['weights_source']}** and "
        "fine-tuned end to end. Unlike model A it does not learn its features from 50 x 32x32 images alone: it "
        f"reuses ImageNet features, sees the images resized on the device to {c['model_kwargs'].get('input_size')} "
        "px and normalised with the weights' statistics, and uses depthwise-separable MBConv blocks with global "
        "average pooling instead of plain convolutions and a large MLP. Training: AdamW lr "
        f"{c['lr']:g}, weight decay {c['weight_decay']:g}, {c['epochs']} epochs, {loss} with label smoothing "
        f"{c['label_smoothing']:g}. " + compare_sentence("Model A", a.best_value, "Model B", b.best_value, "accuracy")
    )


def pca_text(embeddings: dict, knn: float, run: Run) -> str:
    """Question 5: the PCA picture in words, with the 5-NN accuracy of the labels in the plane."""
    structure = (
        "a linear 2-D view keeps most of the class structure."
        if knn >= 0.5 * run.best_value
        else "a linear 2-D view loses most of the class structure, which lives in more than two directions; "
        "classes appear as overlapping clouds ordered along the main directions of variance."
    )
    return (
        f"The second-last layer (the MLP's hidden activations) of the best checkpoint (epoch "
        f"{embeddings['pca_epoch']}), projected on its first two principal components, which explain "
        f"{embeddings['pca_explained'].sum():.0%} of its variance. The 5-nearest-neighbour accuracy of the labels "
        f"in this plane is {knn:.3f} (chance 0.02), against {run.best_value:.3f} for the classifier itself: "
        + structure
    )


def tsne_text(knn: dict[int, float]) -> str:
    """Question 6: how the t-SNE clusters changed over the epochs, from the 5-NN accuracy in each plane."""
    epochs = sorted(knn)
    trend = (
        ": the classes form tighter, better separated clusters as training proceeds."
        if knn[epochs[-1]] > knn[epochs[0]]
        else ": the clusters did not become better separated."
    )
    return (
        "t-SNE (scikit-learn, after PCA to 50 dimensions) of the second-last layer at epochs "
        + ", ".join(str(e) for e in epochs)
        + ". The 5-nearest-neighbour accuracy of the labels in the t-SNE plane "
        "goes " + " -> ".join(f"{knn[e]:.3f} (epoch {e})" for e in epochs) + trend
    )


def fcn_text(run: Run, parameters: int) -> str:
    """Question 7: what FCN32s is, and which VGG16 this run used."""
    text = (
        "FCN32s: the 13 convolutions and 5 max pools of VGG16 (stride 32), VGG16's fully connected fc6/fc7 recast "
        "as 7x7 and 1x1 convolutions, a 1x1 score layer to 7 classes and a single x32 bilinear upsampling back to "
        f"the input size; {parameters:,} parameters. Weights: {run.metrics['weights_source']}."
    )
    if run.config["model_kwargs"].get("batch_norm", False):
        text += (
            " This run uses VGG16 with batch norm after every convolution: from a random initialisation the "
            "plain VGG16 stays at the majority class within a CPU budget (the full profile uses the plain, "
            "ImageNet-pretrained VGG16 of the FCN paper)."
        )
    return text


#: what the backbone of each DeepLabV3 variant is, in words (question 8)
_DEEPLAB_BACKBONES = {
    "deeplabv3_resnet50": "a ResNet50 backbone: residual bottleneck blocks with batch norm instead of VGG's plain "
    "convolutions; the last two stages use dilated convolutions",
    "deeplabv3_lite0": "an EfficientNet-Lite0 backbone (the demo's offline warm start; `full` uses ResNet50): "
    "inverted-residual (MBConv) blocks with batch norm instead of VGG's plain convolutions; its last two "
    "stages use dilated convolutions",
}


def deeplab_text(run: Run, parameters: int, fcn_parameters: int) -> str:
    """Question 8: what DeepLabV3 is and how it differs from FCN32s (the backbone read from the run)."""
    return (
        f"DeepLabV3 with {_DEEPLAB_BACKBONES[run.config['model']]} so the features keep 1/8 of the input "
        "resolution (FCN32s: 1/32), and an atrous spatial pyramid pooling head (rates 12, 24, 36 and image "
        "pooling) mixes context at several scales before the bilinear upsampling; an auxiliary FCN head on the "
        f"stage before adds a second loss (weight {run.config['aux_weight']:g}) during training. {parameters:,} "
        f"parameters ({parameters / fcn_parameters:.2f}x FCN32s). Weights: {run.metrics['weights_source']}."
    )


def miou_text(a: Run, b: Run) -> str:
    """Question 9: both mIoUs and how training went."""
    return (
        compare_sentence("FCN32s", a.best_value, "DeepLabV3", b.best_value, "mIoU")
        + " FCN32s: "
        + curve_sentence(a)
        + " DeepLabV3: "
        + curve_sentence(b)
    )


def masks_text(run: Run, epochs: list[int], labels: dict[int, str]) -> str:
    """Question 10: which epochs the mask grid shows, with the validation mIoU at each."""
    miou_at = run.history.set_index("epoch")["val_miou"]
    return (
        "Input, ground truth and model B's prediction at "
        + ", ".join(f"{labels[e]} (validation mIoU {miou_at[e]:.4f})" for e in epochs)
        + "."
    )


def class_accuracy_text(accuracy_a: list[float | None], accuracy_b: list[float | None]) -> str:
    """Beyond question 2: how the two models' per-class accuracies compare, and each one's hardest classes."""
    scored = [c for c in range(len(accuracy_a)) if accuracy_a[c] is not None and accuracy_b[c] is not None]
    b_better = sum(accuracy_b[c] > accuracy_a[c] for c in scored)
    a_better = sum(accuracy_a[c] > accuracy_b[c] for c in scored)

    def hardest(acc: list[float | None]) -> str:
        worst = sorted(scored, key=lambda c: (acc[c], c))[:3]
        return ", ".join(f"class {c} ({acc[c]:.2f})" for c in worst)

    return (
        f"Per-class accuracy at each model's best epoch (validation). Model B is more accurate than model A on "
        f"{b_better} of {len(scored)} classes, model A on {a_better}. Hardest classes for model A: "
        f"{hardest(accuracy_a)}; for model B: {hardest(accuracy_b)}."
    )


def confused_pairs_text(run: Run, pairs) -> str:
    """Beyond question 2: the most frequent error of ``run`` in words (``pairs`` from ``confused_pairs``)."""
    if pairs.empty:
        return "The model made no validation error, so there is no confused pair to show."
    top = pairs.to_dict("records")[0]  # (a row Series would turn the class numbers into floats)
    return (
        f"The most frequent errors of the model at its best epoch (epoch {run.metrics['best_epoch']}). The first: "
        f"class {top['true class']} predicted as class {top['predicted as']} for {top['images']} images "
        f"({top['share of the true class']:.0%} of class {top['true class']}). Below, validation images of each "
        "pair's true class (blue) beside images of the class it was taken for (red)."
    )


def iou_bars_text(iou_a: list[float | None], iou_b: list[float | None]) -> str:
    """Beyond question 9: where the two segmenters differ, class by class."""
    gaps = [
        (iou_b[k] - iou_a[k], CLASS_NAMES[c])
        for k, c in enumerate(SCORED_CLASSES)
        if iou_a[k] is not None and iou_b[k] is not None
    ]
    if not gaps:
        return "No class is present in both models' validation predictions, so there is no per-class comparison."
    largest = max(gaps, key=lambda g: abs(g[0]))
    worst_b = min(
        ((iou_b[k], CLASS_NAMES[c]) for k, c in enumerate(SCORED_CLASSES) if iou_b[k] is not None), default=None
    )
    text = (
        f"Per-class IoU at each model's best epoch. The largest difference is on {largest[1]} "
        f"({'+' if largest[0] >= 0 else ''}{largest[0]:.3f} for DeepLabV3 over FCN32s)."
    )
    if worst_b is not None:
        text += f" DeepLabV3's weakest class is {worst_b[1]} (IoU {worst_b[0]:.3f})."
    return text


def masks_compare_text(a: Run, b: Run, epoch_a: int, epoch_b: int) -> str:
    """Beyond question 10: which epochs the side-by-side mask figure shows (``best_mask_epoch`` of each run)."""

    def at(run: Run, epoch: int) -> str:
        best = " (its best)" if epoch == run.metrics["best_epoch"] else ""
        return f"epoch {epoch}{best}, validation mIoU {run.history.set_index('epoch')['val_miou'][epoch]:.4f}"

    return (
        f"The same three validation images, predicted by model A (FCN32s, {at(a, epoch_a)}) and model B "
        f"(DeepLabV3, {at(b, epoch_b)}). FCN32s scores a grid of 1/32 of the input's resolution and upsamples it "
        "once, DeepLabV3 a grid of 1/8: compare the region borders."
    )
