"""What a module is in a diagram: its kind (and so its colour), whether it is a layer, and its short label."""

from __future__ import annotations

from collections import Counter

from torch import nn

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
    "BatchNorm1d": "BN",
    "BatchNorm2d": "BN",
    "BatchNorm3d": "BN",
    "BatchNormAct2d": "BN-Act",
    "Dropout2d": "Dropout",
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
    return (
        not _children(module)
        or any(cls.__module__ in _KIND_BY_MODULE for cls in type(module).__mro__)
        or isinstance(module, (nn.modules.conv._ConvNd, *_UPSAMPLERS))
    )


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
