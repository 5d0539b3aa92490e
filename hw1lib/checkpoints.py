"""Checkpoint files: what they hold, how a model is rebuilt from one, and how they are read safely.

A checkpoint is a dict of plain data: ``{"model": state_dict, "meta": {...}, "epoch": int}`` (weights) or,
for a run's resume point, also the optimizer and scheduler states and the early-stopping state. ``meta``
holds only strings, numbers, lists and dicts, so every checkpoint loads with ``torch.load(weights_only=True)``:
a checkpoint handed to us by someone else cannot run code when it is opened (a pickle can). A file that
needs full unpickling is refused with a message saying so.

What this is not: the run folder's layout (:mod:`hw1lib.runs` names the files).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

import hw1lib
from hw1lib.models import build_model


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, truncated, foreign, unsafe or for another model."""


def model_meta(config: object, model: nn.Module) -> dict:
    """What :func:`load_model` needs to rebuild the network without its training code (plain types only).

    Args:
        config: the run's ``TrainConfig``.
        model: the built model (its ``weights_source`` sentence is kept for the report).
    """
    return {
        "task": config.task,
        "model": config.model,
        "num_classes": config.num_classes,
        "model_kwargs": dict(config.model_kwargs),
        "weights_source": getattr(model, "weights_source", "unknown"),
        "hw1lib": hw1lib.__version__,
    }


def read_checkpoint(path: str | Path) -> dict:
    """Open a checkpoint without executing anything in it (``weights_only=True``).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: a truncated or foreign file, or one that would need arbitrary unpickling (names the
            file and why).
    """
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.pt"))
        hint = f" (it holds {', '.join(inside[:4])}: pass one of them)" if inside else ""
        raise CheckpointError(f"checkpoint {path} is a folder; expected a checkpoint file such as best.pt{hint}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    _check_torch_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path} was refused: it contains Python objects that only a full unpickling could "
            "build, and unpickling a file can run arbitrary code; only plain hw1lib checkpoints "
            f"are opened ({_first_line(error)})"
        ) from None
    except Exception as error:  # zip reader errors, EOF, not a torch file at all
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or not a torch file: "
            f"{type(error).__name__}: {_first_line(error)})"
        ) from None
    if not isinstance(state, dict) or "model" not in state or "meta" not in state:
        raise CheckpointError(f"{path} is not an hw1lib checkpoint (expected a dict with 'model' and 'meta')")
    return state


#: how files written by ``torch.save`` begin: a zip archive (the default since torch 1.6) or a legacy pickle
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


def _check_torch_file(path: Path) -> None:
    """Refuse a file that is not a ``torch.save`` file at all (JSON, text, an image), saying what it looks like.

    Why first: ``torch.load(weights_only=True)`` reports such a file as an unpicklable one, which reads as if
    it were a dangerous checkpoint; a JSON file handed over as a checkpoint is a wrong path, not an attack.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as error:
        raise CheckpointError(f"checkpoint {path} cannot be read ({error.strerror})") from None
    if head.startswith(_TORCH_MAGIC):
        return
    if not head:
        looks = "an empty file"
    elif head.lstrip()[:1] in (b"{", b"["):
        looks = "JSON text"
    elif all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        looks = "text"
    else:
        looks = f"a file beginning {head[:8]!r}"
    raise CheckpointError(
        f"{path} is not a readable checkpoint: it is {looks}, not a file written by torch.save; expected a .pt "
        "file such as a run's best.pt"
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


def load_state_dict_checked(model: nn.Module, state_dict: dict, path: str | Path) -> None:
    """``model.load_state_dict(strict=True)`` whose error names the file and the first missing/unexpected keys,
    or that the file holds tensors without data (saved from a model built on the ``meta`` device)."""
    empty = [k for k, v in state_dict.items() if isinstance(v, torch.Tensor) and v.is_meta]
    if empty:
        raise CheckpointError(
            f"{path} holds {len(empty)} tensors without data (on the 'meta' device, e.g. {empty[:2]}): it was "
            "saved from a model built without weights; expected a checkpoint of a trained model"
        )
    result = model.load_state_dict(state_dict, strict=False)
    mismatched = [
        k for k, v in state_dict.items() if k in model.state_dict() and model.state_dict()[k].shape != v.shape
    ]
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path} does not fit the model: {len(result.missing_keys)} missing keys "
            f"{result.missing_keys[:3]}, {len(result.unexpected_keys)} unexpected keys "
            f"{result.unexpected_keys[:3]}"
        )
    if mismatched:
        raise CheckpointError(f"{path} does not fit the model: shapes differ for {mismatched[:3]}")


def load_model(
    checkpoint: str | Path, device: str | torch.device = "cpu", task: str | None = None
) -> tuple[nn.Module, dict]:
    """Rebuild a model from a ``best.pt``/``epoch_NNN.pt``/``last.pt`` checkpoint, safely (see the module doc).

    Args:
        checkpoint: the checkpoint file.
        device: where to put the model.
        task: when given, refuse a checkpoint of the other task with a clear error.

    Returns:
        ``(model in eval mode, channels_last, meta)``.
    """
    state = read_checkpoint(checkpoint)
    meta = state["meta"]
    if task is not None and meta.get("task") != task:
        raise CheckpointError(
            f"{checkpoint} is a {meta.get('task')} checkpoint ({meta.get('model')}); a {task} checkpoint is needed here"
        )
    try:
        model = build_model(meta["model"], num_classes=meta["num_classes"], pretrained=False, **meta["model_kwargs"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{checkpoint} names a model this hw1lib cannot build ({error})") from None
    load_state_dict_checked(model, state["model"], checkpoint)
    model.weights_source = meta.get("weights_source", "unknown")
    return model.to(device, memory_format=torch.channels_last).eval(), meta
