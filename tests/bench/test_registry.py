"""Codec names and per-codec settings."""

import pytest

from loe_codec.bench.registry import CODEC_NAMES, DEFAULT_CODECS, make_codecs, parse_settings, settings_for
from loe_codec.errors import UsageError


def test_make_codecs_in_order_once():
    codecs = make_codecs(["jpeg", "loe", "jpeg"], device="cpu", loe_steps=3)
    assert [c.name for c in codecs] == ["jpeg", "loe"]
    assert codecs[1].steps == 3 and codecs[1].device == "cpu"
    assert set(DEFAULT_CODECS) <= set(CODEC_NAMES)


@pytest.mark.parametrize("names", [["jpeg", "png"], []])
def test_unknown_or_no_codecs(names):
    with pytest.raises(UsageError):
        make_codecs(names)


def test_settings_parse_and_default():
    parsed = parse_settings(["jpeg=10, 50,90", "loe=fast,balanced"])
    assert parsed == {"jpeg": ("10", "50", "90"), "loe": ("fast", "balanced")}
    codecs = make_codecs(["jpeg", "webp", "loe"], device="cpu")
    sweep = settings_for(codecs, parsed)
    assert sweep["jpeg"] == ("10", "50", "90") and sweep["webp"] == codecs[1].settings
    assert sweep["loe"] == ("fast", "balanced")


@pytest.mark.parametrize("spec", ["jpeg", "jpeg=", "=10", "jpeg=,"])
def test_malformed_settings(spec):
    with pytest.raises(UsageError, match="CODEC=S1"):
        parse_settings([spec])


def test_settings_checked_against_the_codecs_run():
    codecs = make_codecs(["jpeg"])
    with pytest.raises(UsageError, match="not among the codecs"):
        settings_for(codecs, {"webp": ("50",)})
    with pytest.raises(UsageError, match="jpeg"):
        settings_for(codecs, {"jpeg": ("500",)})
