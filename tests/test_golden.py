"""Decode the committed golden file and compare the pixels' SHA-256 (see samples/golden/README.md)."""

import hashlib

import numpy as np

import loe_codec
from support import SAMPLES, read_array

GOLDEN = SAMPLES / "golden"


def test_golden_decode_is_unchanged():
    with loe_codec.open(GOLDEN / "tiny.loe") as img:
        assert (img.width, img.height, img.channels) == (32, 24, 3)
        assert img.header.version == 1
        pixels = img.decode(device="cpu")
    assert pixels.shape == (24, 32, 3) and pixels.dtype == np.uint8
    expected = (GOLDEN / "tiny.sha256").read_text().split()[0]
    digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
    if digest != expected:
        reference = read_array(GOLDEN / "tiny_decoded.png")
        diff = np.abs(pixels.astype(int) - reference.astype(int))
        raise AssertionError(
            f"the decode of samples/golden/tiny.loe changed: sha256 {digest} != {expected}; "
            f"{int((diff > 0).any(axis=2).sum())} of {24 * 32} pixels differ, by up to {int(diff.max())} levels. "
            "If the change to the format or decoder is deliberate, run samples/make_golden.py.")


def test_golden_reference_image_matches_the_hash():
    # Keeps the diagnostic image honest: it must be the pixels the hash was taken of.
    reference = read_array(GOLDEN / "tiny_decoded.png")
    expected = (GOLDEN / "tiny.sha256").read_text().split()[0]
    assert hashlib.sha256(reference.tobytes()).hexdigest() == expected
