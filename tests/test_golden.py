"""Decode the committed golden files and compare the pixels' SHA-256 (see samples/golden/README.md).

``tiny.loe`` is format 4 (made by samples/make_golden.py); ``tiny_v3.loe`` (format 3), ``tiny_v2.loe``
(format 2) and ``tiny_v1.loe`` (format 1) are frozen: the decoder must keep reading old files to the same pixels. Nothing here re-encodes.
"""

import hashlib

import numpy as np
import pytest

import loe_codec
from support import SAMPLES, read_array, tensor_table

GOLDEN = SAMPLES / "golden"
CASES = {
    # name: (format version, tensors in the file)
    "tiny": (4, {"tiles", "tile_offsets", "tile_crc32"}),
    "tiny_v3": (3, {"tiles", "tile_offsets", "tile_crc32"}),
    "tiny_v2": (2, {"tiles", "tile_offsets", "tile_crc32"}),
    "tiny_v1": (1, {"tile.0", "tile.1", "tile.2", "tile.3"}),
}


def _expected(name: str, suffix: str = "") -> str:
    return (GOLDEN / f"{name}{suffix}.sha256").read_text().split()[0]


@pytest.mark.parametrize("name", list(CASES))
def test_golden_file_is_the_committed_one(name):
    # The decode tests below are only meaningful for the file the hashes were taken from.
    version, tensors = CASES[name]
    path = GOLDEN / f"{name}.loe"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == _expected(name, ".loe"), \
        f"{path} was modified; golden files are only regenerated on purpose (samples/make_golden.py)"
    assert set(tensor_table(path)) == tensors


@pytest.mark.parametrize("name", list(CASES))
def test_golden_decode_is_unchanged(name):
    version, _ = CASES[name]
    with loe_codec.open(GOLDEN / f"{name}.loe") as img:
        assert (img.width, img.height, img.channels) == (32, 24, 3)
        assert img.header.version == version
        assert img.config.quant.scheme == ("laplace" if version >= 2 else "int8")
        assert img.config.quant.reference == ("seeded-uniform-1" if version >= 3 else "none")
        assert img.config.quant.unit_ladder == ((1.0, 0.5) if version >= 4 else (1.0,))
        pixels = img.decode(device="cpu")
    assert pixels.shape == (24, 32, 3) and pixels.dtype == np.uint8
    expected = _expected(name)
    digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
    if digest != expected:
        reference = read_array(GOLDEN / f"{name}_decoded.png")
        diff = np.abs(pixels.astype(int) - reference.astype(int))
        advice = ("If the change to the format or decoder is deliberate, run samples/make_golden.py."
                  if version == 4 else
                  "Format-1, -2 and -3 files are frozen: the decoder must keep reading them to the same pixels.")
        raise AssertionError(
            f"the decode of samples/golden/{name}.loe changed: sha256 {digest} != {expected}; "
            f"{int((diff > 0).any(axis=2).sum())} of {24 * 32} pixels differ, by up to {int(diff.max())} levels. "
            + advice)


@pytest.mark.parametrize("name", list(CASES))
def test_golden_reference_image_matches_the_hash(name):
    # Keeps the diagnostic image honest: it must be the pixels the hash was taken of.
    reference = read_array(GOLDEN / f"{name}_decoded.png")
    assert hashlib.sha256(reference.tobytes()).hexdigest() == _expected(name)


def test_golden_files_differ_and_decode_to_a_picture():
    # Four formats, four encoders: different files, each a real picture (not flat, few clamped pixels).
    assert len({_expected(name, ".loe") for name in CASES}) == len(CASES)
    for name in CASES:
        pixels = read_array(GOLDEN / f"{name}_decoded.png")
        assert pixels.std() > 10 and ((pixels == 0) | (pixels == 255)).mean() < 0.2


def test_golden_format_4_file_reports_its_kept_units():
    # Two of its four tiles dropped half their units (see samples/golden/README.md).
    data = loe_codec.info(GOLDEN / "tiny.loe")
    assert data["units_kept"] == {"tiles_by_fraction": {"1": 2, "0.5": 2}, "mean_fraction": 0.75}
    split = data["rate_split"]
    assert split["biases"] == (2 * (8 * 3 + 3) + 2 * (4 * 3 + 3)) * 2  # kept biases only, float16
    assert split["steps_and_models"] == 4 * (8 * 4 + 3)  # 8 bytes a layer, 1 mask byte a hidden layer
    assert "units_kept" not in loe_codec.info(GOLDEN / "tiny_v3.loe")
