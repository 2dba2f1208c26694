"""Decode the committed golden files and compare the pixels' SHA-256 (see samples/golden/README.md).

``tiny.loe`` is format 3 (made by samples/make_golden.py); ``tiny_v2.loe`` (format 2) and ``tiny_v1.loe``
(format 1) are frozen: the decoder must keep reading old files to the same pixels. Nothing here re-encodes.
"""

import hashlib

import numpy as np
import pytest

import loe_codec
from support import SAMPLES, read_array, tensor_table

GOLDEN = SAMPLES / "golden"
CASES = {
    # name: (format version, tensors in the file)
    "tiny": (3, {"tiles", "tile_offsets", "tile_crc32"}),
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
        pixels = img.decode(device="cpu")
    assert pixels.shape == (24, 32, 3) and pixels.dtype == np.uint8
    expected = _expected(name)
    digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
    if digest != expected:
        reference = read_array(GOLDEN / f"{name}_decoded.png")
        diff = np.abs(pixels.astype(int) - reference.astype(int))
        advice = ("If the change to the format or decoder is deliberate, run samples/make_golden.py."
                  if version == 3 else
                  "Format-1 and format-2 files are frozen: the decoder must keep reading them to the same pixels.")
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
    # Three formats, three encoders: different files, each a real picture (not flat, few clamped pixels).
    assert len({_expected(name, ".loe") for name in CASES}) == len(CASES)
    for name in CASES:
        pixels = read_array(GOLDEN / f"{name}_decoded.png")
        assert pixels.std() > 10 and ((pixels == 0) | (pixels == 255)).mean() < 0.2
