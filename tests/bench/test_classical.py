"""The imagecodecs codecs: each one codes, decodes and measures a tiny crop."""

import numpy as np
import pytest

from loe_codec.bench.classical import CLASSICAL
from loe_codec.bench.images import open_image
from loe_codec.errors import UsageError
from loe_codec.metrics import psnr


@pytest.fixture(scope="module")
def crop(crops_dir):
    image = open_image(crops_dir / "a.png")
    return image, image.pixels()


@pytest.mark.parametrize("name", sorted(CLASSICAL))
def test_quality_sweep_ends_measure_consistently(name, crop):
    image, pixels = crop
    codec = CLASSICAL[name]
    low, high = codec.settings[0], codec.settings[-1]
    worse, better = (codec.measure(image, s, pixels) for s in (low, high))
    if name == "jpegxl":  # swept by distance: the first setting is the coarsest
        assert float(low) > float(high)
    for m, s in ((worse, low), (better, high)):
        assert (m.image, m.codec, m.setting) == ("a", name, s)
        assert m.bytes > 0 and m.bpp == pytest.approx(m.bytes * 8 / (32 * 32))
        assert m.encode_s >= 0 and m.decode_s >= 0
    assert better.bytes > worse.bytes
    assert better.psnr is None or better.psnr > worse.psnr + 3


def test_the_measured_psnr_is_that_of_the_decoded_pixels(crop):
    import imagecodecs

    image, pixels = crop
    m = CLASSICAL["jpeg"].measure(image, "50", pixels)
    data = imagecodecs.jpeg8_encode(pixels, level=50, subsampling="420", optimize=True)
    assert m.bytes == len(data)
    assert m.psnr == pytest.approx(psnr(pixels, imagecodecs.jpeg8_decode(data)))


@pytest.mark.parametrize("name,bad", [("jpeg", "101"), ("jpeg", "high"), ("webp", "-1"), ("jpegxl", "0"),
                                      ("avif", "nan")])
def test_bad_settings_are_usage_errors(name, bad):
    with pytest.raises(UsageError, match=name):
        CLASSICAL[name].check_setting(bad)


def test_default_sweeps_are_valid_and_ordered_by_rate():
    for codec in CLASSICAL.values():
        assert len(codec.settings) >= 10 and codec.describe and codec.label
        for s in codec.settings:
            codec.check_setting(s)
        values = [float(s) for s in codec.settings]
        assert values == sorted(values, reverse=codec.name == "jpegxl")
        assert np.unique(values).size == len(values)
