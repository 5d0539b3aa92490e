"""The shared engine: run files, reuse, exact resume after an interruption, non-finite loss, segmentation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

import hw1lib.engine as engine
import hw1lib.precision as precision
from hw1lib.checkpoints import load_model
from hw1lib.config import TrainConfig
from hw1lib.fit import fit
from hw1lib.tasks import build_task


def tiny_classification(n=60, classes=5, seed=0, key="k"):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = (torch.rand(n, 3, 32, 32, generator=generator) * 60 + labels[:, None, None, None] * 40).to(torch.uint8)
    return SimpleNamespace(images=images, labels=labels, key=key)


def config(**overrides):
    base = dict(
        task="classification",
        model="vgg_like",
        num_classes=5,
        model_kwargs={"widths": [4, 8, 8], "hidden": 16},
        epochs=3,
        batch_size=16,
        lr=3e-3,
        loss="focal",
        augment={"padding": 2, "flip": True},
        snapshot_epochs=[2],
        seed=3,
    )
    return TrainConfig(**{**base, **overrides})


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_fit_writes_the_run_folder(tmp_path):
    train, val = tiny_classification(), tiny_classification(seed=1, key="v")
    result = fit(config(), train, val, tmp_path, "p1_test", device="cpu", progress=False)
    run = tmp_path / result["run_dir"].split("/")[-1]
    assert {
        "params.json",
        "history.csv",
        "metrics.json",
        "last.pt",
        "best.pt",
        "epoch_001.pt",
        "epoch_002.pt",
        "epoch_003.pt",
    } <= {p.name for p in run.iterdir()}
    history = pd.read_csv(run / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]
    assert {"train_loss", "val_loss", "train_acc", "val_acc", "lr", "seconds"} <= set(history.columns)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_val_acc"] == history["val_acc"].max()
    assert 0.0 <= metrics["best_val_acc"] <= 1.0 and metrics["final_epoch"] == 3
    params = json.loads((run / "params.json").read_text())
    assert (
        params["config"]["lr"] == 3e-3 and params["environment"]["device"] == "cpu" and params["data"]["train"] == "k"
    )
    assert history["lr"].iloc[-1] < 3e-3  # cosine annealing went down


def test_finished_run_is_reused_and_a_changed_parameter_trains_anew(tmp_path, monkeypatch):
    train, val = tiny_classification(), tiny_classification(seed=1, key="v")
    first = fit(config(epochs=1), train, val, tmp_path, "p1_test", device="cpu", progress=False)
    monkeypatch.setattr(engine, "train_one_epoch", lambda *a, **k: pytest.fail("retrained a finished run"))
    again = fit(config(epochs=1), train, val, tmp_path, "p1_test", device="cpu", progress=False)
    assert again["reused"] and again["run_dir"] == first["run_dir"]
    monkeypatch.undo()
    changed = fit(config(epochs=1, lr=1e-3), train, val, tmp_path, "p1_test", device="cpu", progress=False)
    assert not changed["reused"] and changed["run_dir"] != first["run_dir"]
    assert (tmp_path / first["run_dir"].split("/")[-1] / "metrics.json").exists()  # nothing overwritten


def test_force_trains_from_epoch_1_and_rewrites_the_runs_files(tmp_path):
    train, val = tiny_classification(), tiny_classification(seed=1, key="v")
    first = fit(config(epochs=2, snapshot_epochs=[]), train, val, tmp_path, "p1_test", device="cpu", progress=False)
    folder = Path(first["run_dir"])
    files = ["last.pt", "best.pt", "epoch_001.pt", "epoch_002.pt", "history.csv", "metrics.json", "params.json"]
    before = {name: (folder / name).stat().st_mtime_ns for name in files}
    forced = fit(
        config(epochs=2, snapshot_epochs=[]), train, val, tmp_path, "p1_test", device="cpu", progress=False, force=True
    )
    assert forced["run_dir"] == first["run_dir"] and not forced["reused"] and forced["resumed_from_epoch"] == 0
    assert [name for name in files if (folder / name).stat().st_mtime_ns == before[name]] == []  # all rewritten
    assert forced["best_val_acc"] == first["best_val_acc"]  # the same training again (on the CPU, exactly)


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("cpu_bf16", [False, True], ids=["fp32", "cpu_bf16"])
def test_resume_after_an_interruption_between_epochs_is_exact(tmp_path, cpu_bf16):
    train, val = tiny_classification(), tiny_classification(seed=1, key="v")
    reference = fit(config(cpu_bf16=cpu_bf16), train, val, tmp_path / "a", "p1_test", device="cpu", progress=False)

    def stop_after_two(epoch, row):
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(
            config(cpu_bf16=cpu_bf16),
            train,
            val,
            tmp_path / "b",
            "p1_test",
            device="cpu",
            progress=False,
            on_epoch_end=stop_after_two,
        )
    resumed = fit(config(cpu_bf16=cpu_bf16), train, val, tmp_path / "b", "p1_test", device="cpu", progress=False)
    assert_same_weights(weights(f"{reference['run_dir']}/last.pt"), weights(f"{resumed['run_dir']}/last.pt"))
    assert resumed["best_val_acc"] == reference["best_val_acc"]
    assert pd.read_csv(f"{resumed['run_dir']}/history.csv")["epoch"].tolist() == [1, 2, 3]


def test_resume_after_an_interruption_inside_an_epoch_is_exact(tmp_path, monkeypatch):
    train, val = tiny_classification(), tiny_classification(seed=1, key="v")
    reference = fit(config(), train, val, tmp_path / "a", "p1_test", device="cpu", progress=False)
    real_evaluate, calls = engine.evaluate, {"n": 0}

    def crash_in_second_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # epoch 2 trained, not yet evaluated or checkpointed
            raise Interrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(engine, "evaluate", crash_in_second_epoch)
    with pytest.raises(Interrupt):
        fit(config(), train, val, tmp_path / "b", "p1_test", device="cpu", progress=False)
    monkeypatch.undo()
    resumed = fit(config(), train, val, tmp_path / "b", "p1_test", device="cpu", progress=False)
    assert_same_weights(weights(f"{reference['run_dir']}/last.pt"), weights(f"{resumed['run_dir']}/last.pt"))
    assert_same_weights(weights(f"{reference['run_dir']}/best.pt"), weights(f"{resumed['run_dir']}/best.pt"))


def test_non_finite_loss_stops_with_the_step(tmp_path, monkeypatch):
    # losses are checked in windows (no wait for the device each step); the step named must be the exact one
    train, val = tiny_classification(n=200), tiny_classification(seed=1, key="v")
    messages = []
    for every in (1, 5):
        monkeypatch.setattr(engine, "FINITE_CHECK_EVERY", every)
        with pytest.raises(FloatingPointError, match=r"non-finite training loss .* at epoch 1, step \d+") as error:
            fit(config(lr=1e12, loss="ce"), train, val, tmp_path / str(every), "p1_test", device="cpu", progress=False)
        messages.append(str(error.value))
        assert not list((tmp_path / str(every)).glob("*/last.pt"))  # nothing of the broken epoch was saved
    assert messages[0] == messages[1]


def test_check_finite_names_the_first_bad_step():
    engine._check_finite([torch.tensor(1.0), torch.tensor(2.0)], 26, 3)  # all finite: no error
    with pytest.raises(FloatingPointError, match=r"\(nan\) at epoch 3, step 28$"):
        engine._check_finite(
            [torch.tensor(1.0), torch.tensor(2.0), torch.tensor(float("nan")), torch.tensor(float("inf"))], 26, 3
        )


def test_precision_is_recorded_and_names_the_run(tmp_path):
    train, val = tiny_classification(), tiny_classification(seed=1, key="v")
    fp32 = fit(config(epochs=1), train, val, tmp_path, "p1_test", device="cpu", progress=False)
    bf16 = fit(config(epochs=1, cpu_bf16=True), train, val, tmp_path, "p1_test", device="cpu", progress=False)
    expected = "bf16" if precision.native_cpu_bf16() else "fp32"  # only a CPU with AMX trains in bf16
    assert json.loads((tmp_path / fp32["run_dir"].split("/")[-1] / "params.json").read_text())["precision"] == "fp32"
    assert json.loads((tmp_path / bf16["run_dir"].split("/")[-1] / "params.json").read_text())["precision"] == expected
    assert fp32["run_dir"] != bf16["run_dir"]


def test_early_stopping_with_patience(tmp_path):
    train, val = tiny_classification(), tiny_classification(seed=1, key="v")
    result = fit(
        config(epochs=30, lr=0.0, patience=2, augment={}), train, val, tmp_path, "p1_test", device="cpu", progress=False
    )
    assert result["final_epoch"] == 3 and result["stop_reason"].startswith("early stopping")


def test_checkpoint_reloads_and_refuses_the_wrong_task(tmp_path):
    train, val = tiny_classification(), tiny_classification(seed=1, key="v")
    result = fit(config(epochs=1), train, val, tmp_path, "p1_test", device="cpu", progress=False)
    model, meta = load_model(f"{result['run_dir']}/best.pt", task="classification")
    assert meta["model"] == "vgg_like" and model(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    with pytest.raises(ValueError, match="classification checkpoint"):
        load_model(f"{result['run_dir']}/best.pt", task="segmentation")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pt is not a readable checkpoint"):
        load_model(tmp_path / "junk.pt")


def test_segmentation_run_keeps_masks_of_chosen_ids_every_epoch(tmp_path):
    generator = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 7, (6, 32, 32), generator=generator).to(torch.uint8)
    images = (masks[:, None].repeat(1, 3, 1, 1) * 30).to(torch.uint8)
    data = SimpleNamespace(images=images, masks=masks, key="s", ids=[f"{i:04d}" for i in range(6)])
    cfg = TrainConfig(
        task="segmentation",
        model="deeplabv3_resnet50",
        num_classes=7,
        epochs=2,
        batch_size=3,
        eval_batch_size=3,
        lr=1e-4,
        augment={"scale": [0.75, 1.0], "dihedral": True},
        keep_mask_ids=["0001", "0004"],
    )
    result = fit(cfg, data, data, tmp_path, "p2_test", device="cpu", progress=False)
    assert 0.0 <= result["best_val_miou"] <= 1.0 and set(result["best"]["iou"]) == {"0", "1", "2", "3", "4", "5"}
    for epoch in (1, 2):
        kept = dict(__import__("numpy").load(f"{result['run_dir']}/masks/epoch_{epoch:03d}.npz"))
        assert set(kept) == {"0001", "0004"} and kept["0001"].shape == (32, 32) and kept["0001"].dtype.name == "uint8"
    history = pd.read_csv(f"{result['run_dir']}/history.csv")
    assert {"val_miou", "train_miou", "val_iou_0", "val_iou_5"} <= set(history.columns)


@pytest.mark.skipif(not precision.native_cpu_bf16(), reason="without AMX the CPU trains in fp32: nothing to refuse")
def test_cpu_bf16_refuses_a_model_known_to_crash_under_it(tmp_path):
    seg = SimpleNamespace(
        images=torch.zeros(4, 3, 32, 32, dtype=torch.uint8),
        masks=torch.zeros(4, 32, 32, dtype=torch.uint8),
        key="s",
        ids=["0", "1", "2", "3"],
    )
    bad = TrainConfig(task="segmentation", model="fcn32s", num_classes=7, cpu_bf16=True, epochs=1)
    with pytest.raises(ValueError, match="cpu_bf16=True cannot train fcn32s on the CPU"):
        fit(bad, seg, seg, tmp_path, "p2_test", device="cpu", progress=False)
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_capped_evaluation_adds_only_the_kept_samples_it_missed():
    assert engine._eval_batches(10, 4, set(), None) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert engine._eval_batches(10, 4, {1, 9, 6}, 1) == [slice(0, 4), [6, 9]]  # not the whole batches of 6 and 9
    assert engine._eval_batches(10, 4, {1}, 2) == [slice(0, 4), slice(4, 8)]


def test_capped_evaluation_keeps_every_mask_and_counts_what_it_evaluated():
    class Segmenter(torch.nn.Module):  # the smallest model with a segmenter's output
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 7, 1)

        def forward(self, x):
            grad_modes.add(torch.is_grad_enabled())
            return {"out": self.conv(x)}

    grad_modes = set()

    torch.manual_seed(0)
    model = Segmenter()
    masks = torch.randint(0, 7, (10, 8, 8), dtype=torch.uint8)
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    config = TrainConfig(task="segmentation", model="fcn32s", num_classes=7, eval_batch_size=4)
    task, data, cpu = build_task(config), engine.Data(images, masks), torch.device("cpu")
    full = engine.evaluate(model, task, data, config, cpu, keep=[1, 6, 9])
    capped = engine.evaluate(model, task, data, dataclasses.replace(config, max_eval_batches=1), cpu, keep=[1, 6, 9])
    assert sorted(capped["kept"]) == [1, 6, 9]
    assert all((capped["kept"][i] == full["kept"][i]).all() for i in (1, 6, 9))
    assert capped["confusion"].sum() == 6 * 8 * 8  # samples 0-3 and the kept 6 and 9
    assert grad_modes == {False}  # no autograd graph in evaluation (memory and time at 512 px)
