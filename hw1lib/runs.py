"""Read finished run folders back: parameters, history, metrics, snapshots, kept masks, embeddings.

The notebooks and the report draw every figure and state every number from these files, never from
notebook globals; this module is the one place that knows the run folder's layout (written by
:mod:`hw1lib.engine`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hw1lib.engine import current_run, load_model, save_npz
from hw1lib.paths import runs_dir


@dataclass
class Run:
    """A finished run folder, loaded."""

    run_dir: Path
    params: dict
    metrics: dict
    history: pd.DataFrame

    @property
    def config(self) -> dict:
        return self.params["config"]

    @property
    def metric(self) -> str:
        """``acc`` or ``miou``: the validation metric that selected the best checkpoint."""
        return self.metrics["metric"]

    @property
    def best_value(self) -> float:
        return self.metrics[f"best_val_{self.metric}"]

    def snapshot_epochs(self) -> list[int]:
        """Epochs with saved weights (``epoch_NNN.pt``), ascending."""
        return sorted(int(p.stem.split("_")[1]) for p in self.run_dir.glob("epoch_*.pt"))

    def mask_epochs(self) -> list[int]:
        """Epochs with kept validation masks, ascending."""
        return sorted(int(p.stem.split("_")[1]) for p in (self.run_dir / "masks").glob("epoch_*.npz"))


def default_out_root(out_dir: str, profile: str) -> Path:
    """The folder of run folders: ``out_dir`` when given, else ``runs/<profile>``."""
    return Path(out_dir).expanduser() if str(out_dir).strip() else runs_dir() / profile


def load_run(run_dir: str | Path) -> Run:
    """Load a finished run folder (raises ``FileNotFoundError`` naming a missing file)."""
    run_dir = Path(run_dir)
    for name in ("params.json", "metrics.json", "history.csv"):
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"{run_dir / name} is missing: the run did not finish")
    return Run(run_dir=run_dir, params=json.loads((run_dir / "params.json").read_text()),
               metrics=json.loads((run_dir / "metrics.json").read_text()), history=pd.read_csv(run_dir / "history.csv"))


def load_current(out_root: str | Path, name: str) -> Run:
    """The run that the last notebook execution of ``name`` trained or reused in ``out_root``."""
    return load_run(current_run(out_root, name))


def early_middle_final(epochs: list[int]) -> list[int]:
    """Three epochs for "early / middle / final" figures: the first, the one nearest the middle, the last.

    With fewer than three distinct epochs available, the distinct ones are returned.
    """
    if not epochs:
        raise ValueError("no epochs to choose from")
    first, last = epochs[0], epochs[-1]
    middle = min(epochs, key=lambda e: (abs(e - (first + last) / 2), e))
    return sorted({first, middle, last})


def stage_labels(epochs: list[int]) -> dict[int, str]:
    """``{epoch: "epoch 3 (middle)"}`` for the epochs of :func:`early_middle_final`."""
    stages = ["early", "middle", "final"] if len(epochs) == 3 else ["early", "final"][-len(epochs):]
    return {e: f"epoch {e} ({stage})" for e, stage in zip(epochs, stages)}


def kept_masks(run: Run, epochs: list[int]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[int, dict[str, np.ndarray]]]:
    """Inputs, ground truths and predicted masks (per epoch) of the validation ids a run kept.

    Returns:
        ``(images, truths, predictions)``: ``images[id]`` (H, W, 3) uint8, ``truths[id]`` (H, W) class map,
        ``predictions[epoch][id]`` (H, W) class map.
    """
    with np.load(run.run_dir / "masks" / "reference.npz") as reference:
        images = {k.removeprefix("image_"): reference[k] for k in reference.files if k.startswith("image_")}
        truths = {k.removeprefix("truth_"): reference[k] for k in reference.files if k.startswith("truth_")}
    predictions = {}
    for epoch in epochs:
        with np.load(run.run_dir / "masks" / f"epoch_{epoch:03d}.npz") as kept:
            predictions[epoch] = {k: kept[k] for k in kept.files}
    return images, truths, predictions


def representations(run: Run, val, epochs: list[int], device: str = "cpu", seed: int = 0) -> dict:
    """PCA of the best model's pre-logits and t-SNE at ``epochs`` on the validation set, cached in the run.

    The result is stored in ``embeddings.npz`` in the run folder keyed by the epochs, the seed and the
    validation data fingerprint, so the report and re-runs of notebook 03 reuse it.

    Returns:
        ``{"labels": (N,), "pca": (N, 2), "pca_explained": (2,), "tsne": {epoch: (N, 2)}, "pca_epoch": int}``.
    """
    from hw1lib.features import extract_features, project_pca, project_tsne

    path = run.run_dir / "embeddings.npz"
    tag = json.dumps({"epochs": epochs, "seed": seed, "val": val.key})
    if path.exists():
        with np.load(path) as cached:
            if str(cached["tag"]) == tag:
                return _unpack_embeddings(dict(cached), epochs)
    best_model, _ = load_model(run.run_dir / "best.pt", device)
    features = extract_features(best_model, val.images, device=device)
    pca, explained = project_pca(features, seed=seed, return_explained=True)
    arrays = {"tag": np.array(tag), "labels": val.labels.numpy(), "pca": pca, "pca_explained": explained,
              "pca_epoch": np.array(run.metrics["best_epoch"])}
    for epoch in epochs:
        model, _ = load_model(run.run_dir / f"epoch_{epoch:03d}.pt", device)
        arrays[f"tsne_{epoch}"] = project_tsne(extract_features(model, val.images, device=device), seed=seed)
    save_npz(arrays, path)
    return _unpack_embeddings(arrays, epochs)


def _unpack_embeddings(arrays: dict, epochs: list[int]) -> dict:
    return {"labels": arrays["labels"], "pca": arrays["pca"], "pca_explained": arrays["pca_explained"],
            "pca_epoch": int(arrays["pca_epoch"]), "tsne": {e: arrays[f"tsne_{e}"] for e in epochs}}


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
