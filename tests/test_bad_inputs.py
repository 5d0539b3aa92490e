"""A catalogue of bad inputs and faults, as a new user meets them: each ends in one clear line, exit status 2,
no traceback, and nothing half-written (an output that existed stays as it was, none appears otherwise).

The grader's commands run in-process through ``hw1lib.cli.main`` (an unexpected exception would fail the test
with its traceback); crash tests run a training in a child process and kill it with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hw1lib.checkpoints import model_meta
from hw1lib.cli import main
from hw1lib.config import TrainConfig
from hw1lib.data import find_data_root, load_classification_folder, load_segmentation_folder
from hw1lib.data.palette import encode_mask
from hw1lib.files import save_torch
from hw1lib.models import build_model
from hw1lib.paths import REPO_ROOT
from tests._helpers import save_image


def checkpoint(path: Path, task: str) -> Path:
    if task == "classification":
        config = TrainConfig(
            task=task, model="vgg_like", num_classes=50, model_kwargs={"widths": [4, 4, 8], "hidden": 8}
        )
    else:
        config = TrainConfig(task=task, model="fcn32s", num_classes=7, model_kwargs={"batch_norm": True})
    torch.manual_seed(0)
    model = build_model(config.model, num_classes=config.num_classes, **config.model_kwargs)
    save_torch({"model": model.state_dict(), "meta": model_meta(config, model), "epoch": 1}, path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return {
        "cls": str(checkpoint(root / "cls.pt", "classification")),
        "seg": str(checkpoint(root / "seg.pt", "segmentation")),
    }


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    status = main(args)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return status, captured.err


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (names and bytes), hidden ones included."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ---- classify ------------------------------------------------------------------------------------


def classify(p1, out, ckpt_path, *extra):
    return ["classify", str(p1), str(out), "--checkpoint", ckpt_path, "--device", "cpu", *extra]


@pytest.mark.parametrize(
    "case, words",
    [
        ("out_is_folder", "is a folder"),
        ("out_under_file", "is a file, not a folder"),
        ("missing_input", "does not exist"),
        ("input_is_file", "is not a folder"),
        ("empty_input", "no *.png images"),
        ("zero_byte_image", "1.png: cannot be read as an image"),
        ("truncated_image", "2.png: cannot be read as an image"),
        ("wrong_size", "10.png: image is 40x40, expected 32x32"),
        ("seg_checkpoint", "is a segmentation checkpoint"),
        ("missing_checkpoint", "none.pt does not exist"),
        ("junk_checkpoint", "junk.pt is not a readable checkpoint"),
        ("cuda_without_gpu", "'cuda' requested, but"),
        ("unknown_device", "unknown device 'gpu0'"),
    ],
)
def test_classify_refuses(case, words, tmp_path, p1_dir, ckpt, capsys):
    out = tmp_path / "out" / "pred.csv"
    out.parent.mkdir()
    out.write_text("filename,label\nold,1\n")  # an earlier result that must survive any failure
    before = snapshot(out.parent)
    args, ckpt_path, target = None, ckpt["cls"], out
    if case == "out_is_folder":
        target = out.parent
    elif case == "out_under_file":
        target = out / "pred.csv"
    elif case == "missing_input":
        p1_dir = tmp_path / "nowhere"
    elif case == "input_is_file":
        p1_dir = p1_dir / "1.png"
    elif case == "empty_input":
        p1_dir = tmp_path / "empty"
        p1_dir.mkdir()
    elif case == "zero_byte_image":
        (p1_dir / "1.png").write_bytes(b"")
    elif case == "truncated_image":
        truncate(p1_dir / "2.png")
    elif case == "wrong_size":
        save_image(p1_dir / "10.png", size=(40, 40))
    elif case == "seg_checkpoint":
        ckpt_path = ckpt["seg"]
    elif case == "missing_checkpoint":
        ckpt_path = str(tmp_path / "none.pt")
    elif case == "junk_checkpoint":
        ckpt_path = str(tmp_path / "junk.pt")
        Path(ckpt_path).write_bytes(b"PK\x03\x04" + bytes(100))
    args = classify(p1_dir, target, ckpt_path)
    if case == "cuda_without_gpu":
        if torch.cuda.is_available():
            pytest.skip("a GPU is visible here")
        args[-1] = "cuda"
    elif case == "unknown_device":
        args[-1] = "gpu0"
    status, err = run_cli(args, capsys)
    assert status == 2 and words in err and err.count("\n") == 1, err
    assert snapshot(out.parent) == before


def test_classify_accepts_any_pillow_mode_and_case_and_writes_natural_order(tmp_path, p1_dir, ckpt, capsys):
    save_image(p1_dir / "3.PNG")
    save_image(p1_dir / "4.png", mode="CMYK", fmt="JPEG")  # a JPEG named .png: Pillow reads by content
    save_image(p1_dir / "5.png", mode="LA")
    save_image(p1_dir / "6.png", mode="P")
    save_image(p1_dir / "7.png", mode="I;16")
    out = tmp_path / "pred.csv"
    status, err = run_cli(classify(p1_dir, out, ckpt["cls"]), capsys)
    assert status == 0, err
    names = [line.split(",")[0] for line in out.read_text().splitlines()[1:]]
    assert names == ["1.png", "2.png", "3.PNG", "4.png", "5.png", "6.png", "7.png", "10.png"]


def test_a_malicious_checkpoint_is_refused_without_running_its_code(tmp_path, p1_dir, capsys):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "meta": {"task": "classification"}, "payload": Exploit()}, evil, pickle_protocol=2)
    status, err = run_cli(classify(p1_dir, tmp_path / "a.csv", str(evil)), capsys)
    assert status == 2 and "evil.pt was refused" in err and "arbitrary code" in err
    assert not marker.exists() and not (tmp_path / "a.csv").exists()


def test_a_checkpoint_that_does_not_fit_names_the_keys(tmp_path, p1_dir, ckpt, capsys):
    state = torch.load(ckpt["cls"], weights_only=True)
    state["model"]["extra.weight"] = torch.zeros(1)
    del state["model"][next(iter(state["model"]))]
    save_torch(state, tmp_path / "mismatch.pt")
    status, err = run_cli(classify(p1_dir, tmp_path / "a.csv", str(tmp_path / "mismatch.pt")), capsys)
    assert status == 2 and "does not fit the model" in err and "missing keys" in err and "extra.weight" in err


# ---- segment -------------------------------------------------------------------------------------


def segment(p2, out, ckpt_path):
    return ["segment", str(p2), str(out), "--checkpoint", ckpt_path, "--device", "cpu"]


@pytest.mark.parametrize(
    "case, words",
    [
        ("out_is_file", "is a file; expected a folder"),
        ("missing_input", "does not exist"),
        ("empty_input", "no *.jpg or *.jpeg images"),
        ("truncated_middle", "0001.jpg: cannot be read as an image"),
        ("zero_byte", "0002.jpg: cannot be read as an image"),
        ("cls_checkpoint", "is a classification checkpoint"),
        ("missing_checkpoint", "none.pt does not exist"),
    ],
)
def test_segment_refuses_and_leaves_the_output_as_it_was(case, words, tmp_path, p2_dir, ckpt, capsys):
    out = tmp_path / "masks"
    out.mkdir()
    (out / "0000.png").write_bytes(b"an earlier mask")
    before = snapshot(tmp_path / "masks")
    ckpt_path, target = ckpt["seg"], out
    if case == "out_is_file":
        target = out / "0000.png"
    elif case == "missing_input":
        p2_dir = tmp_path / "nowhere"
    elif case == "empty_input":
        p2_dir = tmp_path / "empty"
        p2_dir.mkdir()
    elif case == "truncated_middle":
        truncate(p2_dir / "0001.jpg", 0.3)
    elif case == "zero_byte":
        (p2_dir / "0002.jpg").write_bytes(b"")
    elif case == "cls_checkpoint":
        ckpt_path = ckpt["cls"]
    elif case == "missing_checkpoint":
        ckpt_path = str(tmp_path / "none.pt")
    status, err = run_cli(segment(p2_dir, target, ckpt_path), capsys)
    assert status == 2 and words in err and err.count("\n") == 1, err
    assert snapshot(tmp_path / "masks") == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging folder left


def test_segment_accepts_cmyk_and_upper_case_and_creates_the_folder(tmp_path, p2_dir, ckpt, capsys):
    save_image(p2_dir / "0003.JPG", size=(64, 64))
    save_image(p2_dir / "0004.jpg", size=(64, 64), mode="CMYK", fmt="JPEG")
    out = tmp_path / "new" / "masks"
    status, err = run_cli(segment(p2_dir, out, ckpt["seg"]), capsys)
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["0000.png", "0001.png", "0002.png", "0003.png", "0004.png"]


# ---- miou ----------------------------------------------------------------------------------------


def masks(folder: Path, names: list[str], size=(3, 2)) -> Path:
    folder.mkdir(exist_ok=True)
    for name in names:
        Image.fromarray(encode_mask(np.zeros(size[::-1], dtype=np.uint8))).save(folder / name)
    return folder


@pytest.mark.parametrize(
    "case, words",
    [
        ("missing_prediction", "missing 1 ['0001']"),
        ("extra_prediction", "extra 1 ['0009.png']"),
        ("mis_sized", "0001.png is 4x2, but its ground truth 0001_mask.png is 3x2"),
        ("gt_missing", "does not exist"),
        ("pred_empty", "no *.png images"),
        ("two_for_one_id", "two predicted masks for id 0001"),
    ],
)
def test_miou_refuses(case, words, tmp_path, capsys):
    gt = masks(tmp_path / "gt", ["0000_mask.png", "0001_mask.png"])
    pred = masks(tmp_path / "pred", ["0000.png", "0001.png"])
    if case == "missing_prediction":
        (pred / "0001.png").unlink()
    elif case == "extra_prediction":
        masks(pred, ["0009.png"])
    elif case == "mis_sized":
        masks(pred, ["0001.png"], size=(4, 2))
    elif case == "gt_missing":
        gt = tmp_path / "nowhere"
    elif case == "pred_empty":
        pred = tmp_path / "empty"
        pred.mkdir()
    elif case == "two_for_one_id":
        masks(pred, ["0001_sat.png"])
    status, err = run_cli(["miou", str(gt), str(pred)], capsys)
    assert status == 2 and words in err, err


def test_miou_accepts_ground_truth_named_like_a_test_set(tmp_path, capsys):
    gt = masks(tmp_path / "gt", ["0000.png", "0001.PNG"])
    pred = masks(tmp_path / "pred", ["0000.png", "0001.png"])
    assert run_cli(["miou", str(gt), str(pred)], capsys)[0] == 0


# ---- data the notebooks load ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "case, words",
    [
        ("label_out_of_range", "label 50 is out of range"),
        ("bad_name", "expected a file name of the form {label}_{id}.png"),
        ("unpaired", "0001_sat.jpg has no 0001_mask.png"),
        ("mis_sized_mask", "0000_mask.png: image is 32x32, expected 64x64"),
        ("wrong_layout", "p1_data"),
    ],
)
def test_data_errors_name_the_file(case, words, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        if case in ("label_out_of_range", "bad_name"):
            save_image(folder / "1_0.png")
            save_image(folder / ("50_1.png" if case == "label_out_of_range" else "cat_1.png"))
            load_classification_folder(folder, labelled=True, cache=False)
        elif case in ("unpaired", "mis_sized_mask"):
            save_image(folder / "0000_sat.jpg", size=(64, 64))
            mask = (32, 32) if case == "mis_sized_mask" else (64, 64)
            Image.fromarray(encode_mask(np.zeros(mask, np.uint8))).save(folder / "0000_mask.png")
            if case == "unpaired":
                save_image(folder / "0001_sat.jpg", size=(64, 64))
            load_segmentation_folder(folder, cache=False)
        else:
            find_data_root(folder)
    assert words in str(info.value)


def test_upper_case_extensions_load_like_lower_case(tmp_path):
    folder = tmp_path / "train_50"
    folder.mkdir()
    save_image(folder / "3_1.PNG")
    data = load_classification_folder(folder, labelled=True, cache=False)
    assert data.labels.tolist() == [3] and data.names == ["3_1.PNG"]


# ---- crashes during a run ------------------------------------------------------------------------

_TRAIN = textwrap.dedent("""
    import sys, time, torch
    from types import SimpleNamespace
    import hw1lib.runs as runs
    from hw1lib.config import TrainConfig
    from hw1lib.fit import fit
    from hw1lib.files import atomic_write

    out, mode = sys.argv[1], sys.argv[2]
    if mode == "hang":  # epoch 2's last.pt write stops half-way: the parent kills the process right there
        real = runs.save_torch
        def save_torch(obj, path):
            if path.name == "last.pt" and obj["epoch"] == 2:
                def half(handle):
                    handle.write(b"PK" + bytes(1000))
                    handle.flush()
                    open(out + "/writing", "w").close()
                    time.sleep(120)
                return atomic_write(path, half)
            return real(obj, path)
        runs.save_torch = save_torch
    torch.manual_seed(0)
    data = SimpleNamespace(images=torch.randint(0, 255, (24, 3, 32, 32), dtype=torch.uint8),
                           labels=torch.arange(24) % 3, key="k")
    config = TrainConfig(task="classification", model="vgg_like", num_classes=3, epochs=3, batch_size=8,
                         model_kwargs={"widths": [4, 4, 8], "hidden": 8})
    trained = []
    result = fit(config, data, data, out, "p1_kill", device="cpu", progress=False,
                 on_epoch_end=lambda epoch, row: trained.append(epoch))
    print("DONE", result["final_epoch"], "trained", trained, "notes", result["notes"])
