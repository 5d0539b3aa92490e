"""The grader's commands through the CLI: classify, segment, miou, viz-mask, standin; formats and refusals."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from hw1lib.checkpoints import model_meta
from hw1lib.cli import main
from hw1lib.config import TrainConfig
from hw1lib.data.palette import PALETTE, decode_mask, encode_mask
from hw1lib.files import save_torch
from hw1lib.fit import fit
from hw1lib.models import build_model


@pytest.fixture(scope="module")
def classification_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls")
    labels = torch.arange(40) % 50
    data = SimpleNamespace(images=torch.randint(0, 255, (40, 3, 32, 32), dtype=torch.uint8), labels=labels, key="c")
    config = TrainConfig(
        task="classification",
        model="vgg_like",
        num_classes=50,
        epochs=1,
        batch_size=20,
        model_kwargs={"widths": [4, 4, 8], "hidden": 8},
    )
    return fit(config, data, data, root, "p1_cli", device="cpu", progress=False)["run_dir"] + "/best.pt"


@pytest.fixture(scope="module")
def segmentation_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = TrainConfig(task="segmentation", model="deeplabv3_resnet50", num_classes=7)
    model = build_model(config.model, num_classes=7)
    path = tmp_path_factory.mktemp("seg") / "best.pt"
    save_torch({"model": model.state_dict(), "meta": model_meta(config, model), "epoch": 0}, path)
    return path


def test_classify_writes_filename_label_rows_for_every_png(tmp_path, classification_checkpoint, capsys):
    images = tmp_path / "test"
    images.mkdir()
    for name in ["0002.png", "0000.png", "0001.png"]:
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(images / name)
    (images / "notes.txt").write_text("ignored")
    out = tmp_path / "new" / "folder" / "pred.csv"
    assert main(["classify", str(images), str(out), "--checkpoint", classification_checkpoint, "--device", "cpu"]) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["filename", "label"]
    assert [r[0] for r in rows[1:]] == ["0000.png", "0001.png", "0002.png"]
    assert all(0 <= int(r[1]) < 50 for r in rows[1:])
    assert "\r\n" not in out.read_text()


def test_classify_errors_are_clear(tmp_path, classification_checkpoint, segmentation_checkpoint, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["classify", str(empty), str(tmp_path / "a.csv"), "--checkpoint", classification_checkpoint]) == 2
    assert "no *.png images" in capsys.readouterr().err
    images = tmp_path / "imgs"
    images.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(images / "0000.png")
    assert main(["classify", str(images), str(tmp_path / "a.csv"), "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "none.pt does not exist" in capsys.readouterr().err
    assert main(["classify", str(images), str(tmp_path / "a.csv"), "--checkpoint", str(segmentation_checkpoint)]) == 2
    assert "segmentation checkpoint" in capsys.readouterr().err
    (images / "0001.png").write_bytes(b"broken")
    assert main(["classify", str(images), str(tmp_path / "a.csv"), "--checkpoint", classification_checkpoint]) == 2
    assert "0001.png: cannot be read" in capsys.readouterr().err
    assert not (tmp_path / "a.csv").exists()  # nothing half written


def test_classify_without_a_finished_run_says_what_to_do(tmp_path, capsys):
    images = tmp_path / "imgs"
    images.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(images / "0000.png")
    assert main(["classify", str(images), str(tmp_path / "a.csv")]) == 2
    assert "no finished classification run" in capsys.readouterr().err


def test_segment_writes_exact_palette_masks_at_input_size(tmp_path, segmentation_checkpoint):
    images = tmp_path / "test"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(images / "0000_sat.jpg")
    Image.fromarray(encode_mask(np.zeros((64, 64), dtype=np.uint8))).save(images / "0000_mask.png")
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(images / "0007.jpg")  # not divisible by 32
    out = tmp_path / "pred" / "masks"
    assert (
        main(["segment", str(images), str(out), "--checkpoint", str(segmentation_checkpoint), "--device", "cpu"]) == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["0000_sat.png", "0007.png"]
    for name, size in [("0000_sat.png", (64, 64)), ("0007.png", (70, 50))]:
        with Image.open(out / name) as mask:
            assert mask.mode == "RGB" and mask.size == size and mask.format == "PNG"
            colours = set(map(tuple, np.asarray(mask).reshape(-1, 3)))
        assert colours <= set(map(tuple, PALETTE))


def write_mask(path, class_map):
    Image.fromarray(encode_mask(np.asarray(class_map, dtype=np.uint8))).save(path)


def test_miou_pairs_by_id_and_prints_the_official_values(tmp_path, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir(), pred.mkdir()
    truth = np.array([[0, 1, 2], [3, 4, 6]])
    write_mask(gt / "0013_mask.png", truth)
    write_mask(gt / "0002_mask.png", truth)
    write_mask(pred / "0013.png", truth)
    write_mask(pred / "0002_sat.png", np.array([[0, 1, 2], [3, 3, 6]]))
    assert main(["miou", str(gt), str(pred)]) == 0
    out = capsys.readouterr().out
    # pooled over both images: forest tp 2, predicted 3, true 2 -> 2/3; water tp 1, predicted 1, true 2 -> 1/2
    assert "class #0 : 1.00000" in out and "class #3 : 0.66667" in out and "class #4 : 0.50000" in out
    assert "absent from prediction and ground truth" in out  # barren (5) appears nowhere
    assert "mean_iou: 0.833333" in out  # (1 + 1 + 1 + 2/3 + 1/2) / 5 classes present


@pytest.mark.parametrize(
    "case, message",
    [("missing", "missing 1 ['0002']"), ("extra", "extra 1 ['0099.png']"), ("size", "is 4x2, but its ground truth")],
)
def test_miou_refuses_unpaired_or_mismatched_predictions(tmp_path, capsys, case, message):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir(), pred.mkdir()
    for i in ("0001", "0002"):
        write_mask(gt / f"{i}_mask.png", np.zeros((2, 3)))
        write_mask(pred / f"{i}.png", np.zeros((2, 3)))
    if case == "missing":
        (pred / "0002.png").unlink()
    elif case == "extra":
        write_mask(pred / "0099.png", np.zeros((2, 3)))
    else:
        write_mask(pred / "0002.png", np.zeros((2, 4)))
    assert main(["miou", str(gt), str(pred)]) == 2
    assert message in capsys.readouterr().err


def test_viz_mask_writes_an_overlay_png(tmp_path):
    image = tmp_path / "0013_sat.jpg"
    Image.fromarray(np.full((64, 64, 3), 128, dtype=np.uint8)).save(image)
    write_mask(tmp_path / "0013_mask.png", np.tril(np.ones((64, 64), dtype=np.uint8)) * 4)
    out = tmp_path / "figs" / "overlay.png"
    assert main(["viz-mask", str(image), str(tmp_path / "0013_mask.png"), str(out)]) == 0
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.size[0] > 100


def test_standin_command_writes_the_real_layout(tmp_path, capsys):
    assert main(["standin", str(tmp_path / "s"), "--size", "smoke"]) == 0
    assert (tmp_path / "s" / "p1_data" / "val_gt.csv").exists()
    assert (tmp_path / "s" / "p2_data" / "validation" / "0013_sat.jpg").exists()
    assert (
        decode_mask(
            np.asarray(Image.open(tmp_path / "s" / "p2_data" / "validation" / "0013_mask.png").convert("RGB"))
        ).max()
        <= 6
    )
