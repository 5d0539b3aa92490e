"""Shared test settings: caches and run folders go to temporary places, never into the repository."""

from __future__ import annotations

import pytest
import torch

from tests._helpers import save_image


@pytest.fixture(autouse=True)
def _isolated_paths(tmp_path_factory, monkeypatch):
    base = tmp_path_factory.mktemp("hw1")
    monkeypatch.setenv("HW1_CACHE", str(base / "cache"))
    monkeypatch.setenv("HW1_RUNS", str(base / "runs"))
    monkeypatch.setenv("HW1_FIGURES", str(base / "figures"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module of model tests: on 2 shared, busy cores, two threads spin against
    each other and any other process (measured: the model tests ran 5x slower); restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def p1_dir(tmp_path):
    """A folder of three unlabelled 32 px PNGs named like a test set (``10.png``, ``2.png``, ``1.png``)."""
    folder = tmp_path / "p1_test"
    folder.mkdir()
    for name in ("10.png", "2.png", "1.png"):
        save_image(folder / name)
    return folder


@pytest.fixture
def p2_dir(tmp_path):
    """A folder of three 64 px JPEGs named like a P2 test set (``0000.jpg`` ...)."""
    folder = tmp_path / "p2_test"
    folder.mkdir()
    for name in ("0000.jpg", "0001.jpg", "0002.jpg"):
        save_image(folder / name, size=(64, 64))
    return folder
