"""The architecture diagram: traced boxes drawn top to bottom in columns, coloured by kind, joined by arrows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch
from matplotlib.textpath import TextPath
from torch import nn

from hw1lib.viz.architecture.kinds import KIND_COLORS
from hw1lib.viz.architecture.trace import trace_architecture
from hw1lib.viz.style import legible


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


@legible
def plot_architecture(
    model: nn.Module,
    input_size: Sequence[int] = (1, 3, 32, 32),
    *,
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
    Colours give the kind of layer. The figure's title is ``title`` (what the model is, e.g.
    ``report.figure_title(run)``) followed by the total number of parameters, counted here: a caller's
    ``title`` must not state the count again. ``depth=None`` picks the level of detail that keeps the diagram
    within 30 boxes.
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
        ax.add_patch(
            FancyBboxPatch(
                (x, y),
                box_w,
                box_h,
                boxstyle="round,pad=0,rounding_size=0.06",
                facecolor=KIND_COLORS[box["kind"]],
                edgecolor="0.3",
                linewidth=0.8,
            )
        )
        ax.text(x + 0.15, y + 0.19, head, fontsize=10, va="center")
        ax.text(x + 0.15, y + 0.41, detail, fontsize=9, va="center", color="0.15")
        if i - 1 in box["inputs"]:
            _draw_link(ax, corner(i - 1), (x, y), box_w, box_h)
    kinds = [k for k in KIND_COLORS if k not in ("input", "output") and any(b["kind"] == k for b in boxes)]
    fig.legend(
        handles=[Patch(facecolor=KIND_COLORS[k], edgecolor="0.3", label=k) for k in kinds],
        loc="outside lower center",
        ncol=min(len(kinds), 8),
        frameon=False,
    )
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    count = f"{_format_count(total)} parameters" + (
        f" ({_format_count(trainable)} trainable)" if trainable != total else ""
    )
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
