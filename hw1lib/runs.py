"""The run folder: its one owner. Naming, finding the run of a recipe, every file written in it and read from it.

A run folder is ``<out_root>/<experiment>-<hash>``, the hash taken over everything that decides the
result (configuration, data fingerprints, resolved precision), so a finished run with identical
parameters is reused and a changed parameter trains into a new folder. Its files:

    params.json          the parameters (hashed) plus data folders, environment, world size and the recipe
                         (experiment, profile, overrides, label) the run was asked as (not hashed)
    history.csv          one row per finished epoch (rewritten after every epoch)
    metrics.json         written once at the end: best/final metrics, wall time, stop reason
    last.pt              full training state after the last finished epoch (the resume point)
    best.pt              model weights of the best epoch by the validation metric
    epoch_NNN.pt         model weights at chosen epochs, plus the first and the final one
    masks/reference.npz  inputs and ground truth of the kept validation ids (segmentation)
    masks/epoch_NNN.npz  their predicted class maps at every epoch
    embeddings.npz       PCA / t-SNE projections cached by the report (classification)
    tensorboard/         TensorBoard event files: per-epoch scalars and the per-step training loss (rank 0)

The notebooks and the report find "their" run with :func:`find_run`: the finished run whose stored
configuration equals the one their recipe resolves to (profile, overrides, seed), never merely the newest,
so a side experiment trained with other parameters never replaces it. No other module spells these names:
the engine writes through :class:`RunFolder`, the notebooks and the report read through :class:`Run` and
:func:`find_run`, ``hw1 runs`` through :func:`hw1lib.run_summary.summarize`, and the grader's commands choose their
checkpoint by :func:`hw1lib.grader_checkpoint.choose_checkpoint` (the rule README states).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hw1lib.checkpoints import CheckpointError, read_checkpoint
from hw1lib.config import MACHINE_FIELDS
from hw1lib.files import atomic_write, remove_stale_temps, save_json, save_npz, save_torch
from hw1lib.paths import runs_dir

PARAMS, HISTORY, METRICS, LAST, BEST = "params.json", "history.csv", "metrics.json", "last.pt", "best.pt"
MASKS, EMBEDDINGS, TENSORBOARD = "masks", "embeddings.npz", "tensorboard"


def params_hash(params: dict) -> str:
    """A short, stable hash of a JSON-able parameter dict."""
    return hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:10]


#: the suffix of a fast dev run's profile folder (``runs/demo-fastdev``)
FASTDEV_SUFFIX = "-fastdev"


def profile_folder(profile: str, fast_dev_run: bool = False) -> str:
    """``<profile>``, or ``<profile>-fastdev`` for a fast dev run: the folder name of a profile's runs, figures
    and report, so that a fast dev run's meaningless numbers never mix with a real run's (or get reused by one)."""
    return f"{profile}{FASTDEV_SUFFIX}" if fast_dev_run else profile


def default_out_root(out_dir: str | Path, profile: str, fast_dev_run: bool = False) -> Path:
    """The folder of run folders: ``out_dir`` when given, else ``runs/<profile>`` (or ``$HW1_RUNS/<profile>``),
    ``runs/<profile>-fastdev`` for a fast dev run."""
    if str(out_dir).strip():
        return Path(out_dir).expanduser()
    return runs_dir() / profile_folder(profile, fast_dev_run)


def _epoch_of(path: Path) -> int:
    return int(path.name.split("_")[1].split(".")[0])


class RunFolder:
    """The paths of one run folder and the writers the engine uses (every write is atomic)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def for_params(cls, out_root: str | Path, name: str, params: dict) -> RunFolder:
        """The run folder of experiment ``name`` with these (hashed) parameters."""
        return cls(Path(out_root) / f"{name}-{params_hash(params)}")

    @property
    def name(self) -> str:
        """The experiment name (the folder name without its hash)."""
        return self.path.name.rsplit("-", 1)[0]

    # paths
    def file(self, which: str) -> Path:
        """``params``, ``history``, ``metrics``, ``last``, ``best``, ``embeddings`` or ``tensorboard`` (a folder)."""
        names = {
            "params": PARAMS,
            "history": HISTORY,
            "metrics": METRICS,
            "last": LAST,
            "best": BEST,
            "embeddings": EMBEDDINGS,
            "tensorboard": TENSORBOARD,
        }
        return self.path / names[which]

    def snapshot(self, epoch: int) -> Path:
        """The weights saved at ``epoch``."""
        return self.path / f"epoch_{epoch:03d}.pt"

    def masks(self, epoch: int | None = None) -> Path:
        """The kept masks of ``epoch``, or the reference (inputs and ground truth) when ``epoch`` is None."""
        return self.path / MASKS / ("reference.npz" if epoch is None else f"epoch_{epoch:03d}.npz")

    def is_finished(self) -> bool:
        return self.file("metrics").exists()

    def snapshot_epochs(self) -> list[int]:
        """Epochs with saved weights, ascending."""
        return sorted(_epoch_of(p) for p in self.path.glob("epoch_*.pt"))

    def mask_epochs(self) -> list[int]:
        """Epochs with kept validation masks, ascending."""
        return sorted(_epoch_of(p) for p in (self.path / MASKS).glob("epoch_*.npz"))

    def tensorboard_dir(self) -> Path:
        """The folder of the run's TensorBoard event files (``tensorboard --logdir runs/`` finds it)."""
        return self.file("tensorboard")

    # writing
    def tensorboard_writer(self, purge_step: int | None = None):
        """A ``SummaryWriter`` on :meth:`tensorboard_dir`; ``purge_step`` hides the events a resumed run rewrites."""
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when a run trains

        return SummaryWriter(log_dir=str(self.tensorboard_dir()), purge_step=purge_step)

    def start(self, record: dict) -> list[Path]:
        """Create the folder, clear temporary files a killed writer left, write ``params.json``; return the cleared."""
        self.path.mkdir(parents=True, exist_ok=True)
        removed = remove_stale_temps(self.path)
        save_json(record, self.file("params"))
        return removed

    def write_history(self, rows: list[dict]) -> None:
        atomic_write(self.file("history"), lambda handle: pd.DataFrame(rows).to_csv(handle, index=False))

    def read_metrics(self) -> dict:
        return json.loads(self.file("metrics").read_text())

    def write_metrics(self, metrics: dict) -> None:
        save_json(metrics, self.file("metrics"))

    def save_weights(self, weights: dict, which: str | int) -> Path:
        """Save ``{"model", "meta", "epoch"}`` as ``best.pt`` (``which="best"``) or ``epoch_NNN.pt`` (an epoch)."""
        path = self.file("best") if which == "best" else self.snapshot(int(which))
        return save_torch(weights, path)

    def save_last(self, state: dict) -> None:
        save_torch(state, self.file("last"))

    def save_masks(self, arrays: dict[str, np.ndarray], epoch: int | None = None) -> None:
        save_npz(arrays, self.masks(epoch))

    def read_last(self) -> tuple[dict | None, str]:
        """The resume state: ``(state, note)``, where ``note`` says what was done when ``last.pt`` was unreadable.

        An unreadable ``last.pt`` (a copy cut short, a crash on a full disk) is not fatal: the run starts over
        from epoch 1, because only ``last.pt`` holds the optimizer and scheduler states that an exact resume
        needs (an ``epoch_NNN.pt`` holds weights only); the bad file is moved aside as ``last.pt.unreadable``
        and the note names it and the choice.
        """
        last = self.file("last")
        if not last.exists():
            return None, ""
        try:
            return read_checkpoint(last), ""
        except CheckpointError as error:
            aside = last.with_name(LAST + ".unreadable")
            last.replace(aside)
            return None, f"{error}; moved it to {aside.name} and started this run over from epoch 1"


