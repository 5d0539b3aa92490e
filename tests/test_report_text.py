"""The report's tables and paragraphs, computed directly from hand-made run folders (no notebook, no PDF)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hw1lib import report
from hw1lib.config import get_config
from hw1lib.experiments import experiment_names
from hw1lib.runs import Run, RunFolder


def make_run(tmp_path, name, values, profile="demo", data_root=None, **config_overrides) -> Run:
    """A Run of experiment ``name`` whose validation metric went through ``values`` (one per epoch)."""
    config = get_config(name, profile, **config_overrides).to_dict()
    metric = "acc" if name.startswith("p1") else "miou"
    data_root = data_root or tmp_path / "data"
    split = "p1_data/train_50" if metric == "acc" else "p2_data/train"
    params = {
        "config": config,
        "precision": "fp32",
        "environment": {"device": "cpu"},
        "data_folders": {"train": str(data_root / split), "val": str(data_root / split)},
    }
    history = pd.DataFrame({"epoch": range(1, len(values) + 1), f"val_{metric}": values})
    best = int(np.argmax(values))
    iou = {str(c): 0.5 for c in range(6)} | {"4": None}
    metrics = {
        "metric": metric,
        f"best_val_{metric}": values[best],
        "best_epoch": best + 1,
        "final_epoch": len(values),
        "stop_reason": "completed all epochs",
        "train_seconds": 130.0,
        "weights_source": "random initialisation",
        "best": {"iou": iou},
    }
    return Run(folder=RunFolder(tmp_path / f"{name}-0123456789"), params=params, metrics=metrics, history=history)


def test_compare_sentence_orders_by_value_and_handles_a_tie():
    assert report.compare_sentence("A", 0.5, "B", 0.75, "accuracy") == (
        "B reaches a validation accuracy of 0.7500, 0.2500 above A (0.5000)."
    )
    assert report.compare_sentence("A", 0.9, "B", 0.75, "mIoU").startswith("A reaches a validation mIoU of 0.9000")
    tie = report.compare_sentence("A", 0.6, "B", 0.6, "accuracy")
    assert "0.0000 above" in tie  # a tie is stated as such, with B first (the newer model)


def test_curve_and_accuracy_text_come_from_the_history(tmp_path):
    a = make_run(tmp_path, "p1_model_a", [0.1, 0.4, 0.3])
    b = make_run(tmp_path, "p1_model_b", [0.5, 0.8])
    assert report.curve_sentence(a) == "Validation acc went from 0.1000 after epoch 1 to 0.4000 at epoch 2 of 3."
    text = report.accuracy_text(a, b)
    assert text.startswith("Model B reaches a validation accuracy of 0.8000, 0.4000 above Model A (0.4000).")


def test_data_statement_tells_stand_in_from_real(tmp_path):
    standin = tmp_path / "standin"
    standin.mkdir()
    (standin / "standin.json").write_text("{}")
    runs = {"p1_model_a": make_run(tmp_path, "p1_model_a", [0.3], data_root=standin)}
    assert "not comparable" in report.data_statement(runs) and report.data_source_of(runs["p1_model_a"]) == "stand-in"
    runs = {"p1_model_a": make_run(tmp_path, "p1_model_a", [0.3], data_root=tmp_path / "hw1_data")}
    assert report.data_statement(runs).startswith("**Data: the homework's real data**")


def test_implementation_details_and_departures_read_the_recipe(tmp_path):
    run = make_run(tmp_path, "p1_model_a", [0.2, 0.3], profile="full")
    table = report.implementation_details(run)["setting"]
    assert table["optimizer"] == "AdamW, lr 0.0005, weight decay 1e-05"
    assert table["loss"] == "focal loss (gamma 2.0)" and table["batch size"] == 250
    assert table["epochs (planned / run)"] == "100 / 2 (completed all epochs)"
    assert "random crop with 4-pixel zero padding, horizontal flip" == table["augmentation (on the device)"]
    assert "100 epochs instead of 50" in report.departures_text(run, "full")
    demo = report.departures_text(run, "demo")
    assert "`demo`: narrower net" in demo and "`full`: random crop" in demo  # demo lists both layers
    assert "numbers mean nothing" in report.departures_text(run, "smoke")


def test_profile_departures_list_every_experiment(tmp_path):
    runs = {name: make_run(tmp_path, name, [0.3]) for name in experiment_names()}
    text = report.profile_departures_text(runs, "demo")
    for name in runs:
        assert f"**{name}**" in text
    assert "fc6/fc7 256 wide" in text and "EfficientNet-Lite0 at 64 px" in text


def test_weights_label_keeps_the_results_table_narrow():
    assert report.weights_label("random initialisation (trained from scratch)") == "random init"
    assert report.weights_label("ImageNet-1k, torchvision EfficientNet_V2_S_Weights.IMAGENET1K_V1") == "ImageNet-1k"
    assert report.weights_label("COCO subset with the 20 VOC classes, torchvision X; final convs") == (
        "COCO (VOC classes)"
    )
    assert report.weights_label("ImageNet-1k backbone, torchvision ResNet50_Weights; ASPP") == "ImageNet-1k backbone"


def _with_confusion(run: Run, cm: np.ndarray) -> Run:
    run.metrics["best_confusion"] = cm.tolist()
    return run


def test_class_accuracy_and_confused_pairs_come_from_the_confusion_matrix(tmp_path):
    cm = np.array([[8, 2, 0, 0], [0, 5, 5, 0], [1, 0, 9, 0], [0, 0, 0, 0]])
    a = _with_confusion(make_run(tmp_path, "p1_model_a", [0.3]), cm)
    assert report.class_accuracy(a) == [0.8, 0.5, 0.9, None]  # class 3 has no validation image
    pairs = report.confused_pairs(a, k=2)
    assert pairs.to_dict("records") == [
        {"true class": 1, "predicted as": 2, "images": 5, "share of the true class": 0.5},
        {"true class": 0, "predicted as": 1, "images": 2, "share of the true class": 0.2},
    ]
    assert "class 1 predicted as class 2 for 5 images (50% of class 1)" in report.confused_pairs_text(a, pairs)
    perfect = _with_confusion(make_run(tmp_path, "p1_model_b", [1.0]), np.eye(3, dtype=int) * 4)
    assert report.confused_pairs(perfect).empty and "no validation error" in report.confused_pairs_text(
        perfect, report.confused_pairs(perfect)
    )
    b = _with_confusion(
        make_run(tmp_path, "p1_model_b", [0.9]), np.array([[9, 1, 0, 0], [0, 9, 1, 0], [0, 0, 10, 0], [0] * 4])
    )
    text = report.class_accuracy_text(report.class_accuracy(a), report.class_accuracy(b))
    assert "more accurate than model A on 3 of 3 classes, model A on 0" in text
    assert "Hardest classes for model A: class 1 (0.50), class 0 (0.80), class 2 (0.90)" in text


def test_iou_bars_and_mask_comparison_text(tmp_path):
    a = make_run(tmp_path, "p2_model_a", [0.2, 0.4])
    b = make_run(tmp_path, "p2_model_b", [0.3, 0.6, 0.5])
    b.metrics["best"]["iou"] = {str(c): 0.7 for c in range(6)} | {"4": None, "2": 0.1}
    iou_a, iou_b = report.iou_scores(a), report.iou_scores(b)
    assert iou_a == [0.5, 0.5, 0.5, 0.5, None, 0.5] and iou_b[2] == 0.1
    text = report.iou_bars_text(iou_a, iou_b)
    assert "largest difference is on rangeland (-0.400" in text and "weakest class is rangeland (IoU 0.100)" in text
    b.folder.masks(1).parent.mkdir(parents=True, exist_ok=True)
    for epoch in (1, 2, 3):
        b.folder.masks(epoch).write_bytes(b"")
    assert report.best_mask_epoch(b) == 2
    line = report.masks_compare_text(a, b, 2, 2)
    assert "model A (FCN32s, epoch 2 (its best), validation mIoU 0.4000)" in line
    assert "model B (DeepLabV3, epoch 2 (its best), validation mIoU 0.6000)" in line


def test_iou_table_marks_an_absent_class(tmp_path):
    run = make_run(tmp_path, "p2_model_b", [0.4, 0.6])
    column = report.iou_table({"DeepLabV3": run})["DeepLabV3"]
    assert column["water"] == "absent" and column["urban"] == 0.5 and column["mIoU"] == 0.6


def test_tsne_pca_and_mask_paragraphs(tmp_path):
    assert report.tsne_text({1: 0.1, 5: 0.3, 10: 0.6}).endswith(
        "0.100 (epoch 1) -> 0.300 (epoch 5) -> 0.600 (epoch 10): the classes form tighter, better separated clusters "
        "as training proceeds."
    )
    assert report.tsne_text({1: 0.5, 10: 0.4}).endswith("did not become better separated.")
    run = make_run(tmp_path, "p1_model_a", [0.2, 0.6])
    emb = {"pca_epoch": 2, "pca_explained": np.array([0.3, 0.2])}
    assert "explain 50% of its variance" in report.pca_text(emb, 0.4, run)
    assert report.pca_text(emb, 0.4, run).endswith("keeps most of the class structure.")
    assert "loses most of the class structure" in report.pca_text(emb, 0.1, run)
    masks = make_run(tmp_path, "p2_model_b", [0.2, 0.5, 0.7])
    assert report.masks_text(masks, [1, 3], {1: "epoch 1 (early)", 3: "epoch 3 (final)"}) == (
        "Input, ground truth and model B's prediction at epoch 1 (early) (validation mIoU 0.2000), "
        "epoch 3 (final) (validation mIoU 0.7000)."
    )


@pytest.mark.parametrize("batch_norm, mentioned", [(True, True), (False, False)])
def test_fcn_text_explains_batch_norm_only_when_used(tmp_path, batch_norm, mentioned):
    run = make_run(tmp_path, "p2_model_a", [0.3], model_kwargs={"batch_norm": batch_norm})
    assert ("VGG16 with batch norm" in report.fcn_text(run, 1000)) is mentioned


def test_fast_dev_run_statement_comes_from_the_runs_caps(tmp_path):
    real = {name: make_run(tmp_path, name, [0.3, 0.4]) for name in ("p1_model_a", "p2_model_b")}
    assert report.fast_dev_run_statement(real) == "" and not report.is_fast_dev_run(real["p1_model_a"])
    assert "not capped" in report.fast_dev_run_statement(real, requested=True)
    fast = {
        name: make_run(tmp_path, name, [0.3, 0.4], profile="full", fast_dev_run=True)
        for name in ("p1_model_a", "p2_model_b")
    }
    text = report.fast_dev_run_statement(fast)
    assert text.startswith(
        "**FAST DEV RUN: the numbers in this report mean nothing.** Every training was capped to "
        "at most 2 epochs of 2 training batches and 1 validation batch, at the profile's real sizes"
    )
    mixed = {"p1_model_a": real["p1_model_a"], "p2_model_b": fast["p2_model_b"]}
    assert "The trainings of p2_model_b were capped" in report.fast_dev_run_statement(mixed, requested=True)


def test_deeplab_text_names_the_runs_backbone(tmp_path):
    demo = report.deeplab_text(make_run(tmp_path, "p2_model_b", [0.5]), 6_000_000, 3_000_000)
    assert "EfficientNet-Lite0 backbone" in demo and "2.00x FCN32s" in demo
    full = report.deeplab_text(make_run(tmp_path, "p2_model_b", [0.5], profile="full"), 40_000_000, 134_000_000)
    assert "a ResNet50 backbone" in full and "EfficientNet" not in full and "1/8 of the input resolution" in full


def test_model_b_text_takes_model_a_first_like_every_other_paragraph(tmp_path):
    a = make_run(tmp_path, "p1_model_a", [0.3, 0.4])
    b = make_run(tmp_path, "p1_model_b", [0.7, 0.8])
    b.metrics["weights_source"] = "ImageNet-1k, torchvision"
    text = report.model_b_text(a, b, 1_000, 2_500)
    assert "with 2,500 parameters (2.5x model A), initialised from **ImageNet-1k, torchvision**" in text
    assert text.endswith("Model B reaches a validation accuracy of 0.8000, 0.4000 above Model A (0.4000).")


#: parameters whose name a caller fixes (a protocol), so they stay though unused: (function, parameter)
_PROTOCOL_PARAMETERS = {
    ("__torch_function__", "types"),  # torch's override protocol passes it positionally
    ("after", "args"),  # a forward hook is called as hook(module, args, output)
}


def _unused_parameters(path: Path) -> list[str]:
    """``"file:line function: parameter"`` for each parameter that its function's body never reads."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        arguments = node.args
        names = [a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]]
        names += [a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None]
        read = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        found += [
            f"{path}:{node.lineno} {node.name}: {name}"
            for name in names
            if name not in read and name not in ("self", "cls") and (node.name, name) not in _PROTOCOL_PARAMETERS
        ]
    return found


