"""Figures of the report: training curves, confusion matrices, architecture diagrams, mask overlays, embeddings.

Every ``plot_*`` function returns a :class:`matplotlib.figure.Figure` built without pyplot, so nothing is
shown, nothing piles up in pyplot's figure list, and any backend (Agg included) can render it; Jupyter
displays a returned figure. :func:`save_figure` is the one place that writes a figure to disk.
Numbers are computed elsewhere (metrics, features, engine); the only computation here is what a picture
needs: blending a mask over an image, and tracing a model's modules for its diagram.

Sizes are chosen for a figure printed at A4 text width (about 16 cm): 9-11 pt text at that width.

What this is not: a general graph-drawing tool. The architecture diagram lists a model's modules in the
order they run; a branch (an auxiliary head, a skip) is drawn as a reference to the box it reads from.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
import weakref
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.colors import ListedColormap, PowerNorm
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch
from matplotlib.textpath import TextPath
from torch import nn
from torch.overrides import TorchFunctionMode

from hw1lib.data.palette import CLASS_NAMES, PALETTE
from hw1lib.paths import figures_dir

#: Text sizes that stay legible once a figure is shrunk to A4 text width.
_RC = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9,
    "figure.titlesize": 12,
}
_TICK_SIZE = 9


def _legible(fn: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build the figure under the report's font sizes; tick labels are drawn lazily, so set them explicitly."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        with mpl.rc_context(_RC):
            fig = fn(*args, **kwargs)
        for ax in fig.axes:
            ax.tick_params(labelsize=_TICK_SIZE)
        return fig

    return wrapper


# --------------------------------------------------------------------------------------------- saving


def save_figure(fig: Figure, name: str, folder: Path | None = None, dpi: int = 150) -> Path:
    """Write ``fig`` as ``<folder>/<name>.png`` atomically and return the path.

    Args:
        fig: the figure to write.
        name: a file name without folders; ``.png`` is added unless present.
        folder: where to write; ``figures_dir()`` (``figures/`` or ``$HW1_FIGURES``) by default.
        dpi: resolution; 150 is sharp on paper and keeps files small.

    The PNG goes to a temporary file in the same folder first and is renamed over the target, so a reader
    (the report build) never sees a half-written figure.
    """
    if not name or "/" in name or os.sep in name:
        raise ValueError(f"save_figure: name must be a plain file name like 'p1_pca', got {name!r}")
    folder = Path(folder) if folder is not None else figures_dir()
    path = folder / (name if name.lower().endswith(".png") else f"{name}.png")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            fig.savefig(handle, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# -------------------------------------------------------------------------------------- training curves


_SPLIT_COLORS = {"train": "C0", "val": "C1"}
_METRIC_TITLES = {
    "loss": "loss", "acc": "accuracy", "miou": "mIoU", "lr": "learning rate", "seconds": "seconds per epoch",
}


def _read_history(history: pd.DataFrame | str | Path) -> pd.DataFrame:
    if isinstance(history, pd.DataFrame):
        return history
    path = Path(history)
    if not path.exists():
        raise FileNotFoundError(f"history file not found: {path}")
    if path.suffix in (".jsonl", ".json"):
        return pd.read_json(path, lines=path.suffix == ".jsonl")
    return pd.read_csv(path)


def _best_row(values: pd.Series, metric: str) -> int | None:
    """Index label of the best finite value: lowest for a loss, highest for anything else."""
    finite = values[np.isfinite(values.astype(float))]
    if finite.empty:
        return None
    return finite.idxmin() if "loss" in metric else finite.idxmax()


@_legible
def plot_history(
    history: pd.DataFrame | str | Path,
    metrics: Sequence[str] = ("loss", "acc"),
    title: str | None = None,
) -> Figure:
    """Training curves, one panel per metric, with the best validation epoch marked.

    Args:
        history: one row per epoch (a DataFrame, or a CSV / JSON-lines file) with columns such as
            ``epoch, train_loss, val_loss, train_acc, val_acc, val_miou, lr``.
        metrics: for each name ``m``, the panel draws ``train_m`` and ``val_m`` (whichever exist), or the
            column ``m`` itself (e.g. ``lr``, drawn on a log scale).
        title: figure title.

    The best epoch is the lowest ``val_m`` for a loss and the highest otherwise.
    """
    df = _read_history(history)
    epochs = df["epoch"] if "epoch" in df else pd.Series(np.arange(1, len(df) + 1), index=df.index)
    fig = Figure(figsize=(min(3.4, 8.0 / len(metrics)) * len(metrics), 3.3), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    handles: dict[str, Any] = {}
    for ax, metric in zip(axes, metrics):
        columns = [c for c in (f"train_{metric}", f"val_{metric}", metric) if c in df]
        if not columns:
            raise ValueError(
                f"plot_history: no column for metric {metric!r} (looked for train_{metric}, val_{metric}, "
                f"{metric}); the history has {list(df.columns)}. Pass metrics=... naming existing ones."
            )
        marker = "o" if len(df) <= 30 else None
        for column in columns:
            label = column.split("_", 1)[0] if column != metric else _METRIC_TITLES.get(metric, metric)
            (line,) = ax.plot(epochs, df[column], marker=marker, markersize=3, color=_SPLIT_COLORS.get(label, "C2"))
            handles.setdefault(label, line)
        heading = _METRIC_TITLES.get(metric, metric)
        if f"val_{metric}" in df and (best := _best_row(df[f"val_{metric}"], metric)) is not None:
            value, epoch = df.loc[best, f"val_{metric}"], epochs.loc[best]
            ax.axvline(epoch, color="0.5", linestyle=":", linewidth=1)
            (star,) = ax.plot([epoch], [value], "k*", markersize=10)
            handles.setdefault("best validation epoch", star)
            heading += f"\nbest val {value:.3g} (epoch {epoch})"
        if metric == "lr" and (df[metric] > 0).all():
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(heading)
        ax.grid(alpha=0.3)
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=len(handles), frameon=False)
    if title:
        fig.suptitle(title)
    return fig


# ------------------------------------------------------------------------------------ confusion matrix


@_legible
def plot_confusion_matrix(
    cm: np.ndarray,
    class_names: Sequence[str] | None = None,
    normalize: bool = True,
    title: str | None = None,
) -> Figure:
    """Heatmap of a confusion matrix, rows = true class, columns = predicted class.

    Args:
        cm: (n, n) counts.
        class_names: tick labels; class indices by default.
        normalize: divide each row by its total (a class with no samples keeps a row of zeros).
        title: axes title.

    Up to 15 classes every cell carries its value; beyond that (50 classes) cells are unlabelled, only
    every fifth class is named on the axes, and the colour scale is a square root so that the small
    off-diagonal confusions stay visible next to the diagonal.
    """
    cm = np.asarray(cm, dtype=float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"plot_confusion_matrix: expected a square (n, n) matrix, got shape {cm.shape}")
    n = cm.shape[0]
    names = [str(c) for c in (class_names if class_names is not None else range(n))]
    if len(names) != n:
        raise ValueError(f"plot_confusion_matrix: {len(names)} class names for a {n}x{n} matrix")
    if normalize:
        totals = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    small = n <= 15
    fig = Figure(figsize=(5.6, 4.8) if small else (7.0, 6.0), layout="constrained")
    ax = fig.add_subplot()
    step = 1 if small else 5
    sns.heatmap(
        cm,
        ax=ax,
        cmap="Blues",
        norm=None if small else PowerNorm(0.5, vmin=0, vmax=1 if normalize else cm.max()),
        vmin=0 if small else None,
        vmax=(1 if normalize else None) if small else None,
        square=True,
        annot=small,
        fmt=".2f" if normalize else ".0f",
        annot_kws={"fontsize": 9},
        cbar_kws={"label": "fraction of the true class" if normalize else "count", "shrink": 0.8},
        xticklabels=False,
        yticklabels=False,
    )
    ticks = np.arange(0, n, step)
    ax.set_xticks(ticks + 0.5, [names[i] for i in ticks], rotation=45 if small else 0,
                  ha="right" if small else "center")
    ax.set_yticks(ticks + 0.5, [names[i] for i in ticks], rotation=0)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title)
    return fig


# ---------------------------------------------------------------------------------- architecture: trace

#: Kinds of boxes and their colours (ColorBrewer Pastel1, distinct in print).
KIND_COLORS: dict[str, str] = {
    "input": "#ffffff",
    "conv": "#b3cde3",
    "norm": "#ffffcc",
    "activation": "#fed9a6",
    "pool": "#ccebc5",
    "linear": "#decbe4",
    "upsample": "#fbb4ae",
    "dropout": "#f2f2f2",
    "block": "#e5d8bd",
    "other": "#d9d9d9",
    "output": "#ffffff",
}
_KIND_BY_MODULE = {
    "torch.nn.modules.batchnorm": "norm",
    "torch.nn.modules.instancenorm": "norm",
    "torch.nn.modules.normalization": "norm",
    "torch.nn.modules.activation": "activation",
    "torch.nn.modules.pooling": "pool",
    "torch.nn.modules.dropout": "dropout",
    "torch.nn.modules.linear": "linear",
}
_UPSAMPLERS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Upsample, nn.PixelShuffle)
#: Layers that are merged into the box before them when they only post-process its output.
_FUSABLE = {"norm", "activation", "dropout"}
_SHORT = {
    "BatchNorm1d": "BN", "BatchNorm2d": "BN", "BatchNorm3d": "BN", "BatchNormAct2d": "BN-Act", "Dropout2d": "Dropout",
}


def _kind(module: nn.Module) -> str:
    if isinstance(module, _UPSAMPLERS):
        return "upsample"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    for cls in type(module).__mro__:
        if cls.__module__ in _KIND_BY_MODULE:
            return _KIND_BY_MODULE[cls.__module__]
    if _chain(module):
        return _kind(_chain(module)[0])
    return "block" if _children(module) else "other"


def _is_layer(module: nn.Module) -> bool:
    """A module without children, or a subclass of a torch layer (timm's BatchNormAct2d holds its activation)."""
    return not _children(module) or any(cls.__module__ in _KIND_BY_MODULE for cls in type(module).__mro__) \
        or isinstance(module, (nn.modules.conv._ConvNd, *_UPSAMPLERS))


def _chain(module: nn.Module) -> list[nn.Module]:
    """The layers of a Sequential that is one layer plus its norm/activation/dropout (torchvision's
    Conv2dNormActivation, a conv-BN-ReLU block), else an empty list."""
    if not isinstance(module, nn.Sequential):
        return []
    layers = [c for c in module.children() if not isinstance(c, nn.Identity)]
    if not layers or _kind(layers[0]) not in ("conv", "linear", "upsample"):
        return []
    return layers if all(_kind(c) in _FUSABLE for c in layers[1:]) else []


def _children(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Direct children, looking through containers without a forward (a ModuleList is never called, so a
    hook on it would never fire; a ModuleDict subclass with a forward, like torchvision's backbone, is kept)."""
    out = []
    for name, child in module.named_children():
        if type(child).forward is nn.Module.forward:
            out += [(f"{name}.{n}", c) for n, c in _children(child)]
        else:
            out.append((name, child))
    return out


def _frontier(module: nn.Module, depth: int, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """Modules at ``depth`` below ``module`` (ModuleLists not counted), plus shallower layers. A layer is a
    module without children or a subclass of a torch layer (timm's BatchNormAct2d holds its activation)."""
    out = []
    for name, child in _children(module):
        if depth <= 1 or _is_layer(child):
            out.append((prefix + name, child))
        else:
            out += _frontier(child, depth - 1, f"{prefix}{name}.")
    return out


def _describe(name: str, module: nn.Module) -> str:
    """A short type label: kernel and stride for convolutions, contents for containers."""
    cls = type(module).__name__
    if isinstance(module, nn.modules.conv._ConvNd):
        text = f"{cls} {'×'.join(map(str, module.kernel_size))}"
        stride, dilation = max(module.stride), max(module.dilation)
        if isinstance(module, _UPSAMPLERS):
            return text + (f" up ×{stride}" if stride > 1 else "")
        return text + (f" /{stride}" if stride > 1 else "") + (f" dil {dilation}" if dilation > 1 else "")
    if isinstance(module, nn.Upsample):
        return f"Upsample ×{module.scale_factor} {module.mode}" if module.scale_factor else f"Upsample {module.mode}"
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        k = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
        return f"{cls} {k}×{k}"
    if _chain(module):
        return " + ".join(_describe("", layer) for layer in _chain(module))
    children = [(n, c) for n, c in module.named_children() if not isinstance(c, nn.Identity)]
    if _kind(module) != "block":
        return _SHORT.get(cls, cls)
    parts = name.split(".")
    if parts[-1].isdigit():
        label = ".".join(parts[-2:]) if cls == "Sequential" else cls
    else:
        label = parts[-1] if cls == "Sequential" else f"{parts[-1]} ({cls})"
    major = [(n, c) for n, c in children if _kind(c) not in _FUSABLE] or children  # BN/ReLU go without saying
    contents = Counter(_content(n, c) for n, c in major)
    summary = ", ".join(f"{k}× {t}" if k > 1 else t for t, k in contents.items())
    return f"{label}: {summary if len(summary) <= 30 else f'{len(children)} sub-blocks'}"


def _content(name: str, child: nn.Module) -> str:
    """How a container's box names one of its children: ``convs[5]`` for a ModuleList, the attribute for
    a plain Sequential (``downsample``), the short type otherwise."""
    cls = type(child).__name__
    if type(child).forward is nn.Module.forward:
        return f"{name}[{len(list(child.children()))}]"
    if cls == "Sequential" and not name.isdigit():
        return name
    return _SHORT.get(cls, cls)


def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, Mapping):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _tensors(item)]
    return []


#: Functional ops worth naming in a diagram when they sit between two boxes (e.g. FCN's final upsampling).
_NOTABLE_FUNCTIONS = {"interpolate", "upsample", "pixel_shuffle", "grid_sample"}
#: Functional activations (``F.relu(self.fc1(x))``), shown like activation modules.
_FUNCTIONAL_ACTIVATIONS = {"relu": "ReLU", "relu_": "ReLU", "relu6": "ReLU6", "gelu": "GELU", "silu": "SiLU",
                           "hardswish": "Hardswish", "leaky_relu": "LeakyReLU", "elu": "ELU", "sigmoid": "Sigmoid",
                           "tanh": "Tanh", "mish": "Mish"}


class _Provenance(TorchFunctionMode):
    """Tags every tensor with the boxes it was computed from, through functional code (flatten, interpolate,
    additions) between hooked modules, and with the notable functions met on the way (``via``). Tags are
    keyed by ``id`` and checked through a weak reference, so no intermediate tensor is kept alive."""

    def __init__(self) -> None:
        super().__init__()
        self._tags: dict[int, tuple[weakref.ref, frozenset[int], tuple[str, ...]]] = {}

    def get(self, obj: Any) -> tuple[frozenset[int], tuple[str, ...]]:
        sources: frozenset[int] = frozenset()
        via: tuple[str, ...] = ()
        for t in _tensors(obj):
            entry = self._tags.get(id(t))
            if entry is not None and entry[0]() is t:
                sources |= entry[1]
                via += tuple(v for v in entry[2] if v not in via)
        return sources, via

    def set(self, obj: Any, sources: frozenset[int], via: tuple[str, ...] = ()) -> None:
        for t in _tensors(obj):
            self._tags[id(t)] = (weakref.ref(t), sources, via)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 (torch's signature)
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        sources, via = self.get((args, kwargs))
        if sources:
            name = getattr(func, "__name__", "")
            if name in _FUNCTIONAL_ACTIVATIONS:
                via += (_FUNCTIONAL_ACTIVATIONS[name],)
            elif name in _NOTABLE_FUNCTIONS:
                mode = kwargs.get("mode", args[3] if len(args) > 3 else None)
                via += (f"{mode} {name}" if isinstance(mode, str) else name,)
            self.set(result, sources, via)
        return result


def _shape(obj: Any) -> str:
    """``C×H×W`` of each output tensor (batch dimension dropped)."""
    shapes = ["×".join(map(str, t.shape[1:])) or "scalar" for t in _tensors(obj)]
    return ", ".join(shapes) if shapes else "-"


def _run_traced(model: nn.Module, x: torch.Tensor, targets: list[tuple[str, nn.Module]]) -> list[dict]:
    """One forward pass with hooks on ``targets``; returns the raw boxes (input, modules, outputs)."""
    mode = _Provenance()
    boxes: list[dict] = [{"name": "input", "type": "input", "kind": "input", "shape": _shape(x), "params": 0,
                          "inputs": [], "via": []}]
    open_boxes: dict[int, list[int]] = {}

    def before(module: nn.Module, args: tuple, kwargs: dict) -> None:
        name = names[id(module)]
        open_boxes.setdefault(id(module), []).append(len(boxes))
        boxes.append({"name": name, "type": _describe(name, module), "kind": _kind(module),
                      "params": sum(p.numel() for p in module.parameters()),
                      "identity": isinstance(module, nn.Identity), "leaf": _is_layer(module),
                      **_inputs(mode, (args, kwargs))})

    def after(module: nn.Module, args: tuple, output: Any) -> None:
        index = open_boxes[id(module)].pop()
        boxes[index]["shape"] = _shape(output)
        mode.set(output, frozenset({index}))

    names = {id(m): n for n, m in targets}
    handles = []
    for _, module in targets:
        handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
        handles.append(module.register_forward_hook(after))
    try:
        mode.set(x, frozenset({0}))
        with mode:
            output = model(x)
    finally:
        for handle in handles:
            handle.remove()
    items = output.items() if isinstance(output, Mapping) else [(None, output)]
    for key, value in items:
        boxes.append({"name": "output" if key is None else f"output[{key!r}]", "type": "output",
                      "kind": "output", "shape": _shape(value), "params": 0, **_inputs(mode, value)})
    return boxes


def _inputs(mode: _Provenance, obj: Any) -> dict:
    sources, via = mode.get(obj)
    return {"inputs": sorted(sources), "via": list(via)}


def _forward_for_trace(model: nn.Module, input_size: Sequence[int], targets: list) -> list[dict]:
    """Trace on the meta device (no memory, no compute); fall back to zeros on the model's device."""
    states = {m: m.training for m in model.modules()}
    model.eval()  # batch norm in training mode refuses a batch of one, e.g. in ASPP's pooling branch
    try:
        try:
            meta = {k: torch.empty_like(v, device="meta") for k, v in
                    [*model.named_parameters(), *model.named_buffers()]}
            x = torch.zeros(tuple(input_size), device="meta")
            with torch.no_grad():
                return _run_traced(_MetaCall(model, meta), x, targets)
        except Exception:  # noqa: BLE001 (any op without a meta kernel, .item(), .cpu(): retry for real;
            # a genuine error in the model raises again below)
            first = next(model.parameters(), None)
            x = torch.zeros(tuple(input_size), device=first.device if first is not None else "cpu")
            with torch.no_grad():
                return _run_traced(model, x, targets)
    finally:
        for module, training in states.items():
            module.training = training


class _MetaCall:
    """Calls ``model`` with its parameters swapped for meta tensors (the model itself is not changed)."""

    def __init__(self, model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
        self.model, self.tensors = model, tensors

    def __call__(self, x: torch.Tensor) -> Any:
        return torch.func.functional_call(self.model, self.tensors, (x,))


def _drop_identities(boxes: list[dict]) -> list[dict]:
    """Remove ``nn.Identity`` boxes (placeholders such as a removed head), wiring their readers through."""
    rewire: dict[int, list[int]] = {}
    through: dict[int, list[str]] = {}  # functions met before a dropped identity
    kept: list[dict] = []
    index: dict[int, int] = {}
    for i, box in enumerate(boxes):
        sources = sorted({s for j in box["inputs"] for s in rewire.get(j, [j])})
        via = [v for j in box["inputs"] for v in through.get(j, [])] + box["via"]
        if box.get("identity"):
            rewire[i], through[i] = sources, via
            continue
        index[i] = len(kept)
        kept.append({**box, "inputs": sources, "via": list(dict.fromkeys(via))})
    for box in kept:
        box["inputs"] = [index[j] for j in box["inputs"] if j in index]
    return kept


def _fuse(boxes: list[dict]) -> list[dict]:
    """Merge a norm/activation/dropout into the box before it when it is that box's only reader; functional
    activations between two boxes (``F.relu``) join the label of the box before them."""
    readers = Counter(j for box in boxes for j in box["inputs"])
    out: list[dict] = []
    new_index: dict[int, int] = {}
    last_member: dict[int, int] = {}  # fused box -> original index of its last member
    for i, box in enumerate(boxes):
        prev = len(out) - 1
        follows = prev >= 0 and [new_index[j] for j in box["inputs"]] == [prev] and readers[last_member[prev]] == 1
        if follows and out[prev]["kind"] not in ("input", "output") and _only_activations(box["via"]):
            out[prev]["type"] += "".join(f" + {a}" for a in box["via"])
            box = {**box, "via": []}
        if follows and box["kind"] in _FUSABLE and box.get("leaf") and not box["via"] \
                and out[prev]["kind"] not in ("input", "output"):
            merged = out[prev]
            merged.update(type=f"{merged['type']} + {box['type']}", shape=box["shape"],
                          params=merged["params"] + box["params"], members=[*merged["members"], box["name"]])
            last_member[prev] = i
            new_index[i] = prev
            continue
        new_index[i] = len(out)
        last_member[len(out)] = i
        out.append({**box, "inputs": sorted({new_index[j] for j in box["inputs"]}), "members": [box["name"]]})
    return out


def _only_activations(via: list[str]) -> bool:
    return bool(via) and all(v in _FUNCTIONAL_ACTIVATIONS.values() for v in via)


def _place_outputs(boxes: list[dict]) -> list[dict]:
    """Move each output box right after the box it comes from, so the diagram ends each branch with it."""
    body = [b for b in boxes if b["kind"] != "output"]
    order = list(range(len(body)))
    outputs = [(i, b) for i, b in enumerate(boxes) if b["kind"] == "output"]
    for i, box in reversed(outputs):  # reversed: outputs of the same box keep their order
        source = max(box["inputs"], default=0)
        if source > 0:
            order.insert(order.index(source) + 1, i)
    order += [i for i, box in outputs if max(box["inputs"], default=0) == 0]  # from the input alone: last
    new_index = {old: new for new, old in enumerate(order)}
    return [{**boxes[old], "inputs": sorted(new_index[j] for j in boxes[old]["inputs"])} for old in order]


def trace_architecture(
    model: nn.Module,
    input_size: Sequence[int] = (1, 3, 32, 32),
    depth: int | None = None,
    modules: Sequence[str] | None = None,
    fuse: bool = True,
    max_boxes: int = 30,
) -> list[dict]:
    """The boxes of an architecture diagram, read from one forward pass of ``model``.

    Args:
        model: any module returning a tensor, a tuple or a dict of tensors (``{"out", "aux"}``).
        input_size: the input tensor's shape, batch included.
        depth: which modules become boxes: those ``depth`` levels below the model (ModuleLists and
            ModuleDicts not counted), plus any shallower layer. ``None`` picks the deepest level that
            still gives at most ``max_boxes`` boxes (the shallowest if none does).
        modules: qualified names (``"backbone.layer1"``) to draw instead of choosing by depth.
        fuse: merge a norm, activation or dropout into the box it follows when it is that box's only
            reader, so ``Conv2d 3×3 + BN + ReLU`` is one box.
        max_boxes: the limit ``depth=None`` keeps to.

    Returns:
        In execution order, one dict per box: ``name`` (qualified module name; ``input``/``output[...]``),
        ``type`` (label), ``kind`` (a key of ``KIND_COLORS``), ``shape`` (output without batch, ``C×H×W``),
        ``params`` (parameter count of the box's modules), ``inputs`` (indices of the boxes it reads),
        ``via`` (functions such as ``bilinear interpolate`` applied between those boxes and this one),
        ``members`` (module names merged into it).

    The pass runs on the meta device when the model allows it (no memory, no compute), else on zeros; it
    runs in eval mode, and every module's training flag is restored afterwards.
    """
    if modules is not None:
        lookup = dict(model.named_modules())
        missing = [m for m in modules if m not in lookup]
        if missing:
            raise ValueError(f"trace_architecture: no module named {missing}; names look like {list(lookup)[1:6]}")
        return _trace(model, input_size, [(m, lookup[m]) for m in modules], fuse)
    if depth is not None:
        if depth < 1:
            raise ValueError(f"trace_architecture: depth must be >= 1 (or None for automatic), got {depth}")
        return _trace(model, input_size, _frontier(model, depth) or [("model", model)], fuse)
    chosen: list[dict] | None = None
    previous: list[str] = []
    for level in range(1, 9):
        targets = _frontier(model, level) or [("model", model)]
        if [name for name, _ in targets] == previous:
            break  # every box is already a layer
        boxes = _trace(model, input_size, targets, fuse)
        if chosen is not None and len(boxes) > max_boxes:
            break
        chosen, previous = boxes, [name for name, _ in targets]
    return chosen


def _trace(model: nn.Module, input_size: Sequence[int], targets: list[tuple[str, nn.Module]], fuse: bool) -> list[dict]:
    boxes = _drop_identities(_forward_for_trace(model, input_size, targets))
    boxes = _fuse(boxes) if fuse else [{**b, "members": [b["name"]]} for b in boxes]
    for box in boxes:
        box.pop("identity", None)
        box.pop("leaf", None)
    return _place_outputs(boxes)


# ----------------------------------------------------------------------------------- architecture: draw


def _format_count(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.2f} M"
    if n >= 1_000:
        return f"{n / 1e3:.1f} k"
    return str(n)


def _box_lines(i: int, box: dict) -> tuple[str, str]:
    """First line: number and type; second: output shape, parameters, and inputs from non-adjacent boxes."""
    if box["kind"] in ("input", "output"):
        head = box["name"]
    else:
        head = f"#{i} {box['type']}"
    parts = [box["shape"]]
    if box["params"]:
        parts.append(f"{_format_count(box['params'])} params")
    far = [j for j in box["inputs"] if j != i - 1]
    if far:
        parts.append("from " + ", ".join(f"#{j}" for j in far))
    if box["via"]:
        parts.append("after " + ", ".join(box["via"]))
    return head, " · ".join(parts)


@_legible
def plot_architecture(
    model: nn.Module,
    input_size: Sequence[int] = (1, 3, 32, 32),
    depth: int | None = None,
    title: str | None = None,
    modules: Sequence[str] | None = None,
    fuse: bool = True,
    max_rows: int = 10,
) -> Figure:
    """Block diagram of ``model`` drawn from one traced forward pass (see :func:`trace_architecture`).

    Boxes run top to bottom in execution order and continue in the next column after ``max_rows``;
    an arrow joins consecutive boxes when one reads the other, and a box that reads an earlier,
    non-adjacent box says so (``from #5``), which is how branches such as an auxiliary head show.
    Colours give the kind of layer; the title gives the total number of parameters. ``depth=None``
    picks the level of detail that keeps the diagram within 30 boxes.
    """
    boxes = trace_architecture(model, input_size, depth, modules=modules, fuse=fuse)
    lines = [_box_lines(i, b) for i, b in enumerate(boxes)]
    ncols = math.ceil(len(boxes) / max_rows)
    nrows = math.ceil(len(boxes) / ncols)
    box_w = 0.3 + max(max(_text_width(a, 10), _text_width(b, 9)) for a, b in lines)
    box_h, gap_x, gap_y, margin = 0.56, 0.45, 0.26, 0.05
    width = ncols * box_w + (ncols - 1) * gap_x + 2 * margin
    height = nrows * box_h + (nrows - 1) * gap_y + 2 * margin
    fig = Figure(figsize=(width + 0.1, height + 0.8), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_aspect("equal")
    ax.axis("off")

    def corner(i: int) -> tuple[float, float]:
        return margin + (i // nrows) * (box_w + gap_x), margin + (i % nrows) * (box_h + gap_y)

    for i, (box, (head, detail)) in enumerate(zip(boxes, lines)):
        x, y = corner(i)
        ax.add_patch(FancyBboxPatch((x, y), box_w, box_h, boxstyle="round,pad=0,rounding_size=0.06",
                                    facecolor=KIND_COLORS[box["kind"]], edgecolor="0.3", linewidth=0.8))
        ax.text(x + 0.15, y + 0.19, head, fontsize=10, va="center")
        ax.text(x + 0.15, y + 0.41, detail, fontsize=9, va="center", color="0.15")
        if i - 1 in box["inputs"]:
            _draw_link(ax, corner(i - 1), (x, y), box_w, box_h)
    kinds = [k for k in KIND_COLORS if k not in ("input", "output") and any(b["kind"] == k for b in boxes)]
    fig.legend(handles=[Patch(facecolor=KIND_COLORS[k], edgecolor="0.3", label=k) for k in kinds],
               loc="outside lower center", ncol=min(len(kinds), 8), frameon=False)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    count = f"{_format_count(total)} parameters" + (
        f" ({_format_count(trainable)} trainable)" if trainable != total else "")
    fig.suptitle(f"{title or type(model).__name__}: {count}")
    return fig


def _text_width(text: str, size: float) -> float:
    """Rendered width of ``text`` in inches at ``size`` points (matplotlib's default font)."""
    return TextPath((0, 0), text, size=size).get_extents().width / 72


def _draw_link(ax: Any, src: tuple[float, float], dst: tuple[float, float], w: float, h: float) -> None:
    """An arrow from the box at ``src`` to the next box at ``dst``: straight down, or over to the next column
    along an elbow through the gap between the columns."""
    style = {"arrowstyle": "-|>", "color": "0.25", "linewidth": 1.0, "mutation_scale": 10, "shrinkA": 0, "shrinkB": 0}
    if abs(src[0] - dst[0]) < 1e-6:
        ax.annotate("", xy=(dst[0] + w / 2, dst[1]), xytext=(src[0] + w / 2, src[1] + h), arrowprops=style)
        return
    mid = (src[0] + w + dst[0]) / 2
    y0, y1 = src[1] + h / 2, dst[1] + h / 2
    ax.plot([src[0] + w, mid, mid], [y0, y0, y1], color="0.25", linewidth=1.0)
    ax.annotate("", xy=(dst[0], y1), xytext=(mid, y1), arrowprops=style)


# ------------------------------------------------------------------------------------------ mask overlays


def _boundaries(class_map: np.ndarray, width: int = 1) -> np.ndarray:
    """Pixels with a different class within ``width`` steps up, down, left or right (both sides marked)."""
    edge = np.zeros(class_map.shape, dtype=bool)
    for d in range(1, width + 1):
        vertical = class_map[d:, :] != class_map[:-d, :]
        horizontal = class_map[:, d:] != class_map[:, :-d]
        edge[d:, :] |= vertical
        edge[:-d, :] |= vertical
        edge[:, d:] |= horizontal
        edge[:, :-d] |= horizontal
    return edge


def overlay_mask(
    image: np.ndarray,
    class_map: np.ndarray,
    alpha: float = 0.5,
    edges: bool = True,
    edge_width: int = 1,
) -> np.ndarray:
    """Blend the class colours over an image, like the course's mask visualiser, in pure numpy.

    Args:
        image: (H, W, 3) uint8 RGB.
        class_map: (H, W) class indices 0..6.
        alpha: weight of the class colour inside regions.
        edges: paint class boundaries (pixels whose class differs from a 4-neighbour) in their own class
            colour, fully opaque, so region outlines stay visible where the blend is faint.
        edge_width: boundary thickness in pixels on each side; ``image_size // 128`` reads well in print.

    Returns:
        (H, W, 3) uint8.
    """
    image = np.asarray(image)
    class_map = np.asarray(class_map)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != class_map.shape:
        raise ValueError(f"overlay_mask: expected an (H, W, 3) image and an (H, W) class map, got "
                         f"{image.shape} and {class_map.shape}")
    if class_map.size and (class_map.min() < 0 or class_map.max() >= len(PALETTE)):
        raise ValueError(f"overlay_mask: class values must lie in 0..{len(PALETTE) - 1}, "
                         f"found {class_map.min()}..{class_map.max()}")
    colours = PALETTE[class_map.astype(np.intp)].astype(np.float32)
    out = (1 - alpha) * image.astype(np.float32) + alpha * colours
    if edges:
        edge = _boundaries(class_map, edge_width)
        out[edge] = colours[edge]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _class_legend(fig: Figure, ncol: int = 7) -> None:
    handles = [Patch(facecolor=np.asarray(c) / 255, edgecolor="0.4", label=n) for c, n in zip(PALETTE, CLASS_NAMES)]
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, frameon=False)


def _edge_width(class_map: np.ndarray) -> int:
    return max(1, min(class_map.shape) // 128)


def _image_axes(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


@_legible
def plot_mask_grid(
    images: Sequence[np.ndarray],
    ground_truths: Sequence[np.ndarray],
    predictions: Mapping[str, Sequence[np.ndarray]],
    ids: Sequence[str],
    title: str | None = None,
) -> Figure:
    """Rows = images; columns = input, ground truth, then one column per entry of ``predictions``.

    Args:
        images: (H, W, 3) uint8 inputs.
        ground_truths: (H, W) class maps.
        predictions: column title -> one (H, W) class map per image, e.g. ``{"epoch 1 (early)": [...]}``.
        ids: row labels, e.g. ``["0013", "0062", "0104"]``.
        title: figure title.
    """
    n = len(images)
    lengths = {"ground_truths": len(ground_truths), "ids": len(ids), **{k: len(v) for k, v in predictions.items()}}
    if any(length != n for length in lengths.values()):
        raise ValueError(f"plot_mask_grid: {n} images but lengths {lengths}; give one entry per image everywhere")
    columns = ["input", "ground truth", *predictions]
    cell = min(2.0, 7.5 / len(columns))
    fig = Figure(figsize=(cell * len(columns), cell * n + 0.7), layout="constrained")
    axes = fig.subplots(n, len(columns), squeeze=False)
    for r in range(n):
        maps = [ground_truths[r], *(predictions[k][r] for k in predictions)]
        panels = [np.asarray(images[r])] + [overlay_mask(images[r], m, edge_width=_edge_width(m)) for m in maps]
        for c, panel in enumerate(panels):
            axes[r, c].imshow(panel, interpolation="antialiased")
            _image_axes(axes[r, c])
            if r == 0:
                axes[r, c].set_title(columns[c])
        axes[r, 0].set_ylabel(str(ids[r]))
    _class_legend(fig, ncol=7 if len(columns) >= 5 else 4)
    if title:
        fig.suptitle(title)
    return fig


@_legible
def plot_overlay(image: np.ndarray, class_map: np.ndarray, title: str | None = None) -> Figure:
    """One image with its class map blended over it, and the class legend."""
    fig = Figure(figsize=(5.0, 5.8), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(overlay_mask(image, class_map, edge_width=_edge_width(np.asarray(class_map))))
    _image_axes(ax)
    if title:
        ax.set_title(title)
    _class_legend(fig, ncol=4)
    return fig


# ------------------------------------------------------------------------------------------- embeddings


def class_colors(n: int) -> np.ndarray:
    """(n, 3) RGB in 0..1: tab10 up to 10 classes, tab20 up to 20, tab20 + tab20b + tab20c up to 60."""
    if n <= 10:
        names = ["tab10"]
    elif n <= 20:
        names = ["tab20"]
    else:
        names = ["tab20", "tab20b", "tab20c"]
    colours = np.concatenate([np.asarray(mpl.colormaps[c].colors)[:, :3] for c in names])
    if n > len(colours):
        raise ValueError(f"class_colors: at most {len(colours)} distinguishable colours, asked for {n}")
    return colours[:n]


@_legible
def plot_embeddings(
    embeddings: Mapping[str, np.ndarray],
    labels: np.ndarray,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """Side-by-side 2-D scatter plots (one per key, e.g. ``"epoch 1"``), coloured by class.

    Args:
        embeddings: panel title -> (N, 2) points, all for the same N samples.
        labels: (N,) integer classes; a class keeps its colour in every panel.
        title: figure title.
        class_names: names for the legend; class indices by default.

    Up to 12 classes get a legend; more (50) get a colour strip under the panels as the class key.
    """
    labels = np.asarray(labels).astype(int)
    n_classes = int(labels.max()) + 1 if class_names is None else len(class_names)
    names = [str(c) for c in (class_names if class_names is not None else range(n_classes))]
    colours = class_colors(n_classes)
    order = np.random.default_rng(0).permutation(len(labels))  # no class is always drawn on top
    panels = len(embeddings)
    side = min(3.2, 7.8 / panels)
    strip = n_classes > 12
    fig = Figure(figsize=(side * panels, side + (0.9 if strip else 0.6)), layout="constrained")
    grid = fig.add_gridspec(2 if strip else 1, panels, height_ratios=[1, 0.06] if strip else [1])
    for k, (name, points) in enumerate(embeddings.items()):
        points = np.asarray(points)
        if points.shape != (len(labels), 2):
            raise ValueError(f"plot_embeddings: {name!r} has shape {points.shape}, expected ({len(labels)}, 2)")
        ax = fig.add_subplot(grid[0, k])
        ax.scatter(points[order, 0], points[order, 1], c=colours[labels[order]], s=6 if len(labels) > 500 else 14,
                   linewidths=0, alpha=0.85)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name)
    if strip:
        _class_strip(fig.add_subplot(grid[1, :]), colours, names)
    else:
        handles = [Patch(facecolor=c, label=n) for c, n in zip(colours, names)]
        fig.legend(handles=handles, loc="outside lower center", ncol=min(n_classes, 8 if panels > 1 else 4),
                   frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def _class_strip(ax: Any, colours: np.ndarray, names: Sequence[str]) -> None:
    """A colourbar-like key: one cell per class, every fifth named."""
    n = len(colours)
    ax.imshow(np.arange(n)[None, :], cmap=ListedColormap(colours), aspect="auto", interpolation="nearest")
    ticks = np.arange(0, n, 5)
    ax.set_xticks(ticks, [names[i] for i in ticks])
    ax.set_yticks([])
    ax.set_xlabel("class")