def find_run(out_root: str | Path, experiment: str, config: dict | None = None, data: dict | None = None) -> Run:
    """The finished run of ``experiment`` in ``out_root`` trained with exactly ``config`` (a
    ``TrainConfig.to_dict()``), on ``data`` (``{"train": key, "val": key}``) when given; the newest when
    several match (e.g. other data folders). ``config=None`` takes the newest finished run of any config.

    Raises:
        FileNotFoundError: no such run; names the folder, the experiment, and what the finished runs of that
            experiment there differ in, so a user sees whether the recipe or the parameters are wrong.
    """
    wanted = _comparable(config) if config is not None else None
    matches, others = [], []
    for params_file in sorted(Path(out_root).glob(f"{experiment}-*/{PARAMS}")):
        folder = RunFolder(params_file.parent)
        if folder.name != experiment or not folder.is_finished():
            continue
        try:
            params = json.loads(params_file.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if wanted is not None and _comparable(params.get("config", {})) != wanted:
            others.append((folder.path.name, params.get("config", {})))
        elif data is not None and params.get("data") != data:
            others.append((folder.path.name, {"data": params.get("data")}))
        else:
            matches.append((folder.file("metrics").stat().st_mtime, folder.path))
    if matches:
        return load_run(max(matches)[1])
    looked = f"no finished run of {experiment} in {out_root}"
    if wanted is not None:
        looked += f" with the configuration asked for (seed {wanted.get('seed')})"
    if not others:
        raise FileNotFoundError(f"{looked}; train it first (its notebook, or `hw1 train {experiment}`)")
    differences = "; ".join(f"{name} differs in {_differing(wanted or {}, found)}" for name, found in others[:5])
    raise FileNotFoundError(
        f"{looked}: {differences}. Train it (its notebook, or `hw1 train {experiment}` with the same profile, "
        "--set overrides and --seed), or pass the parameters it was trained with"
    )


def _comparable(config: dict) -> dict:
    """A config as JSON reads it back, without :data:`hw1lib.config.MACHINE_FIELDS` (micro-batches a GPU's memory
    chose): the run of a recipe trained on an 11 GB card is still that recipe's run."""
    return {k: v for k, v in json.loads(json.dumps(config)).items() if k not in MACHINE_FIELDS}


def _differing(wanted: dict, found: dict) -> str:
    """``lr (0.001 here, 0.002 asked)``, for the keys two configs differ in (at most four named)."""
    keys = sorted(k for k in set(wanted) | set(found) if wanted.get(k) != found.get(k))
    text = ", ".join(f"{k} ({found.get(k)!r} here, {wanted.get(k)!r} asked)" for k in keys[:4])
    return text + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


@dataclass
class Run:
    """A finished run folder, loaded: what the notebooks and the report read."""

    folder: RunFolder
    params: dict
    metrics: dict
    history: pd.DataFrame

    @property
    def run_dir(self) -> Path:
        return self.folder.path

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

    @property
    def data_folders(self) -> dict[str, Path]:
        """``{"train": folder, "val": folder}`` the run was trained and validated on."""
        return {k: Path(v) for k, v in self.params.get("data_folders", {}).items()}

    def snapshot_epochs(self) -> list[int]:
        return self.folder.snapshot_epochs()

    def mask_epochs(self) -> list[int]:
        return self.folder.mask_epochs()

    def checkpoint(self, epoch: int | None = None) -> Path:
        """``best.pt`` (``epoch=None``) or the snapshot of ``epoch``."""
        return self.folder.file("best") if epoch is None else self.folder.snapshot(epoch)

    def build_model(self) -> torch.nn.Module:
        """The run's network with fresh (not trained) weights, e.g. to draw its architecture."""
        from hw1lib.models import build_model

        return build_model(self.config["model"], num_classes=self.config["num_classes"], **self.config["model_kwargs"])

    def load_model(self, epoch: int | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The trained network of the best epoch (``None``) or of a snapshot epoch."""
        from hw1lib.checkpoints import load_model

        return load_model(self.checkpoint(epoch), device)[0]

    def mask_side(self) -> int:
        """Side of the kept validation masks (the validation images' size)."""
        with np.load(self.folder.masks()) as reference:
            return int(next(reference[k] for k in reference.files if k.startswith("truth_")).shape[0])

    def kept_masks(self, epochs: list[int]) -> tuple[dict, dict, dict]:
        """Inputs, ground truths and predicted masks (per epoch) of the validation ids the run kept.

        Returns:
            ``(images, truths, predictions)``: ``images[id]`` (H, W, 3) uint8, ``truths[id]`` (H, W) class map,
            ``predictions[epoch][id]`` (H, W) class map.
        """
        with np.load(self.folder.masks()) as reference:
            images = {k.removeprefix("image_"): reference[k] for k in reference.files if k.startswith("image_")}
            truths = {k.removeprefix("truth_"): reference[k] for k in reference.files if k.startswith("truth_")}
        predictions = {}
        for epoch in epochs:
            with np.load(self.folder.masks(epoch)) as kept:
                predictions[epoch] = {k: kept[k] for k in kept.files}
        return images, truths, predictions

    def cached_arrays(self, tag: str) -> dict[str, np.ndarray] | None:
        """The arrays of ``embeddings.npz`` when it was written with the same ``tag``, else None."""
        path = self.folder.file("embeddings")
        if not path.exists():
            return None
        with np.load(path) as cached:
            return dict(cached) if str(cached["tag"]) == tag else None

    def cache_arrays(self, tag: str, arrays: dict[str, np.ndarray]) -> None:
        save_npz({"tag": np.array(tag), **arrays}, self.folder.file("embeddings"))


def load_run(run_dir: str | Path) -> Run:
    """Load a finished run folder (raises ``FileNotFoundError`` naming a missing file)."""
    folder = RunFolder(run_dir)
    for which in ("params", "metrics", "history"):
        if not folder.file(which).exists():
            raise FileNotFoundError(f"{folder.file(which)} is missing: the run did not finish")
    return Run(
        folder=folder,
        params=json.loads(folder.file("params").read_text()),
        metrics=json.loads(folder.file("metrics").read_text()),
        history=pd.read_csv(folder.file("history")),
    )


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
    stages = ["early", "middle", "final"] if len(epochs) == 3 else ["early", "final"][-len(epochs) :]
    return {e: f"epoch {e} ({stage})" for e, stage in zip(epochs, stages)}


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
