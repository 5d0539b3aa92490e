"""Shared test settings: caches and run folders go to temporary places, never into the repository."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_paths(tmp_path_factory, monkeypatch):
    base = tmp_path_factory.mktemp("hw1")
    monkeypatch.setenv("HW1_CACHE", str(base / "cache"))
    monkeypatch.setenv("HW1_RUNS", str(base / "runs"))
    monkeypatch.setenv("HW1_FIGURES", str(base / "figures"))
