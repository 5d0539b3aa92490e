"""The report's paragraphs: every sentence that states a result, computed from finished runs.

Each function takes runs (and numbers computed from them) and returns Markdown; notebook 06 displays it,
and ``tests/test_report_text.py`` checks it directly.
"""

from __future__ import annotations

import warnings

import numpy as np

from hw1lib.config import FULL_DEPARTURES
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


def departures_text(run: Run, profile: str) -> str:
    """Where the run's recipe departs from the reference report's, as a Markdown list."""
    name = run.folder.name
    departures = (
        FULL_DEPARTURES.get(name, [])
        if profile == "full"
        else [f"the {profile} profile scales the full recipe down to run on the stand-in on a CPU (see its notebook)"]
    )
    return "Read from the run's resolved parameters. Departures from the reference recipe:\n\n" + "\n".join(
        f"- {d}" for d in departures
    )


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


def model_b_text(b: Run, a: Run, parameters_b: int, parameters_a: int) -> str:
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


def deeplab_text(run: Run, parameters: int, fcn_parameters: int) -> str:
    """Question 8: what DeepLabV3 is and how it differs from FCN32s."""
    return (
        "DeepLabV3 with a ResNet50 backbone: residual blocks with batch norm instead of VGG's plain convolutions; "
        "the last two stages use dilated convolutions so the features keep 1/8 of the input resolution (FCN32s: "
        "1/32), and an atrous spatial pyramid pooling head (rates 12, 24, 36 and image pooling) mixes context at "
        "several scales before the bilinear upsampling; an auxiliary FCN head on stage 3 adds a second loss "
        f"(weight {run.config['aux_weight']:g}) during training. {parameters:,} parameters "
        f"({parameters / fcn_parameters:.2f}x FCN32s). Weights: {run.metrics['weights_source']}."
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
