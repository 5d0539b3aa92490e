"""Figures: each plot returns a Figure with the expected axes; overlays, saving and architecture tracing by value."""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch
from torch import nn

from hw1lib import viz
from hw1lib.data.palette import CLASS_NAMES, PALETTE

# ------------------------------------------------------------------------------------------ save_figure


def _tiny_figure() -> Figure:
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1], [0, 1])
    return fig


def test_save_figure_writes_png_and_no_temp_file(tmp_path):
    path = viz.save_figure(_tiny_figure(), "curve", folder=tmp_path / "figs")
    assert path == tmp_path / "figs" / "curve.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["curve.png"]
    assert viz.save_figure(_tiny_figure(), "curve.png", folder=tmp_path / "figs") == path


@pytest.mark.skipif(os.name != "posix", reason="file modes and umask are POSIX")
def test_save_figure_honours_umask_like_open(tmp_path):
    previous = os.umask(0o022)
    try:
        path = viz.save_figure(_tiny_figure(), "shared", folder=tmp_path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # group and others can read it, as with open(path, "wb")


def test_save_figure_defaults_to_figures_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HW1_FIGURES", str(tmp_path))
    assert viz.save_figure(_tiny_figure(), "x") == tmp_path / "x.png"


def test_save_figure_failure_leaves_nothing(tmp_path, monkeypatch):
    fig = _tiny_figure()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        viz.save_figure(fig, "curve", folder=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_save_figure_rejects_folders_in_name(tmp_path):
    with pytest.raises(ValueError, match="plain file name"):
        viz.save_figure(_tiny_figure(), "sub/curve", folder=tmp_path)


# ---------------------------------------------------------------------------------------- overlay_mask


def test_overlay_mask_edges_exactly_on_class_boundaries():
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    class_map = np.array([[0, 0, 1, 1]] * 4, dtype=np.uint8)  # urban | agriculture
    out = viz.overlay_mask(image, class_map, alpha=0.5, edges=True)
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    colours = PALETTE[class_map]
    edge = np.zeros((4, 4), dtype=bool)
    edge[:, 1:3] = True  # both sides of the vertical boundary, nothing else
    np.testing.assert_array_equal(out[edge], colours[edge])  # solid class colour on the boundary
    np.testing.assert_array_equal(out[~edge], np.rint(0.5 * colours[~edge]).astype(np.uint8))


def test_overlay_mask_single_pixel_region_marks_its_four_neighbours():
    image = np.full((4, 4, 3), 100, dtype=np.uint8)
    class_map = np.full((4, 4), 3, dtype=np.uint8)
    class_map[1, 1] = 4
    out = viz.overlay_mask(image, class_map, alpha=0.25)
    expected = np.zeros((4, 4), dtype=bool)
    expected[[1, 0, 2, 1, 1], [1, 1, 1, 0, 2]] = True
    is_solid = (out == PALETTE[class_map]).all(axis=-1)
    np.testing.assert_array_equal(is_solid, expected)


def test_overlay_mask_without_edges_is_a_plain_blend():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    class_map = rng.integers(0, 7, (8, 8)).astype(np.uint8)
    out = viz.overlay_mask(image, class_map, alpha=0.3, edges=False)
    expected = 0.7 * image + 0.3 * PALETTE[class_map]
    assert out.dtype == np.uint8 and np.abs(out - expected).max() <= 0.5 + 1e-3  # rounded to nearest


def test_overlay_mask_rejects_mismatched_shapes_and_bad_classes():
    with pytest.raises(ValueError, match="class map"):
        viz.overlay_mask(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="0..6"):
        viz.overlay_mask(np.zeros((2, 2, 3), np.uint8), np.full((2, 2), 7, np.uint8))


# -------------------------------------------------------------------------------------------- plots


def _history() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "epoch": [1, 2, 3, 4],
            "train_loss": [2.0, 1.5, 1.2, 1.0],
            "val_loss": [2.1, 1.6, 1.7, 1.8],
            "train_acc": [0.2, 0.4, 0.5, 0.6],
            "val_acc": [0.2, 0.3, 0.45, 0.4],
            "lr": [1e-3, 8e-4, 5e-4, 2e-4],
        }
    )


