"""The boxes of an architecture diagram, read from one forward pass of a model.

Forward hooks on the chosen modules (the "frontier" at some depth) open and close boxes; a
:class:`~torch.overrides.TorchFunctionMode` tags every tensor with the boxes it came from, so functional code
between modules (flatten, interpolate, additions, ``F.relu``) keeps the wiring. Norms and activations are then
fused into the box they follow, ``nn.Identity`` placeholders dropped, and outputs moved after their source.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from hw1lib.viz.architecture.kinds import _FUSABLE, _children, _describe, _is_layer, _kind


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
_FUNCTIONAL_ACTIVATIONS = {
    "relu": "ReLU",
    "relu_": "ReLU",
    "relu6": "ReLU6",
    "gelu": "GELU",
    "silu": "SiLU",
    "hardswish": "Hardswish",
    "leaky_relu": "LeakyReLU",
    "elu": "ELU",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "mish": "Mish",
}


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
    boxes: list[dict] = [
        {"name": "input", "type": "input", "kind": "input", "shape": _shape(x), "params": 0, "inputs": [], "via": []}
    ]
    open_boxes: dict[int, list[int]] = {}

    def before(module: nn.Module, args: tuple, kwargs: dict) -> None:
        name = names[id(module)]
        open_boxes.setdefault(id(module), []).append(len(boxes))
        boxes.append(
            {
                "name": name,
                "type": _describe(name, module),
                "kind": _kind(module),
                "params": sum(p.numel() for p in module.parameters()),
                "identity": isinstance(module, nn.Identity),
                "leaf": _is_layer(module),
                **_inputs(mode, (args, kwargs)),
            }
        )

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
        boxes.append(
            {
                "name": "output" if key is None else f"output[{key!r}]",
                "type": "output",
                "kind": "output",
                "shape": _shape(value),
                "params": 0,
                **_inputs(mode, value),
            }
        )
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
            meta = {
                k: torch.empty_like(v, device="meta") for k, v in [*model.named_parameters(), *model.named_buffers()]
            }
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
        if (
            follows
            and box["kind"] in _FUSABLE
            and box.get("leaf")
            and not box["via"]
            and out[prev]["kind"] not in ("input", "output")
        ):
            merged = out[prev]
            merged.update(
                type=f"{merged['type']} + {box['type']}",
                shape=box["shape"],
                params=merged["params"] + box["params"],
                members=[*merged["members"], box["name"]],
            )
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
