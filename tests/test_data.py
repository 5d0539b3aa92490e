"""Data loading: root discovery, Problem 1 parsing and validation, Problem 2 pairing, mask decoding, cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hw1lib.data import find_data_root, load_classification_folder, load_segmentation_folder
from hw1lib.data.classification import parse_label
from hw1lib.data.palette import PALETTE, decode_mask, encode_mask


def write_png(path, size=(32, 32), value=0, mode="RGB"):
    array = np.full((size[1], size[0], 3), value, dtype=np.uint8)
    Image.fromarray(array).convert(mode).save(path)


# ---- root discovery ------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["", "hw1_data", "hw1_data/hw1_data"])
def test_find_data_root_accepts_the_three_layouts(tmp_path, layout):
    holder = tmp_path / layout if layout else tmp_path
    (holder / "p1_data").mkdir(parents=True)
    (holder / "p2_data").mkdir()
    root = find_data_root(tmp_path)
    assert root.root == holder.resolve()
    assert root.p1 == root.root / "p1_data" and root.p2 == root.root / "p2_data"


def test_find_data_root_error_lists_what_was_looked_for_and_found(tmp_path):
    (tmp_path / "something_else").mkdir()
    with pytest.raises(FileNotFoundError) as info:
        find_data_root(tmp_path)
    message = str(info.value)
    assert "p1_data" in message and "hw1_data" in message and "something_else/" in message


# ---- Problem 1 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("cat.png", "expected a file name"),
        ("7-123.png", "expected a file name"),
        ("7_.png", "expected a file name"),
        ("_123.png", "expected a file name"),
        ("7_123.jpg", "expected a file name"),
        ("a_1.png", "expected a file name"),
        ("50_1.png", "out of range"),
        ("99_450.png", "out of range"),
    ],
)
def test_parse_label_rejects_bad_names(name, expected):
    with pytest.raises(ValueError, match=expected) as info:
        parse_label(name)
    assert name in str(info.value)


def test_parse_label_accepts_good_names():
    assert parse_label("7_123.png") == 7
    assert parse_label("0_0.png") == 0
    assert parse_label("49_499.png") == 49


def test_labelled_folder_decodes_to_uint8_tensor(tmp_path):
    for label, value in [(3, 10), (0, 20), (49, 30)]:
        write_png(tmp_path / f"{label}_{value}.png", value=value)
    data = load_classification_folder(tmp_path, cache=False)
    assert data.images.dtype == torch.uint8 and data.images.shape == (3, 3, 32, 32)
    assert data.names == ["0_20.png", "3_10.png", "49_30.png"]
    assert data.labels.tolist() == [0, 3, 49]
    assert data.images[1].float().mean() == 10


def test_bad_name_in_a_labelled_folder_names_the_file(tmp_path):
    write_png(tmp_path / "1_1.png")
    write_png(tmp_path / "oops.png")
    with pytest.raises(ValueError, match="oops.png"):
        load_classification_folder(tmp_path, cache=False)


def test_wrong_size_and_unreadable_images_are_rejected_with_the_file_name(tmp_path):
    write_png(tmp_path / "1_1.png")
    write_png(tmp_path / "1_2.png", size=(64, 32))
    with pytest.raises(ValueError, match=r"1_2.png: image is 64x32, expected 32x32"):
        load_classification_folder(tmp_path, cache=False)
    (tmp_path / "1_2.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"1_2.png: cannot be read"):
        load_classification_folder(tmp_path, cache=False)


def test_grayscale_images_are_converted_to_rgb(tmp_path):
    write_png(tmp_path / "1_1.png", value=77, mode="L")
    data = load_classification_folder(tmp_path, cache=False)
    assert data.images.shape == (1, 3, 32, 32) and int(data.images.max()) == 77


def test_unlabelled_folder_loads_without_labels(tmp_path):
    for name in ["0001.png", "0000.png"]:
        write_png(tmp_path / name)
    data = load_classification_folder(tmp_path, cache=False)
    assert data.labels is None and data.names == ["0000.png", "0001.png"]


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no \\*.png"):
        load_classification_folder(tmp_path, cache=False)


def test_second_load_comes_from_the_cache_and_a_change_invalidates_it(tmp_path, monkeypatch):
    folder, cache = tmp_path / "train_50", tmp_path / "cache"
    folder.mkdir()
    for i in range(5):
        write_png(folder / f"{i}_{i}.png", value=i)
    first = load_classification_folder(folder, cache=cache)
    assert not first.from_cache

    import hw1lib.data.classification as module

    monkeypatch.setattr(module, "_decode_all", lambda files: pytest.fail("decoded again despite the cache"))
    second = load_classification_folder(folder, cache=cache)
    assert second.from_cache and torch.equal(first.images, second.images) and second.key == first.key
    monkeypatch.undo()
    write_png(folder / "9_9.png", value=9)
    third = load_classification_folder(folder, cache=cache)
    assert not third.from_cache and len(third) == 6


# ---- Problem 2 -------------------------------------------------------------------------------------


def write_pair(folder, image_id, class_map):
    rgb = encode_mask(class_map)
    Image.fromarray(rgb).save(folder / f"{image_id}_mask.png")
    Image.fromarray(rgb).save(folder / f"{image_id}_sat.jpg", quality=95)


def test_official_mask_decoding_with_noisy_values_near_128_and_red():
    # every palette colour perturbed to values just on either side of the 128 threshold
    rng = np.random.default_rng(0)
    high = rng.integers(128, 256, size=(7, 3))
    low = rng.integers(0, 128, size=(7, 3))
    noisy = np.where(PALETTE >= 128, high, low).astype(np.uint8)
    assert decode_mask(noisy[None]).tolist() == [[0, 1, 2, 3, 4, 5, 6]]
    edge = np.where(PALETTE >= 128, 128, 127).astype(np.uint8)
    assert decode_mask(edge[None]).tolist() == [[0, 1, 2, 3, 4, 5, 6]]
    red = np.array([[[255, 0, 0], [200, 100, 30]]], dtype=np.uint8)
    assert decode_mask(red).tolist() == [[0, 0]]  # code 4 (red) -> urban, as the official reader runs


def test_palette_round_trip_is_exact():
    class_map = np.random.default_rng(1).integers(0, 7, size=(17, 23)).astype(np.uint8)
    rgb = encode_mask(class_map)
    assert rgb.dtype == np.uint8 and set(map(tuple, rgb.reshape(-1, 3))) <= set(map(tuple, PALETTE))
    assert np.array_equal(decode_mask(rgb), class_map)
    with pytest.raises(ValueError, match="0..6"):
        encode_mask(np.full((2, 2), 7))


def test_pairs_are_decoded_with_official_masks(tmp_path):
    maps = [np.full((32, 32), c, dtype=np.uint8) for c in (0, 4)]
    for i, m in enumerate(maps):
        write_pair(tmp_path, f"{i:04d}", m)
    data = load_segmentation_folder(tmp_path, cache=False)
    assert data.ids == ["0000", "0001"] and data.images.shape == (2, 3, 32, 32)
    assert (
        data.masks.dtype == torch.uint8
        and data.masks[0].unique().tolist() == [0]
        and data.masks[1].unique().tolist() == [4]
    )


@pytest.mark.parametrize(
    "remove, message",
    [
        ("0001_mask.png", "id 0001: 0001_sat.jpg has no 0001_mask.png"),
        ("0000_sat.jpg", "id 0000: 0000_mask.png has no 0000_sat.jpg"),
    ],
)
def test_a_missing_partner_names_the_id(tmp_path, remove, message):
    for i in range(2):
        write_pair(tmp_path, f"{i:04d}", np.zeros((32, 32), dtype=np.uint8))
    (tmp_path / remove).unlink()
    with pytest.raises(ValueError, match=message):
        load_segmentation_folder(tmp_path, cache=False)


def test_unlabelled_jpg_folder_loads_without_masks(tmp_path):
    for name in ["0002.jpg", "0001.jpg"]:
        Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(tmp_path / name)
    data = load_segmentation_folder(tmp_path, cache=False)
    assert data.masks is None and data.ids == ["0001", "0002"]


def test_segmentation_cache_reuse(tmp_path, monkeypatch):
    folder = tmp_path / "train"
    folder.mkdir()
    write_pair(folder, "0000", np.eye(32, dtype=np.uint8))
    first = load_segmentation_folder(folder, cache=tmp_path / "cache")
    import hw1lib.data.segmentation as module

    monkeypatch.setattr(module, "_decode_all", lambda *a: pytest.fail("decoded again despite the cache"))
    second = load_segmentation_folder(folder, cache=tmp_path / "cache")
    assert second.from_cache and torch.equal(first.masks, second.masks)