def test_plot_history_one_panel_per_metric_and_best_epoch(tmp_path):
    fig = viz.plot_history(_history(), metrics=("loss", "acc"), title="run")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    loss_ax, acc_ax = fig.axes
    assert "(epoch 2)" in loss_ax.get_title()  # lowest validation loss
    assert "(epoch 3)" in acc_ax.get_title()  # highest validation accuracy
    csv = tmp_path / "history.csv"
    _history().to_csv(csv, index=False)
    assert len(viz.plot_history(csv, metrics=("loss", "acc", "lr")).axes) == 3


def test_plot_history_ticks_whole_epochs_only():
    fig = viz.plot_history(_history().head(3), metrics=("loss",))
    fig.draw_without_rendering()  # ticks are chosen at drawing time
    ticks = [t for t in fig.axes[0].get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_plot_history_names_missing_metric():
    with pytest.raises(ValueError, match="miou"):
        viz.plot_history(_history(), metrics=("miou",))


def test_plot_confusion_matrix_numbers_only_for_few_classes():
    cm7 = np.diag(np.arange(1, 8)) + 1
    fig = viz.plot_confusion_matrix(cm7, list(CLASS_NAMES), normalize=True)
    heatmap = fig.axes[0]
    assert len(fig.axes) == 2  # heatmap + colour bar
    values = [float(t.get_text()) for t in heatmap.texts]
    assert len(values) == 49
    np.testing.assert_allclose(np.array(values).reshape(7, 7).sum(axis=1), 1.0, atol=0.04)  # rows sum to one
    fig50 = viz.plot_confusion_matrix(np.eye(50) * 10)
    assert len(fig50.axes) == 2 and len(fig50.axes[0].texts) == 0


def _maps(seed: int, n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 7, (16, 16)).astype(np.uint8) for _ in range(n)]


def test_plot_mask_grid_rows_by_columns():
    images = [np.zeros((16, 16, 3), np.uint8)] * 3
    predictions = {"epoch 1 (early)": _maps(1), "epoch 10 (middle)": _maps(2), "epoch 20 (final)": _maps(3)}
    fig = viz.plot_mask_grid(images, _maps(0), predictions, ["0013", "0062", "0104"])
    assert len(fig.axes) == 3 * 5
    assert [ax.get_title() for ax in fig.axes[:5]] == ["input", "ground truth", *predictions]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(CLASS_NAMES)
    with pytest.raises(ValueError, match="one entry per image"):
        viz.plot_mask_grid(images, _maps(0, 2), predictions, ["0013", "0062", "0104"])


def test_plot_overlay_single_axes_with_legend():
    fig = viz.plot_overlay(np.zeros((16, 16, 3), np.uint8), _maps(0, 1)[0], title="0013")
    assert len(fig.axes) == 1 and len(fig.legends) == 1


def test_plot_embeddings_same_colour_per_class_across_panels():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(50), 4)
    panels = {f"epoch {e}": rng.normal(size=(200, 2)) for e in (1, 10, 20)}
    fig = viz.plot_embeddings(panels, labels)
    assert len(fig.axes) == 4  # three panels + the class key strip
    colours = [ax.collections[0].get_facecolors()[:, :3] for ax in fig.axes[:3]]
    np.testing.assert_array_equal(colours[0], colours[2])
    assert len({tuple(np.round(c, 4)) for c in colours[0]}) == 50  # fifty distinct colours
    fig7 = viz.plot_embeddings({"PCA": rng.normal(size=(14, 2))}, np.arange(14) % 7, class_names=list(CLASS_NAMES))
    assert len(fig7.axes) == 1 and len(fig7.legends) == 1


