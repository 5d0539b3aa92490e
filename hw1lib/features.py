"""Pre-logit features of a classifier and their 2-D projections (PCA, t-SNE) for the report's Q5 and Q6.

Every classifier of the project exposes ``forward_features`` and ``forward_head(x, pre_logits=True)``
(the timm interface), so the "second-last layer" is read without hooks. Images go in as uint8; the
model normalises them itself. The projections are deterministic for a given seed.

What this is not: plotting (see ``hw1lib.viz.plot_embeddings``) or label handling (labels are the caller's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits
from torch import nn

if TYPE_CHECKING:
    from hw1lib.fit import LabelledSet
    from hw1lib.runs import Run

#: t-SNE runs on at most this many PCA components (van der Maaten's and scikit-learn's advice).
TSNE_PCA_DIMS = 50


@torch.no_grad()
def extract_features(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """The pre-logit features ``forward_head(forward_features(x), pre_logits=True)`` of every image.

    Args:
        model: a classifier with ``forward_features`` and ``forward_head``; it is moved to ``device`` and run
            in eval mode, and its training flag is restored afterwards.
        images: (N, 3, H, W) uint8; converted batch by batch to float in [0, 1].
        batch_size: images per forward pass.
        device: where to run.

    Returns:
        (N, D) float32 array, in the order of ``images``.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(
            f"extract_features: expected (N, 3, H, W) uint8 images, got {tuple(images.shape)} {images.dtype}"
        )
    if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
        raise TypeError(
            f"extract_features: {type(model).__name__} lacks forward_features/forward_head "
            "(the classifier interface every hw1lib classifier implements)"
        )
    was_training = model.training
    model.to(device).eval()
    try:
        chunks = []
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(device, non_blocking=True).float().div_(255)
            feats = model.forward_head(model.forward_features(x), pre_logits=True)
            chunks.append(feats.flatten(1).float().cpu())
    finally:
        model.train(was_training)
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(chunks).numpy().astype(np.float32, copy=False)


def project_pca(
    features: np.ndarray, n_components: int = 2, seed: int = 0, return_explained: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Project (N, D) features on their first ``n_components`` principal axes; returns (N, n_components) float32.

    The seed only matters when scikit-learn picks its randomised solver (large inputs); with it fixed the
    result is identical run to run. With ``return_explained`` it also returns each axis's explained variance
    ratio, which the report quotes next to the picture (how much of the layer a 2-D view shows).
    """
    features = _as_matrix(features)
    pca = PCA(n_components=n_components, random_state=seed)
    projected = pca.fit_transform(features).astype(np.float32)
    return (projected, pca.explained_variance_ratio_.astype(np.float32)) if return_explained else projected


def project_tsne(features: np.ndarray, seed: int = 0, perplexity: float = 30.0, max_iter: int = 1000) -> np.ndarray:
    """Embed (N, D) features in 2-D with t-SNE; returns (N, 2) float32, identical for the same seed.

    When D > 50 the features are first reduced to 50 dimensions by PCA, the standard practice
    (van der Maaten & Hinton 2008; scikit-learn's TSNE documentation): it removes noise dimensions and
    makes the pairwise distances t-SNE starts from cheaper and more stable, without changing which points
    are neighbours. The perplexity (an effective number of neighbours) must stay below the number of
    points; for tiny sets it is clipped to (N - 1) / 3. Initialisation is PCA, which also makes the
    layout less dependent on the seed than a random start. ``max_iter`` (at least 250) is scikit-learn's
    number of optimisation steps; the default suits the report, fewer suit smoke runs and tests.
    """
    features = _as_matrix(features)
    n, d = features.shape
    if n < 4:
        raise ValueError(f"project_tsne: needs at least 4 points, got {n}")
    if d > TSNE_PCA_DIMS:
        features = PCA(n_components=min(TSNE_PCA_DIMS, n), random_state=seed).fit_transform(features)
    perplexity = min(perplexity, (n - 1) / 3)
    tsne = TSNE(
        n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed, max_iter=max_iter
    )
    # one OpenMP thread: scikit-learn's Barnes-Hut threads spin-wait, so on a small machine that is busy with
    # anything else (a training kernel, a test worker) several threads run far slower than one
    with threadpool_limits(limits=1, user_api="openmp"):
        return tsne.fit_transform(features).astype(np.float32)


def _as_matrix(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise ValueError(f"expected (N, D) features, got shape {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or infinity; check the model's outputs (a diverged checkpoint?)")
    if len(features) > 1 and not np.ptp(features, axis=0).any():
        # every sample has the same vector (e.g. a layer of dead ReLUs): PCA divides 0/0 and scikit-learn's
        # Barnes-Hut t-SNE crashes the process on the NaNs that follow, so refuse here with a reason
        raise ValueError("features are identical for every sample (a dead layer?): nothing to project")
    return features


def representations(run: Run, val: LabelledSet, epochs: list[int], device: str = "cpu", seed: int = 0) -> dict:
    """PCA of the best model's pre-logits and t-SNE at ``epochs`` on the validation set, cached in the run.

    The arrays are cached in the run folder under a tag of the epochs, the seed and the validation data's
    fingerprint, so the report and re-runs of notebook 03 reuse them, and a change of any of the three
    computes them again.

    Args:
        run: a finished classification :class:`hw1lib.runs.Run` with snapshots at ``epochs``.
        val: the labelled validation set (its ``images``, ``labels`` and ``key``).

    Returns:
        ``{"labels": (N,), "pca": (N, 2), "pca_explained": (2,), "tsne": {epoch: (N, 2)}, "pca_epoch": int}``.
    """
    import json

    tag = json.dumps({"epochs": epochs, "seed": seed, "val": val.key})
    arrays = run.cached_arrays(tag)
    if arrays is None:
        features = extract_features(run.load_model(None, device), val.images, device=device)
        pca, explained = project_pca(features, seed=seed, return_explained=True)
        arrays = {
            "labels": val.labels.numpy(),
            "pca": pca,
            "pca_explained": explained,
            "pca_epoch": np.array(run.metrics["best_epoch"]),
        }
        for epoch in epochs:
            arrays[f"tsne_{epoch}"] = project_tsne(
                extract_features(run.load_model(epoch, device), val.images, device=device), seed=seed
            )
        run.cache_arrays(tag, arrays)
    return {
        "labels": arrays["labels"],
        "pca": arrays["pca"],
        "pca_explained": arrays["pca_explained"],
        "pca_epoch": int(arrays["pca_epoch"]),
        "tsne": {e: arrays[f"tsne_{e}"] for e in epochs},
    }
