"""Make ``import torchvision`` work beside a CPU-only torch.

Why this exists: PyPI's Linux wheel of torchvision 0.28.0 is a CUDA build. Next to the CPU build of
torch 2.13.0 (what ``pip install torch==2.13.0`` takes on our machines) its compiled extension
``torchvision/_C.so`` does not load. torchvision then skips registering its C++ operators, but its
``_meta_registrations`` module still calls ``torch.library.register_fake("torchvision::nms")``, and the
import dies with ``RuntimeError: operator torchvision::nms does not exist``.

What it does: only when the compiled extension really fails to load, it declares the two operator
schemas that torchvision registers fake kernels for (``nms`` and ``qnms``), so that the import
completes. Nothing else changes: models, weights and transforms are pure Python and work as usual;
calling ``torchvision.ops.nms`` on such an install raises (no kernel), which this project never does.
Where the extension loads (a matching CPU or CUDA build, e.g. on a GPU machine) this module does nothing.

What it is not: a replacement for torchvision's detection ops.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

import torch

#: Schemas of the torchvision operators that ``torchvision._meta_registrations`` needs to exist.
_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

#: Set to the load error (a string) when the shim was applied, ``None`` otherwise.
SHIM_REASON: str | None = None
_LIBRARY: torch.library.Library | None = None  # kept alive: dropping it would undefine the schemas


def _extension_path() -> Path | None:
    """Locate ``torchvision/_C*.so`` without importing torchvision (whose import is what fails)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0])
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = folder / f"_C{suffix}"
        if candidate.exists():
            return candidate
    return None


def _ops_registered() -> bool:
    return hasattr(torch.ops, "torchvision") and hasattr(torch.ops.torchvision, "nms")


def ensure_torchvision_importable() -> None:
    """Declare torchvision's operator schemas if, and only if, its compiled ops cannot load."""
    global SHIM_REASON, _LIBRARY
    if "torchvision" in sys.modules or _LIBRARY is not None:
        return
    path = _extension_path()
    if path is None:
        return  # torchvision is not installed, or ships no extension: nothing to repair
    try:
        torch.ops.load_library(str(path))  # what torchvision does itself; a no-op when it works twice
    except (OSError, RuntimeError) as error:
        if _ops_registered():
            return
        SHIM_REASON = f"{path.name} did not load: {error}"
        _LIBRARY = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS.values():
            _LIBRARY.define(schema)


ensure_torchvision_importable()