# ------------------------------------------------------------------------------------------ architecture


class _TwoHeads(nn.Module):
    """A backbone with a main and an auxiliary head reading an intermediate feature, like DeepLabV3."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.body = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.head = nn.Conv2d(8, 7, 1)
        self.aux = nn.Conv2d(4, 7, 1)
        self.skip = nn.Identity()

    def forward(self, x):
        f = self.skip(self.stem(x))
        out = nn.functional.interpolate(self.head(self.body(f)), size=x.shape[-2:])
        return {"out": out, "aux": self.aux(f)}


def _tiny_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 5),
    )


def test_trace_architecture_fuses_and_counts():
    model = _tiny_cnn()
    boxes = viz.trace_architecture(model, (1, 3, 8, 8), depth=1)
    assert [b["kind"] for b in boxes] == ["input", "conv", "pool", "other", "linear", "output"]
    assert boxes[1]["type"] == "Conv2d 3×3 + BN + ReLU" and boxes[1]["shape"] == "8×8×8"
    assert boxes[1]["params"] == 3 * 8 * 9 + 8 + 2 * 8
    assert boxes[-1]["shape"] == "5" and all(b["inputs"] == [i - 1] for i, b in enumerate(boxes) if i)
    assert len(viz.trace_architecture(model, (1, 3, 8, 8), depth=1, fuse=False)) == 8


def test_trace_architecture_follows_branches_and_restores_training():
    model = _TwoHeads().train()
    boxes = viz.trace_architecture(model, (1, 3, 8, 8), depth=1)
    names = [b["name"] for b in boxes]
    assert names == ["input", "stem", "body", "head", "output['out']", "aux", "output['aux']"]  # Identity dropped
    assert boxes[names.index("aux")]["inputs"] == [names.index("stem")]  # the branch reads the stem
    out = boxes[names.index("output['out']")]
    assert out["inputs"] == [names.index("head")] and out["via"] == ["nearest interpolate"]  # via F.interpolate
    assert boxes[names.index("stem")]["type"] == "Conv2d 3×3 + ReLU"  # a conv-ReLU Sequential reads as one layer
    assert all(m.training for m in model.modules())


def test_trace_architecture_shows_functional_activations():
    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.drop, self.fc2 = nn.Linear(4, 3), nn.Dropout(0.5), nn.Linear(3, 2)

        def forward(self, x):
            return self.fc2(self.drop(nn.functional.relu(self.fc1(x))))

    boxes = viz.trace_architecture(Head(), (1, 4), depth=1)
    assert [b["type"] for b in boxes] == ["input", "Linear + ReLU + Dropout", "Linear", "output"]


def test_trace_architecture_depth_and_names():
    model = _TwoHeads()
    deeper = viz.trace_architecture(model, (1, 3, 8, 8), depth=2, fuse=False)
    assert [b["name"] for b in deeper][1:3] == ["stem.0", "stem.1"]
    chosen = viz.trace_architecture(model, (1, 3, 8, 8), modules=["body", "head"])
    assert [b["name"] for b in chosen] == ["input", "body", "head", "output['out']", "output['aux']"]
    with pytest.raises(ValueError, match="no module named"):
        viz.trace_architecture(model, (1, 3, 8, 8), modules=["nope"])


def test_trace_architecture_falls_back_when_meta_cannot_run():
    class NeedsValues(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)

        def forward(self, x):
            y = self.conv(x)
            return y * float(y.abs().max() + 1)  # .item() has no meta kernel

    boxes = viz.trace_architecture(NeedsValues(), (1, 3, 4, 4), depth=1)
    assert [b["name"] for b in boxes] == ["input", "conv", "output"]


def test_plot_architecture_draws_one_box_per_traced_module():
    model = _TwoHeads()
    boxes = viz.trace_architecture(model, (1, 3, 8, 8))
    fig = viz.plot_architecture(model, (1, 3, 8, 8), title="two heads")
    drawn = [p for p in fig.axes[0].patches if isinstance(p, FancyBboxPatch)]
    assert len(drawn) == len(boxes)
    total = sum(p.numel() for p in model.parameters())
    assert total == 506 and fig._suptitle.get_text() == "two heads: 506 parameters"
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("from #1" in t for t in texts)  # the auxiliary head says where it reads from


NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def _architecture_titles(path: Path) -> list[ast.expr]:
    """The ``title=`` expression of every ``plot_architecture`` call in a notebook's code cells."""
    import nbformat

    titles = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse("\n".join(line for line in cell.source.splitlines() if not line.startswith("%")))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func).endswith("architecture")]
        titles += [k.value for call in calls for k in call.keywords if k.arg == "title"]
    return titles


