"""Architecture diagrams: :func:`trace_architecture` reads a model's boxes, :func:`plot_architecture` draws them.

What this is not: a general graph-drawing tool. The architecture diagram lists a model's modules in the
order they run; a branch (an auxiliary head, a skip) is drawn as a reference to the box it reads from.

- ``kinds``: what a module is in a diagram (kind, colour, label).
- ``trace``: the module/functional tracer (hooks, TorchFunctionMode provenance, frontier, fuse).
- ``draw``: :func:`plot_architecture` and its drawing helpers.
"""

from __future__ import annotations

from hw1lib.viz.architecture.draw import plot_architecture
from hw1lib.viz.architecture.kinds import KIND_COLORS
from hw1lib.viz.architecture.trace import trace_architecture

__all__ = ["KIND_COLORS", "plot_architecture", "trace_architecture"]
