"""``hw1 runs`` and ``hw1 compare``: one row per run folder, whatever state it is in, and two runs side by side."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from hw1lib.cli import main
from hw1lib.files import save_torch
from hw1lib.runs import RunFolder
from hw1lib.runs_table import compare_runs, format_overrides, runs_table
from tests.test_grader_choice import fake_run, weights  # noqa: F401 (weights is a fixture)


def test_format_overrides_uses_dotted_keys():
    assert format_overrides({"lr": 0.001, "augment": {"flip": False}}) == "augment.flip=False lr=0.001"
    assert format_overrides({"augment.flip": False}) == "augment.flip=False"
    assert format_overrides({}) == "" and format_overrides(None) == "?"


@pytest.fixture
def root(tmp_path, weights):  # noqa: F811
    """A runs/ folder with a run in every state ``hw1 runs`` must show."""
    root = tmp_path / "runs"
    runs = {
        "recipe": fake_run(root, "p1_model_a", "full", 0.5, weights),
        "seed": fake_run(root, "p1_model_a", "full", 0.6, weights, seed=1),
        "override": fake_run(root, "p1_model_a", "full", 0.7, weights, overrides={"lr": 0.001}),
        "old_override": fake_run(root, "p1_model_a", "demo", 0.7, weights, overrides={"lr": 0.01}, recipe_key=False),
        "fastdev": fake_run(root, "p2_model_a", "demo", 0.1, weights, fast_dev_run=True),
        "interrupted": fake_run(root, "p1_model_b", "demo", 0.4, weights),
        "no_history": fake_run(root, "p1_model_b", "demo", 0.4, weights, seed=2),
        "unreadable": fake_run(root, "p2_model_b", "demo", 0.3, weights),
    }
    labelled = runs["seed"]
    params = json.loads(labelled.file("params").read_text())
    params["recipe"]["label"] = "second-seed"
    labelled.file("params").write_text(json.dumps(params))
    runs["interrupted"].file("metrics").unlink()
    runs["no_history"].file("metrics").unlink()
    runs["no_history"].file("history").unlink()
    save_torch({**weights, "epoch": 3}, runs["no_history"].file("last"))
    runs["unreadable"].file("params").write_text("{")
    half = RunFolder(root / "demo" / "p1_model_a-0000000000")  # killed before params.json was written
    half.path.mkdir(parents=True)
    half.file("last").write_bytes(b"")
    return root, {k: v.path.name for k, v in runs.items()} | {"half": half.path.name}


def test_one_row_per_run_folder_in_any_state(root):
    root, names = root
    table = runs_table(root).set_index("folder")
    assert len(table) == len(names)
    status = table["status"]
    assert status[names["recipe"]] == "finished" and status[names["fastdev"]] == "fast dev"
    assert status[names["interrupted"]] == "interrupted at epoch 2 of 3"  # history.csv's last epoch
    assert status[names["no_history"]] == "interrupted at epoch 3 of 3"  # last.pt's epoch
    assert status[names["unreadable"]].startswith("params.json is unreadable")
    assert status[names["half"]] == "params.json is missing"
    assert table.loc[names["override"], "overrides"] == "lr=0.001"
    assert table.loc[names["old_override"], "overrides"] == "lr=0.01"  # recovered from the stored config
    assert table.loc[names["recipe"], "overrides"] == ""
    assert table.loc[names["seed"], ["label", "seed"]].tolist() == ["second-seed", 1]
    assert table.loc[names["interrupted"], ["best", "best_epoch"]].tolist() == [0.4, 2]
    assert table["profile"].tolist()[:3] == ["full"] * 3  # the most complete profile first
    assert set(runs_table(root, profile="full").index) == {0, 1, 2}
    assert set(runs_table(root, experiment="p1_model_b")["folder"]) == {names["interrupted"], names["no_history"]}


def test_the_runs_command_prints_a_table_or_csv(root, capsys):
    root, names = root
    assert main(["runs", "--root", str(root), "--csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert set(table["folder"]) == set(names.values()) and "run_dir" in table
    assert main(["runs", "--root", str(root), "--experiment", "p1_model_a", "--profile", "full"]) == 0
    out = capsys.readouterr().out
    assert names["override"] in out and "lr=0.001" in out and names["old_override"] not in out


def test_compare_shows_what_differs_and_the_metrics_side_by_side(root, capsys):
    root, names = root
    tables = compare_runs(names["recipe"], root / "full" / names["override"], root)
    assert tables["parameters"].loc["config.lr"].tolist() == [5e-4, 1e-3]
    assert "config.seed" not in tables["parameters"].index  # the same in both: not shown
    assert tables["metrics"].loc["best val acc"].tolist() == [0.5, 0.7]
    assert main(["compare", names["recipe"], names["seed"], "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "config.seed" in out and "best val acc" in out
    assert main(["compare", names["recipe"], "p1_model_a-nothing", "--root", str(root)]) == 2
    assert "p1_model_a-nothing is neither a folder nor a run folder's name" in capsys.readouterr().err


def test_compare_shows_per_class_iou_of_segmentation_runs(tmp_path, weights):  # noqa: F811
    a = fake_run(tmp_path, "p2_model_a", "demo", 0.5, weights)
    b = fake_run(tmp_path, "p2_model_b", "demo", 0.6, weights)
    for folder, iou in [(a, 0.25), (b, 0.5)]:
        metrics = json.loads(folder.file("metrics").read_text())
        metrics["best"] = {"iou": {str(c): iou for c in range(6)}}
        folder.file("metrics").write_text(json.dumps(metrics))
    per_class = compare_runs(a.path, b.path)["per_class"]
    assert per_class.loc["IoU 0 urban", "B - A"] == pytest.approx(0.25) and len(per_class) == 6
