"""``hw1 evaluate``: a run's checkpoint on its own validation folder gives back the score the run recorded.

Small runs are trained on labelled folders written to disk (the real names: ``{label}_{id}.png``,
``{id}_sat.jpg``/``{id}_mask.png``), loaded by the same loaders as a real run, so the test covers the whole
path: folders -> loaders -> fit -> best.pt -> evaluate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hw1lib.cli import main
from hw1lib.config import TrainConfig
from hw1lib.data.classification import load_classification_folder
from hw1lib.data.palette import encode_mask
from hw1lib.data.segmentation import load_segmentation_folder
from hw1lib.engine import steps_per_epoch
from hw1lib.evaluation import evaluate_checkpoint
from hw1lib.fit import fit
from hw1lib.runs import load_run
from hw1lib.runs_table import runs_table
from tests.test_engine import config as engine_config
from tests.test_tensorboard import scalars


def p1_folder(folder, n: int, seed: int):
    """``n`` labelled 32x32 images over 5 classes, each class a different brightness (learnable in steps)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        label = i % 5
        pixels = (rng.random((32, 32, 3)) * 60 + label * 40).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{label}_{i}.png")
    return folder


def p2_folder(folder, n: int, seed: int, masks: bool = True):
    """``n`` 32x32 ``{id}_sat.jpg`` (with ``{id}_mask.png`` pairs): halves of two classes, coloured by class."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        classes = rng.choice(6, 2, replace=False)
        class_map = np.full((32, 32), classes[0], dtype=np.uint8)
        class_map[:, 16:] = classes[1]
        image = (class_map[..., None] * 40 + rng.random((32, 32, 3)) * 30).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{i:04d}_sat.jpg", quality=95)
        if masks:
            Image.fromarray(encode_mask(class_map)).save(folder / f"{i:04d}_mask.png")
    return folder


#: no augmentation, cross-entropy, no extra snapshots, seed 0: the engine tests' tiny classifier trained plainly
PLAIN = {"loss": "ce", "augment": {}, "snapshot_epochs": [], "seed": 0}


@pytest.fixture(scope="module")
def p1_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("p1eval")
    train = load_classification_folder(p1_folder(base / "train_50", 40, 0), cache=False)
    val = load_classification_folder(p1_folder(base / "val_50", 30, 1), cache=False)
    # the engine tests' tiny classifier with 50 classes, trained plainly; several validation batches, as a real run has
    config = engine_config(num_classes=50, epochs=2, batch_size=10, eval_batch_size=8, **PLAIN)
    result = fit(config, train, val, base / "runs" / "smoke", "p1_eval", device="cpu", progress=False)
    return load_run(result["run_dir"]), base / "val_50"


def test_evaluate_reproduces_the_recorded_validation_accuracy(p1_run, capsys):
    run, val_dir = p1_run
    result = evaluate_checkpoint(run.run_dir, val_dir, "cpu")
    assert result["metric"] == "acc" and result["images"] == 30 and result["same_folder"]
    assert result["value"] == pytest.approx(run.best_value, abs=1e-6)
    assert result["precision"] == run.params["precision"]
    best_epoch = run.history.set_index("epoch").loc[run.metrics["best_epoch"]]
    assert result["loss"] == pytest.approx(best_epoch["val_loss"], rel=1e-6)
    assert main(["evaluate", str(run.checkpoint()), str(val_dir), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"accuracy: {run.best_value:.6f} on 30 images" in out
    assert (
        f"the run recorded best val acc {run.best_value:.6f} at epoch {run.metrics['best_epoch']} on this folder" in out
    )
    assert "per-class accuracy:" in out


def test_the_runs_table_shows_a_real_run(p1_run):
    run, _ = p1_run
    row = runs_table(run.run_dir.parent.parent).set_index("folder").loc[run.run_dir.name]
    assert (row["status"], row["epochs"], row["best"], row["best_epoch"]) == (
        "finished",
        2,
        run.best_value,
        run.metrics["best_epoch"],
    )
    assert row["train_seconds"] == pytest.approx(run.history["seconds"].sum())


def test_evaluate_reproduces_the_recorded_validation_miou(tmp_path, capsys):
    train = load_segmentation_folder(p2_folder(tmp_path / "train", 12, 0), cache=False)
    val = load_segmentation_folder(p2_folder(tmp_path / "validation", 10, 1), cache=False)
    config = TrainConfig(
        task="segmentation",
        model="fcn32s",
        num_classes=7,
        model_kwargs={"batch_norm": True, "width": 0.125, "fc_channels": 16, "dropout": 0.0},
        epochs=2,
        batch_size=4,
        eval_batch_size=4,
        lr=3e-3,
    )
    result = fit(config, train, val, tmp_path / "runs", "p2_eval", device="cpu", progress=False)
    recorded = result["best_val_miou"]
    evaluated = evaluate_checkpoint(result["run_dir"], tmp_path / "validation", "cpu")
    assert evaluated["value"] == pytest.approx(recorded, abs=1e-6)
    ious = pd.Series(result["best"]["iou"]).astype(float).rename(int)
    assert evaluated["per_class"]["iou"].astype(float).tolist() == pytest.approx(ious.tolist(), abs=1e-6, nan_ok=True)
    history, logged = pd.read_csv(f"{result['run_dir']}/history.csv"), scalars(result["run_dir"])
    for column in ("val_miou", *(f"val_iou_{c}" for c in range(6))):  # TensorBoard has the per-class IoU too
        assert [v for _, v in logged[f"epoch/{column}"]] == pytest.approx(history[column].tolist(), nan_ok=True)
    assert main(["evaluate", result["run_dir"], str(tmp_path / "validation"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "class #0 :" in out and f"mean_iou: {recorded:f}" in out


def test_evaluate_refuses_unlabelled_or_mismatched_folders_in_one_line(p1_run, tmp_path, capsys):
    run, val_dir = p1_run
    unlabelled = tmp_path / "test"
    unlabelled.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(unlabelled / "7.png")
    assert main(["evaluate", str(run.run_dir), str(unlabelled), "--device", "cpu"]) == 2
    assert "7.png: expected a file name of the form {label}_{id}.png" in capsys.readouterr().err
    p2_test = p2_folder(tmp_path / "p2_test", 2, 0, masks=False)
    assert main(["evaluate", str(run.run_dir), str(p2_test), "--device", "cpu"]) == 2
    assert "no *.png images" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nowhere"), str(val_dir), "--device", "cpu"]) == 2
    assert "nowhere does not exist: expected a checkpoint file or a run folder" in capsys.readouterr().err


def test_a_smoke_run_is_reproduced_by_evaluate_and_its_events_match_its_history(tmp_path, capsys):
    """The real path end to end: the smoke stand-in, `hw1 train p1_model_a --profile smoke`, `hw1 evaluate`."""
    from hw1lib.data.standin import generate_standin

    generate_standin(tmp_path / "data", size="smoke")
    out = tmp_path / "runs" / "smoke"
    argv = ["train", "p1_model_a", "--profile", "smoke", "--data", str(tmp_path / "data"), "--out-dir", str(out)]
    assert main([*argv, "--device", "cpu"]) == 0
    run = load_run(next(out.glob("p1_model_a-*")))
    val_dir = tmp_path / "data" / "p1_data" / "val_50"
    assert evaluate_checkpoint(run.run_dir, val_dir, "cpu")["value"] == pytest.approx(run.best_value, abs=1e-6)
    logged = scalars(run.run_dir)
    for column in run.history.columns.drop("epoch"):
        assert [v for _, v in logged[f"epoch/{column}"]] == pytest.approx(run.history[column].tolist(), rel=1e-6)
    train_size = len(list((tmp_path / "data" / "p1_data" / "train_50").glob("*.png")))
    steps = steps_per_epoch(train_size, TrainConfig.from_dict(run.config))
    assert [s for s, _ in logged["step/train_loss"]] == list(range(1, len(run.history) * steps + 1))