def test_notebook_architecture_titles_leave_the_parameter_count_to_the_figure():
    titles = {path.stem: [ast.unparse(t) for t in _architecture_titles(path)] for path in NOTEBOOKS}
    assert sum(map(len, titles.values())) >= 3  # the parse found the diagrams of notebooks 01, 04, 05 (and 06)
    for notebook, expressions in titles.items():
        for expression in expressions:
            assert "parameter" not in expression and "numel" not in expression, (notebook, expression)


def test_architecture_title_from_the_helpers_states_the_count_once():
    from hw1lib.experiments import experiment_names
    from hw1lib.notebook import Session

    model = _TwoHeads()
    for experiment in experiment_names():  # the title notebooks 01-05 build with ``s.title()``
        session = Session(experiment, None, None, None, Path("runs"), Path("figures"), "demo", "cpu", 0, False)
        text = viz.plot_architecture(model, (1, 3, 8, 8), title=session.title())._suptitle.get_text()
        assert text.count("parameters") == 1 and text.endswith(": 506 parameters"), text
        assert text.startswith(session.title()) and "(" in text and "506" not in session.title()


# ---- per-class scores, confused examples, matrices side by side --------------------------------


def test_plot_class_scores_groups_models_and_marks_absent_classes():
    fig = viz.plot_class_scores(
        {"FCN32s": [0.5, None, 0.2, 0.1, 0.0, 0.9], "DeepLabV3": [0.6, 0.3, 0.4, 0.2, 0.1, 1.0]},
        list(CLASS_NAMES[:6]),
        "IoU",
        class_colours=True,
    )
    ax = fig.axes[0]
    assert len(ax.patches) == 12 and [t.get_text() for t in ax.texts] == ["absent"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["FCN32s", "DeepLabV3"]
    with pytest.raises(ValueError, match="3 scores for 'A' but 6 class names"):
        viz.plot_class_scores({"A": [0.1, 0.2, 0.3]}, list(CLASS_NAMES[:6]), "IoU")


def test_plot_confused_examples_shows_both_classes_of_each_pair():
    images = np.random.default_rng(0).integers(0, 255, (20, 3, 32, 32), dtype=np.uint8)
    labels = np.repeat(np.arange(5), 4)
    fig = viz.plot_confused_examples(images, labels, [(0, 1), (3, 2)], per_class=2)
    assert len(fig.axes) == 2 * 4 and fig.axes[0].get_title(loc="left") == "class 0 (true)"
    assert fig.axes[2].get_title(loc="left") == "class 1 (predicted)"


def test_plot_confusion_matrices_side_by_side_with_one_colour_bar():
    rng = np.random.default_rng(0)
    fig = viz.plot_confusion_matrices(
        {"model A": rng.integers(0, 9, (50, 50)), "model B": rng.integers(0, 9, (50, 50))}
    )
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titled == ["model A", "model B"] and len(fig.axes) == 3  # two panels and one colour bar
    with pytest.raises(ValueError, match="different sizes"):
        viz.plot_confusion_matrices({"a": np.eye(3), "b": np.eye(4)})
