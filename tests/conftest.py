"""Shared test settings: caches and run folders go to temporary places, never into the repository."""

from __future__ import annotations

import pytest
import torch


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
