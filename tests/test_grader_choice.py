"""Which checkpoint the course scripts grade with: the rule README states, said on stderr, overridable.

Run folders are fabricated (params.json as fit writes it, metrics.json, history.csv, a small real best.pt), so
the rule is tested on the situations that matter without training: a toy run finishing after the real one,
a side experiment with a higher score, a fast dev run, an unreadable run.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hw1lib.checkpoints import model_meta
from hw1lib.cli import main
from hw1lib.config import TrainConfig, get_config
from hw1lib.files import save_torch
from hw1lib.grader_checkpoint import checkpoint_choice, choose_checkpoint
from hw1lib.models import build_model
from hw1lib.paths import REPO_ROOT
from hw1lib.runs import RunFolder, profile_folder


@pytest.fixture(scope="module")
def weights() -> dict:
    """A small real P1 checkpoint's content (a narrow VGG-like), reused as every fabricated run's best.pt."""
    config = TrainConfig(task="classification", model="vgg_like", num_classes=50, model_kwargs={"widths": [4, 4, 8]})
    torch.manual_seed(0)
    model = build_model(config.model, num_classes=50, **config.model_kwargs)
    return {"model": model.state_dict(), "meta": model_meta(config, model), "epoch": 2}


def fake_run(
    root: Path,
    experiment: str,
    profile: str,
    score: float,
    weights: dict,
    *,
    age_s: float = 0,
    seed: int = 0,
    overrides: dict | None = None,
    recipe_key: bool = True,
    fast_dev_run: bool = False,
) -> RunFolder:
    """A finished run folder as fit leaves it; ``recipe_key=False`` writes one from before params["recipe"]
    (its overrides are then applied to the stored config, where the rule must find them itself)."""
    overrides = overrides or {}
    config = get_config(experiment, profile, fast_dev_run=fast_dev_run, seed=seed, **overrides).to_dict()
    params = {"name": experiment, "config": config, "data": {"train": "t", "val": "v"}, "precision": "fp32"}
    if recipe_key:
        params["recipe"] = {
            "experiment": experiment,
            "profile": profile,
            "overrides": overrides,
            "fast_dev_run": fast_dev_run,
            "label": None,
        }
    folder = RunFolder.for_params(root / profile_folder(profile, fast_dev_run), experiment, params)
    folder.start(params)
    metric = "acc" if experiment.startswith("p1") else "miou"
    folder.write_history([{"epoch": e, f"val_{metric}": score * e / 2, "seconds": 1.5} for e in (1, 2)])
    save_torch(weights, folder.file("best"))
    folder.write_metrics(
        {
            "task": config["task"],
            "metric": metric,
            f"best_val_{metric}": score,
            "best_epoch": 2,
            "final_epoch": 2,
            "train_seconds": 3.0,
            "finished": "2026-12-05T09:00:00+0000",
        }
    )
    stamp = time.time() - age_s
    os.utime(folder.file("metrics"), (stamp, stamp))
    return folder


def test_a_smoke_run_finished_after_full_does_not_replace_it(tmp_path, weights):
    full = fake_run(tmp_path, "p1_model_a", "full", 0.5, weights, age_s=1000)
    fake_run(tmp_path, "p1_model_a", "demo", 0.9, weights, age_s=500)
    fake_run(tmp_path, "p1_model_b", "smoke", 0.99, weights, age_s=1)  # the newest, the best score: a toy model
    fake_run(tmp_path, "p1_model_a", "full", 0.999, weights, fast_dev_run=True)  # runs/full-fastdev: never
    fake_run(tmp_path, "p2_model_a", "full", 0.7, weights)  # the other task
    choice = choose_checkpoint("classification", tmp_path)
    assert choice.path == full.file("best") and (choice.profile, choice.experiment, choice.score) == (
        "full",
        "p1_model_a",
        0.5,
    )
    assert choose_checkpoint("segmentation", tmp_path).experiment == "p2_model_a"


def test_the_best_recipe_run_of_any_seed_and_experiment_wins_and_an_override_run_never(tmp_path, weights):
    fake_run(tmp_path, "p1_model_a", "full", 0.50, weights)
    seed_1 = fake_run(tmp_path, "p1_model_a", "full", 0.60, weights, seed=1)  # another seed of the recipe
    fake_run(tmp_path, "p1_model_b", "full", 0.58, weights)
    fake_run(tmp_path, "p1_model_a", "full", 0.90, weights, overrides={"lr": 0.01})
    fake_run(tmp_path, "p1_model_a", "full", 0.95, weights, overrides={"augment": {"flip": False}}, recipe_key=False)
    fake_run(tmp_path, "p1_model_b", "full", 0.97, weights, overrides={"epochs": 3}, recipe_key=False)
    assert choose_checkpoint("classification", tmp_path).path == seed_1.file("best")


def test_without_a_recipe_run_the_error_names_the_override_runs_and_the_way_out(tmp_path, weights):
    fake_run(tmp_path, "p1_model_a", "demo", 0.9, weights, overrides={"lr": 0.01})
    with pytest.raises(FileNotFoundError, match="no finished classification run") as error:
        choose_checkpoint("classification", tmp_path)
    assert "left out 1 run(s) trained with overrides" in str(error.value) and "HW1_RUN" in str(error.value)


@pytest.mark.parametrize("broken", ["metrics", "params"])
def test_an_unreadable_run_is_named_in_a_warning(tmp_path, weights, broken):
    good = fake_run(tmp_path, "p1_model_a", "demo", 0.5, weights)
    bad = fake_run(tmp_path, "p1_model_a", "full", 0.9, weights, seed=1)
    bad.file(broken).write_text('{"task": "classif')  # cut short
    warnings = []
    assert choose_checkpoint("classification", tmp_path, warn=warnings.append).path == good.file("best")
    assert len(warnings) == 1 and str(bad.path) in warnings[0] and f"{broken}.json is unreadable" in warnings[0]


def test_a_given_checkpoint_or_run_folder_is_checked_and_named(tmp_path, weights):
    run = fake_run(tmp_path, "p1_model_a", "demo", 0.5, weights)
    with pytest.raises(ValueError, match=r"is a folder, not a checkpoint file; for a run folder use --run .*HW1_RUN"):
        checkpoint_choice("classification", checkpoint=run.path)
    with pytest.raises(ValueError, match="not both"):
        checkpoint_choice("classification", checkpoint=run.file("best"), run=run.path)
    with pytest.raises(FileNotFoundError, match="run folder .*nowhere does not exist"):
        checkpoint_choice("classification", run=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="is a file, not a run folder.*HW1_CHECKPOINT"):
        checkpoint_choice("classification", run=run.file("best"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="best.pt is missing"):
        checkpoint_choice("classification", run=tmp_path / "empty")
    given = checkpoint_choice("classification", checkpoint=run.file("best"))
    assert given.describe() == f"{run.file('best')} (given by --checkpoint / HW1_CHECKPOINT)"
    chosen = checkpoint_choice("classification", run=run.path).describe()
    assert f"run {run.path}, experiment p1_model_a, profile demo, best val acc 0.5000 at epoch 2" in chosen
    assert "HW1_RUN" in chosen


def test_a_folder_given_as_checkpoint_is_one_clear_line(tmp_path, weights, capsys):
    run = fake_run(tmp_path, "p1_model_a", "demo", 0.5, weights)
    images = tmp_path / "test"
    images.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(images / "0.png")
    assert main(["classify", str(images), str(tmp_path / "out.csv"), "--checkpoint", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a folder" in err and f"--run {run.path}" in err


def test_hw1_1_sh_grades_with_full_after_a_later_smoke_run_and_says_so(tmp_path, weights):
    """End to end through bash hw1_1.sh: the rule's choice, named in one stderr line; then HW1_RUN."""
    root = tmp_path / "runs"
    full = fake_run(root, "p1_model_a", "full", 0.5, weights, age_s=1000)
    smoke = fake_run(root, "p1_model_a", "smoke", 0.99, weights, age_s=1)
    fake_run(root, "p1_model_a", "full", 0.9, weights, overrides={"lr": 0.01})
    images = tmp_path / "test"
    images.mkdir()
    for name in ("2.png", "10.png"):
        Image.fromarray(np.full((32, 32, 3), 90, dtype=np.uint8)).save(images / name)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HW1_RUNS": str(root)}
    env.pop("HW1_CHECKPOINT", None)
    env.pop("HW1_RUN", None)
    for extra, expected in [({}, full), ({"HW1_RUN": str(smoke.path)}, smoke)]:
        out = tmp_path / f"pred{len(extra)}.csv"
        done = subprocess.run(
            ["bash", str(REPO_ROOT / "hw1_1.sh"), str(images), str(out)],
            env={**env, **extra},
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        lines = [line for line in done.stderr.splitlines() if "checkpoint" in line]
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith(f"hw1: classification checkpoint {expected.file('best')}: run {expected.path}")
        profile = expected.path.parent.name
        assert f"experiment p1_model_a, profile {profile}, best val acc" in lines[0]
        assert out.read_text().splitlines()[0] == "filename,label" and len(out.read_text().splitlines()) == 3


def test_a_run_from_before_the_recipe_key_in_a_folder_of_its_own_is_told_by_its_config(tmp_path, weights):
    """``hw1 train --out-dir DIR`` before params["recipe"]: the profile is the one whose recipe the config is."""
    run = fake_run(tmp_path, "p1_model_a", "smoke", 0.5, weights, recipe_key=False)
    moved = tmp_path / "my-runs" / run.path.name
    moved.parent.mkdir()
    run.path.rename(moved)
    choice = choose_checkpoint("classification", tmp_path / "my-runs")
    assert (choice.run_dir, choice.profile, choice.experiment) == (moved, "smoke", "p1_model_a")