""")


def _child(out: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", _TRAIN, str(out), mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_kill_during_a_checkpoint_write_then_rerun_resumes_and_clears_temp_files(tmp_path):
    child = _child(tmp_path, "hang")
    deadline = time.time() + 120
    while not (tmp_path / "writing").exists():
        assert child.poll() is None and time.time() < deadline, child.stderr.read() if child.poll() is not None else ""
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    run_dir = next(p for p in tmp_path.iterdir() if p.name.startswith("p1_kill-"))
    assert list(run_dir.glob(".last.pt.tmp*")), "the killed write left its temp file (what the rerun must clear)"
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == 1  # epoch 1's state was not touched
    rerun = _child(tmp_path, "normal")
    stdout, stderr = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, stderr
    assert "DONE 3 trained [2, 3]" in stdout  # resumed after the last complete epoch
    assert not list(run_dir.rglob("*.tmp[0-9]*"))


@pytest.mark.slow
def test_a_truncated_last_checkpoint_is_reported_and_training_starts_over(tmp_path):
    first = _child(tmp_path, "normal")
    assert first.wait(180) == 0
    run_dir = next(p for p in tmp_path.iterdir() if p.name.startswith("p1_kill-"))
    (run_dir / "metrics.json").unlink()  # as if the run had been interrupted after its last epoch
    truncate(run_dir / "last.pt", 0.4)
    rerun = _child(tmp_path, "normal")
    stdout, stderr = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, stderr
    assert "trained [1, 2, 3]" in stdout and "last.pt is not a readable checkpoint" in stdout
    assert "started this run over from epoch 1" in stdout
    assert (run_dir / "last.pt.unreadable").exists() and (run_dir / "metrics.json").exists()


# ---- the course's scripts ------------------------------------------------------------------------


def test_course_scripts_follow_the_calling_convention(tmp_path, p1_dir, p2_dir, ckpt):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    csv_out, mask_out = tmp_path / "new" / "pred.csv", tmp_path / "masks"
    for script, ckpt_path, args in [
        ("hw1_1.sh", ckpt["cls"], [p1_dir, csv_out]),
        ("hw1_2.sh", ckpt["seg"], [p2_dir, mask_out]),
    ]:
        done = subprocess.run(
            ["bash", str(REPO_ROOT / script), *map(str, args)],
            env={**env, "HW1_CHECKPOINT": ckpt_path},
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
    assert csv_out.read_text().splitlines()[0] == "filename,label"
    assert [line.split(",")[0] for line in csv_out.read_text().splitlines()[1:]] == ["1.png", "2.png", "10.png"]
    assert sorted(p.name for p in mask_out.iterdir()) == ["0000.png", "0001.png", "0002.png"]
    usage = subprocess.run(["bash", str(REPO_ROOT / "hw1_1.sh")], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "usage: bash hw1_1.sh <test_image_dir> <output_csv>" in usage.stderr
