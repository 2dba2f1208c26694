"""The loe codec in the bench: settings -> configs, and a measurement through the public API."""

import pytest

import loe_codec
from loe_codec.bench.images import open_image
from loe_codec.bench.loe import LoeCodec, loe_config, loe_setting
from loe_codec.config import PRESETS, slope_for_quality
from loe_codec.errors import UsageError
from loe_codec.metrics import psnr


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_settings_are_presets(name):
    assert loe_config(name) == PRESETS[name]


def test_rate_suffixes_set_the_slope_or_a_bpp_target():
    cfg, bpp = loe_setting("balanced@q30")
    assert bpp is None and cfg.quant.slope == pytest.approx(slope_for_quality(30), rel=1e-5)
    assert cfg.model == PRESETS["balanced"].model and cfg.fit == PRESETS["balanced"].fit
    cfg, bpp = loe_setting("fast@bpp0.75")
    assert bpp == 0.75 and cfg == PRESETS["fast"]
    for bad in ("fast@q101", "fast@qx", "fast@bpp0", "fast@bpp-1", "fast@zz", "fast@"):
        if bad == "fast@":
            assert loe_setting(bad) == (PRESETS["fast"], None)
            continue
        with pytest.raises(UsageError, match="bad rate"):
            loe_setting(bad)


def test_unknown_setting_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown setting"):
        loe_config("fastest")
    with pytest.raises(UsageError):
        LoeCodec("cpu").check_setting("q50")


def test_steps_override_keeps_the_rest_of_the_preset():
    cfg = LoeCodec("cpu", steps=7).config("fast")
    assert cfg.fit.steps == 7 and cfg.model == PRESETS["fast"].model and cfg.tile == PRESETS["fast"].tile
    with pytest.raises(UsageError):
        LoeCodec("cpu", steps=-1)


def test_measure_matches_an_encode_through_the_api(crops_dir, tmp_path):
    image = open_image(crops_dir / "b.png")
    pixels = image.pixels()
    m = LoeCodec("cpu", steps=20).measure(image, "fast", pixels)
    # The same config through the public API gives the same file (same seed) and the same decode.
    out = tmp_path / "b.loe"
    loe_codec.encode(image.path, out, config=loe_config("fast").with_overrides(steps=20), device="cpu",
                     measure_psnr=False)
    with loe_codec.open(out) as img:
        expected = psnr(pixels, img.decode(device="cpu"))
    assert (m.image, m.codec, m.setting) == ("b", "loe", "fast")
    assert m.bytes == out.stat().st_size and m.bpp == pytest.approx(m.bytes * 8 / (32 * 32))
    assert m.psnr == pytest.approx(expected) and 5 < m.psnr < 60
    assert m.encode_s > 0 and m.decode_s > 0
