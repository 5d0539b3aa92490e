"""Recipes, the learning-rate schedule, the batch rule and the run folder's reader (no training here)."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import pytest
import torch

from hw1lib.config import ADDED_LATER, EXPERIMENTS, PROFILES, REMOVED_LATER, TrainConfig, get_config, recipe_diff
from hw1lib.engine import epoch_batches, lr_factor, steps_per_epoch
from hw1lib.runs import (
    RunFolder,
    early_middle_final,
    load_run,
    params_hash,
    stage_labels,
)

# ---- recipes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_every_experiment_has_a_recipe_of_its_problem(profile):
    for name in EXPERIMENTS:
        config = get_config(name, profile)
        assert config.task == ("classification" if name.startswith("p1") else "segmentation")
        assert config.num_classes == (50 if name.startswith("p1") else 7)


def test_get_config_applies_overrides_and_names_what_is_wrong():
    assert get_config("p1_model_a", "smoke", seed=7, epochs=1).seed == 7
    with pytest.raises(ValueError, match=r"unknown profile 'huge'.*smoke"):
        get_config("p1_model_a", "huge")
    with pytest.raises(ValueError, match=r"unknown experiment 'p3_model_a'.*p1_model_a"):
        get_config("p3_model_a", "demo")
    with pytest.raises(ValueError, match=r"unknown training parameters \['epoch'\].*epochs"):
        get_config("p1_model_a", "demo", epoch=3)


#: run-folder hashes of every recipe (fixed data keys): a finished run is reused only while its name is
#: recomputed identically, so a change here means every user's finished runs train again; change it knowingly
PINNED_HASHES = {
    "demo/p1_model_a": "5da2823969",
    "demo/p1_model_b": "a86349b5c7",
    "demo/p2_model_a": "afb8bc4494",
    "demo/p2_model_b": "33cd516fc0",  # 10 epochs on 96 px crops since 2026-12-05 (was 6b810d652f)
    "full/p1_model_a": "33f4d27e66",
    "full/p1_model_b": "abe8a4b337",
    "full/p2_model_a": "63139f4e1d",
    "full/p2_model_b": "00db5d1496",
    "smoke/p1_model_a": "83a8d67cfa",
    "smoke/p1_model_b": "08b40524f2",
    "smoke/p2_model_a": "d360d9c13d",
    "smoke/p2_model_b": "ea0950f5b2",
}


@pytest.mark.parametrize("key", sorted(PINNED_HASHES))
def test_recipe_run_hashes_are_pinned(key):
    profile, name = key.split("/")
    params = {
        "name": name,
        "config": get_config(name, profile).to_dict(),
        "data": {"train": "t", "val": "v"},
        "precision": "fp32",
    }
    assert params_hash(params) == PINNED_HASHES[key]


def test_a_field_added_later_leaves_the_name_unchanged_at_its_default(monkeypatch):
    config = get_config("p1_model_a", "demo")
    monkeypatch.setitem(ADDED_LATER, "seed", 0)  # pretend seed was added later with default 0
    assert "seed" not in config.to_dict() and "seed" in get_config("p1_model_a", "demo", seed=1).to_dict()


def test_a_field_removed_later_keeps_the_names_and_is_no_override():
    config = get_config("p1_model_a", "demo")
    stored = config.to_dict()
    assert {k: stored[k] for k in REMOVED_LATER} == REMOVED_LATER  # the value every earlier run hashed
    assert TrainConfig.from_dict(stored) == config and recipe_diff("p1_model_a", "demo", stored) == {}
    with pytest.raises(ValueError, match=r"unknown training parameters \['class_weights'\]"):
        get_config("p1_model_a", "demo", class_weights=[1.0] * 50)
    with pytest.raises(ValueError, match="no longer supported"):
        TrainConfig.from_dict({**stored, "class_weights": [1.0] * 50})


# ---- schedule and batches ------------------------------------------------------------------------


def test_warmup_then_cosine_reaches_the_floor_at_the_last_step():
    total, warmup, floor = 100, 10, 0.01
    factors = [lr_factor(s, total, warmup, floor) for s in range(total + 1)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)  # linear warm-up
    assert factors[10] == pytest.approx(1.0)  # cosine starts at the peak
    assert factors[55] == pytest.approx(floor + (1 - floor) * 0.5)  # half way down
    assert factors[100] == pytest.approx(floor) and lr_factor(500, total, warmup, floor) == pytest.approx(floor)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))  # never rises after the warm-up


def test_a_last_batch_of_one_is_dropped_and_the_cap_applies():
    assert [len(b) for b in epoch_batches(9, 4)] == [4, 4]  # 4 + 4 + 1: the single sample is dropped
    assert [len(b) for b in epoch_batches(10, 4)] == [4, 4, 2]
    assert [len(b) for b in epoch_batches(1, 4)] == [1]  # a data set of one still trains
    assert len(epoch_batches(100, 4, max_batches=3)) == 3
    shuffled = torch.cat(epoch_batches(10, 4, torch.Generator().manual_seed(0)))
    assert sorted(shuffled.tolist()) == list(range(10)) and shuffled.tolist() != list(range(10))
    config = TrainConfig(task="classification", model="vgg_like", num_classes=50, batch_size=4)
    assert steps_per_epoch(9, config) == 2 and steps_per_epoch(10, config) == 3


# ---- early / middle / final ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "epochs, chosen, labels",
    [
        ([1], [1], {1: "epoch 1 (final)"}),
        ([1, 2], [1, 2], {1: "epoch 1 (early)", 2: "epoch 2 (final)"}),
        ([1, 2, 3], [1, 2, 3], {1: "epoch 1 (early)", 2: "epoch 2 (middle)", 3: "epoch 3 (final)"}),
        ([1, 5, 10, 15, 20], [1, 10, 20], {1: "epoch 1 (early)", 10: "epoch 10 (middle)", 20: "epoch 20 (final)"}),
    ],
)
def test_early_middle_final_and_their_labels(epochs, chosen, labels):
    assert early_middle_final(epochs) == chosen
    assert stage_labels(chosen) == labels


def test_early_middle_final_needs_an_epoch():
    with pytest.raises(ValueError, match="no epochs"):
        early_middle_final([])


# ---- the run folder ------------------------------------------------------------------------------


def finished_run(root, name, task, age_s, params=None):
    """A minimal finished run folder written through RunFolder, its metrics file dated ``age_s`` ago."""
    folder = RunFolder.for_params(root, name, params or {"name": name, "age": age_s})
    folder.start({"config": {"model": "vgg_like", "num_classes": 50, "model_kwargs": {}}})
    folder.write_history([{"epoch": 1, "val_acc": 0.5}])
    folder.save_weights({"model": {}, "meta": {}, "epoch": 1}, "best")
    folder.write_metrics({"task": task, "metric": "acc", "best_val_acc": 0.5})
    stamp = time.time() - age_s
    os.utime(folder.file("metrics"), (stamp, stamp))
    return folder


def test_start_removes_temp_files_a_killed_writer_left(tmp_path):
    folder = RunFolder(tmp_path / "run")
    (folder.path / "masks").mkdir(parents=True)
    stale = [folder.path / ".last.pt.tmp4242", folder.path / "masks" / ".epoch_001.npz.tmp17"]
    for path in stale:
        path.write_bytes(b"partial")
    keep = folder.path / ".notes.tmpfile"  # not a name the writer makes
    keep.write_text("mine")
    assert sorted(folder.start({"x": 1})) == sorted(stale)
    assert not any(p.exists() for p in stale) and keep.exists()


def test_unreadable_last_checkpoint_is_moved_aside_with_a_note(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.start({})
    folder.file("last").write_bytes(b"PK\x03\x04 cut short")
    state, note = folder.read_last()
    assert state is None and "last.pt is not a readable checkpoint" in note and "epoch 1" in note
    assert not folder.file("last").exists() and (folder.path / "last.pt.unreadable").exists()


def test_run_reads_snapshots_masks_and_the_embeddings_cache(tmp_path):
    folder = finished_run(tmp_path, "p2_model_b", "segmentation", age_s=0)
    for epoch in (1, 3, 2):
        folder.save_weights({"model": {}, "meta": {}, "epoch": epoch}, epoch)
        folder.save_masks({"0013": np.full((4, 4), epoch, np.uint8)}, epoch)
    folder.save_masks({"image_0013": np.zeros((4, 4, 3), np.uint8), "truth_0013": np.ones((4, 4), np.uint8)})
    run = load_run(folder.path)
    assert run.snapshot_epochs() == [1, 2, 3] and run.mask_epochs() == [1, 2, 3] and run.mask_side() == 4
    images, truths, predictions = run.kept_masks([1, 3])
    assert list(images) == ["0013"] and truths["0013"].max() == 1 and predictions[3]["0013"].max() == 3
    assert run.cached_arrays("tag-a") is None
    run.cache_arrays("tag-a", {"pca": np.ones(3)})
    assert run.cached_arrays("tag-a")["pca"].tolist() == [1, 1, 1]
    assert run.cached_arrays("tag-b") is None  # another tag (epochs, seed or data changed): recompute
    assert isinstance(run.history, pd.DataFrame)
