"""The generated stand-in: the real archive's layout, formats, palette, determinism and safe reuse."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hw1lib.data.palette import PALETTE, decode_mask
from hw1lib.data.standin import MANIFEST_NAME, STANDIN_SIZES, describe_p1_class, generate_standin

SMOKE = STANDIN_SIZES["smoke"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("standin") / "smoke"
    return out, generate_standin(out, "smoke", seed=0)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def test_writes_exactly_the_archive_file_names(smoke):
    root, summary = smoke
    train_ids, val_ids = range(SMOKE.p1_train_per_class), range(450, 450 + SMOKE.p1_val_per_class)
    expected = {
        "p1_data/train_50": {f"{c}_{i}.png" for c in range(50) for i in train_ids},
        "p1_data/val_50": {f"{c}_{i}.png" for c in range(50) for i in val_ids},
        "p2_data/train": {f"{i:04d}_{k}" for i in range(SMOKE.p2_train_count) for k in ("sat.jpg", "mask.png")},
        "p2_data/validation": {f"{i:04d}_{k}" for i in SMOKE.p2_val_ids for k in ("sat.jpg", "mask.png")},
    }
    for sub, names in expected.items():
        assert {p.name for p in (root / sub).iterdir()} == names, sub
    assert {p.name for p in root.iterdir()} == {"p1_data", "p2_data", MANIFEST_NAME}
    assert {p.name for p in root.parent.iterdir()} == {"smoke"}, "a temporary folder was left behind"
    assert summary["reused"] is False
    assert summary["p1"] == {"classes": 50, "train": 400, "val": 100, "image_size": 32}
    assert summary["p2"] == {"train": 8, "validation": len(SMOKE.p2_val_ids), "image_size": 64}


def test_val_gt_csv_has_crlf_header_and_one_row_per_val_image(smoke):
    root, _ = smoke
    data = (root / "p1_data" / "val_gt.csv").read_bytes()
    assert data.startswith(b"filename,label\r\n") and data.endswith(b"\r\n")
    lines = data.decode().split("\r\n")[1:-1]
    assert "\n" not in "".join(lines)
    rows = dict(line.split(",") for line in lines)
    assert set(rows) == {p.name for p in (root / "p1_data" / "val_50").iterdir()}
    assert all(int(label) == int(name.split("_")[0]) for name, label in rows.items())


def test_p1_images_are_32px_rgb_png(smoke):
    root, _ = smoke
    for path in sorted((root / "p1_data" / "train_50").iterdir())[::7]:
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "RGB", (32, 32)), path


def test_p1_classes_differ_on_average(smoke):
    root, _ = smoke
    means = [
        np.mean([np.asarray(Image.open(root / "p1_data/train_50" / f"{c}_{i}.png"), float) for i in range(8)], 0)
        for c in (0, 20, 40)  # warm, cool and green circles
    ]
    assert means[0][..., 0].mean() > means[1][..., 0].mean() + 10  # warm is redder than cool
    assert means[1][..., 2].mean() > means[0][..., 2].mean() + 10  # cool is bluer than warm


def test_p2_pairs_match_in_size_and_masks_use_only_the_palette(smoke):
    root, _ = smoke
    seen = set()
    for folder in ("train", "validation"):
        for sat in sorted((root / "p2_data" / folder).glob("*_sat.jpg")):
            with Image.open(sat) as image, Image.open(str(sat).replace("_sat.jpg", "_mask.png")) as mask:
                assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (64, 64))
                assert (mask.format, mask.mode, mask.size) == ("PNG", "RGB", (64, 64))
                rgb = np.asarray(mask).reshape(-1, 3)
            colours = np.unique(rgb, axis=0)
            assert all((PALETTE == colour).all(1).any() for colour in colours), f"{sat}: off-palette colour"
            seen |= set(np.unique(decode_mask(rgb.reshape(64, 64, 3))).tolist())
    assert {1} <= seen and len(seen) >= 4, f"too few classes in the smoke masks: {sorted(seen)}"


def test_validation_ids_include_the_reported_ones():
    for name, spec in STANDIN_SIZES.items():
        assert {13, 62, 104} <= set(spec.p2_val_ids), name
        assert max(spec.p2_val_ids) <= 256, name
    full = STANDIN_SIZES["full"]
    assert (full.p1_train_per_class * 50, full.p1_val_per_class * 50) == (22_500, 2_500)
    assert (full.p2_train_count, full.p2_val_ids, full.p2_image_size) == (2000, tuple(range(257)), 512)


def test_same_seed_gives_the_same_bytes_whatever_the_workers(smoke, tmp_path):
    root, _ = smoke
    twin = tmp_path / "twin"
    generate_standin(twin, "smoke", seed=0, workers=2)
    assert _hashes(twin) == _hashes(root)


def test_reuses_a_complete_identical_standin_without_rewriting(smoke):
    root, _ = smoke
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    summary = generate_standin(root, "smoke", seed=0)
    assert summary["reused"] is True
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_refuses_a_different_standin_unless_overwrite(smoke, tmp_path, capfd):
    out = tmp_path / "data"
    shutil.copytree(smoke[0], out)
    with pytest.raises(FileExistsError, match=str(out)):
        generate_standin(out, "smoke", seed=1, p2_image_size=32)
    assert json.loads((out / MANIFEST_NAME).read_text())["seed"] == 0
    summary = generate_standin(out, "smoke", seed=1, p2_image_size=32, overwrite=True)
    assert capfd.readouterr().out == ""  # nothing on stdout without progress=True
    assert summary["reused"] is False and json.loads((out / MANIFEST_NAME).read_text())["seed"] == 1
    with Image.open(out / "p2_data" / "train" / "0000_mask.png") as mask:
        assert mask.size == (32, 32)
    assert {p.name for p in tmp_path.iterdir()} == {"data"}, "temporary or old folders were left behind"


def test_refuses_an_incomplete_standin(smoke, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(smoke[0], out)
    (out / "p1_data" / "train_50" / "0_0.png").unlink()
    with pytest.raises(FileExistsError, match="incomplete"):
        generate_standin(out, "smoke", seed=0)


def test_never_replaces_a_folder_that_is_not_a_standin(tmp_path):
    real = tmp_path / "hw1_data"
    (real / "p1_data").mkdir(parents=True)
    (real / "p1_data" / "precious.png").write_bytes(b"real data")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="not a generated stand-in"):
            generate_standin(real, "smoke", overwrite=overwrite)
    assert (real / "p1_data" / "precious.png").read_bytes() == b"real data"


def test_generated_folder_and_files_follow_the_umask(tmp_path):
    """The root is renamed from a private temporary folder; it must end up like one made by ``mkdir``."""
    old = os.umask(0o022)
    try:
        root = tmp_path / "shared"
        generate_standin(root, "smoke", seed=0, p2_image_size=16)
    finally:
        os.umask(old)
    assert stat.S_IMODE(root.stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "p1_data" / "train_50").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "p1_data" / "train_50" / "0_0.png").stat().st_mode) == 0o644
    assert stat.S_IMODE((root / MANIFEST_NAME).stat().st_mode) == 0o644


def test_unknown_size_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="smoke, demo, full"):
        generate_standin(tmp_path / "x", "huge")


def test_describe_p1_class():
    assert describe_p1_class(0) == "warm solid circle"
    assert describe_p1_class(13) == "warm striped star"
    assert describe_p1_class(49) == "green dotted chevron"
    with pytest.raises(ValueError):
        describe_p1_class(50)


def test_p2_class_shares_follow_the_real_masks():
    """Calibrated in generator version 2 (benchmarks/RESULTS.md, "Stand-in calibration"): agriculture dominant,
    urban/rangeland/barren/forest around a tenth, water a few percent, no-data rare."""
    from hw1lib.data.palette import CLASS_NAMES
    from hw1lib.data.standin import render_p2_pair

    maps = np.stack([render_p2_pair(np.random.default_rng([0, 2, 0, 0, i]), 64)[1] for i in range(150)])
    share = dict(zip(CLASS_NAMES, np.bincount(maps.ravel(), minlength=len(CLASS_NAMES)) / maps.size))
    assert 0.50 < share["agriculture"] < 0.65, share
    for name in ("urban", "rangeland", "forest", "barren"):
        assert 0.05 < share[name] < 0.16, (name, share)
    assert 0.01 < share["water"] < 0.06, share
    assert share["unknown"] < 0.01, share
