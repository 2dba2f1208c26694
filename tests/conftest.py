"""Shared fixtures for the loe-codec test suite.

Everything runs on the CPU with tiny images and tiny configs. Torch is pinned to one
thread: the tensors here are so small that a thread pool only adds overhead (and on a
busy machine two OpenMP threads spin against each other and run ~10x slower).
"""

from __future__ import annotations

import os

# Before torch is imported anywhere (subprocesses inherit these too).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import dataclasses  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

import loe_codec  # noqa: E402
from support import SAMPLES, crop_sample, tiny_config  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same global torch / numpy RNG state."""
    torch.manual_seed(1234)
    np.random.seed(1234)


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def crop_png(tmp_path_factory) -> Path:
    """A 40x28 RGB crop of kodim23 (3x2 tiles of the tiny config)."""
    return crop_sample(tmp_path_factory.mktemp("crop") / "crop.png", "kodim23.png", 300, 180, 40, 28)


@pytest.fixture(scope="session")
def encoded(crop_png, tmp_path_factory):
    """``(loe_path, png_path, EncodeResult)`` of the crop, encoded once per session with a usable config."""
    out = tmp_path_factory.mktemp("encoded") / "crop.loe"
    result = loe_codec.encode(crop_png, out, config=tiny_config(steps=100), device="cpu")
    return out, crop_png, result


@pytest.fixture(scope="session")
def full_decode(encoded) -> np.ndarray:
    """The full scale-1 decode of :func:`encoded`."""
    with loe_codec.open(encoded[0]) as img:
        return img.decode(device="cpu")


@pytest.fixture
def fast_config():
    """A config that encodes a tiny image in a fraction of a second (quality is irrelevant)."""
    cfg = tiny_config(steps=8)
    return dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, samples_per_tile=256))
