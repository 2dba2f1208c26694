"""Fixtures of the bench tests: tiny RGB crops of the bundled Kodak samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import crop_sample


@pytest.fixture(scope="session")
def crops_dir(tmp_path_factory) -> Path:
    """A folder with two 32x32 RGB crops (``a.png`` from kodim05, ``b.png`` from kodim23)."""
    folder = tmp_path_factory.mktemp("bench_crops")
    crop_sample(folder / "a.png", "kodim05.png", 200, 100, 32, 32)
    crop_sample(folder / "b.png", "kodim23.png", 300, 180, 32, 32)
    return folder
