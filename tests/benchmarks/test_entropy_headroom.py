"""The entropy-model headroom of benchmarks/entropy_headroom.py, on the golden image file and a tiny video."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loe_codec.video import encode_video
from support import SAMPLES, load_script
from test_video import CLIP, tiny_video_config


@pytest.fixture(scope="module")
def headroom():
    return load_script("benchmarks/entropy_headroom.py")


def test_laplace_bits_match_the_models_probabilities(headroom):
    ints = np.array([[0, 1, -1], [2, 0, 0]])
    r = headroom.entropy.model_for(ints).ratio_code / 65536
    table = {k: r ** abs(k) for k in range(-2, 3)}
    expected = -sum(math.log2(table[k] / sum(table.values())) for k in ints.ravel())
    assert headroom.laplace_bits(ints) == pytest.approx(expected, rel=1e-9)
    assert headroom.laplace_bits(np.zeros((2, 3), dtype=int)) == 0.0


def test_empirical_entropy_of_known_counts(headroom):
    assert headroom.empirical_bits(np.array([0, 0, 1, 1])) == pytest.approx(4.0)
    assert headroom.empirical_bits(np.array([5, 5, 5])) == 0.0


def test_split_charges_a_model_per_slice(headroom):
    ints = np.array([[[0, 3], [0, -3]]])  # [1 bank, 2 rows, 2 columns]
    assert headroom.split_bits(ints, 0) == pytest.approx(headroom.laplace_bits(ints) + headroom.MODEL_BITS)
    assert headroom.split_bits(ints, 2) == pytest.approx(headroom.laplace_bits(ints[:, :, 1]) + 2 * headroom.MODEL_BITS)


def test_zero_spike_bits_of_known_counts(headroom):
    # Half zeros (1 bit each for zero / not), signs (1 bit each), |k| - 1 = 0 or 2: mean 1, r = 1/2,
    # so -log2(1/2) - j log2(1/2) = 1 + j bits.
    ints = np.array([0, 0, 0, 0, 1, -1, 3, -3])
    expected = 8 * 1.0 + 4 * 1.0 + (1 + 1 + 3 + 3)
    assert headroom.zero_spike_bits(ints) == pytest.approx(expected)
    assert headroom.zero_spike_bits(np.zeros(5, dtype=int)) == 0.0
    assert headroom.zero_spike_bits(np.array([1, -1, 1])) == pytest.approx(3.0)  # signs only


def test_bank_delta_codes_each_bank_against_the_others_mean(headroom):
    ints = np.array([[[2, -4]], [[0, 4]], [[1, 3]]])  # [3 banks, 1 row, 2 columns]
    # Means of the other banks: [0.5, 3.5], [1.5, -0.5], [1, 0]; numpy rounds halves to even.
    delta = np.array([[[2 - 0, -4 - 4]], [[0 - 2, 4 - 0]], [[1 - 1, 3 - 0]]])
    assert headroom.bank_delta_bits(ints) == pytest.approx(headroom.laplace_bits(delta))
    one_bank = ints[:1]
    assert headroom.bank_delta_bits(one_bank) == headroom.laplace_bits(one_bank)
    same = np.repeat(ints[:1], 4, axis=0)  # identical banks leave nothing to code
    assert headroom.bank_delta_bits(same) == 0.0


@pytest.mark.parametrize("kind", ["image", "video"])
def test_headroom_of_a_file(headroom, kind, tmp_path):
    if kind == "image":
        path = SAMPLES / "golden" / "tiny.loe"
    else:
        path = tmp_path / "clip.loe"
        encode_video(CLIP, path, config=tiny_video_config(steps=10), device="cpu", measure_psnr=False)
    result = headroom.headroom(path)
    bits = result["bits_per_weight"]
    assert result["weights"] > 0 and result["tiles"] > 1
    # The range coder reaches the models' ideal length within its flush words, and no i.i.d. model per
    # layer beats the layer's empirical entropy.
    assert bits["coded"] == pytest.approx(bits["laplace"], rel=0.1)
    assert bits["empirical"] <= bits["laplace"] + 1e-9
    assert bits["empirical"] <= bits["zero_spike"]
    assert bits["bank_delta"] > 0
    assert sum(layer["weights"] for layer in result["layers"]) == result["weights"]
    assert result["saving_vs_coded"]["empirical"] == pytest.approx(1 - bits["empirical"] / bits["coded"], abs=1e-3)