def test_no_report_or_figure_function_takes_a_parameter_it_does_not_use():
    # ruff's ARG rules would flag protocol signatures too; this reads the report's and the figures' code only
    package = Path(report.__file__).resolve().parents[1]
    files = sorted([*(package / "report").rglob("*.py"), *(package / "viz").rglob("*.py")])
    assert files and [u for f in files for u in _unused_parameters(f)] == []


def test_time_table_keeps_each_runs_training_time_apart_from_this_builds_notebook_time(tmp_path):
    runs = {name: make_run(tmp_path, name, [0.3]) for name in ("p1_model_a", "p1_model_b")}
    runs["p1_model_a"].metrics["finished"] = "2026-12-05T09:40:12+0000"  # before the build: reused
    runs["p1_model_b"].metrics["finished"] = "2026-12-05T10:02:00+0000"  # during the build: trained by it
    build = {"started": "2026-12-05T10:00:00+0000", "notebooks": {"01_p1_model_a": 9.6, "02_p1_model_b": 150.0}}
    build["notebooks"]["03_p1_representations"] = 20.0
    (tmp_path / "timings.json").write_text(json.dumps(build))
    table = report.time_table(runs, report.read_timings(tmp_path / "timings.json"))
    assert list(table.columns) == [
        "run",
        "training time of the run",
        "the run was",
        "this build's time for the notebook",
    ]
    reused = ["P1 model A", "2.2 min", "reused (finished 2026-12-05 09:40)", "10 s"]  # its notebook took 10 s
    assert table.loc["01_p1_model_a"].tolist() == reused
    assert table.loc["02_p1_model_b"].tolist() == ["P1 model B", "2.2 min", "trained by this build", "2.5 min"]
    assert table.loc["03_p1_representations"].tolist() == ["reads P1 model A", "", "", "20 s"]  # it trains nothing


def test_time_table_without_a_build_shows_the_runs_and_an_old_timings_file_still_reads(tmp_path):
    runs = {"p2_model_a": make_run(tmp_path, "p2_model_a", [0.3])}
    runs["p2_model_a"].metrics["finished"] = "2026-12-05T09:40:12+0000"
    table = report.time_table(runs, report.read_timings(""))
    assert table.loc["04_p2_model_a"].tolist() == ["P2 model A", "2.2 min", "finished 2026-12-05 09:40", ""]
    (tmp_path / "old.json").write_text(json.dumps({"04_p2_model_a": 12.0}))  # a build before the start was kept
    assert report.read_timings(tmp_path / "old.json") == {"started": None, "notebooks": {"04_p2_model_a": 12.0}}
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="bad.json: expected a JSON object"):
        report.read_timings(tmp_path / "bad.json")
