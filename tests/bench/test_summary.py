"""Summaries of synthetic results: mean PSNR at the points, BD against the anchors, the reference comparison."""

import math

import pytest

from loe_codec.bench.summary import (BdSpec, curves, mean_curve, reference_bd_comparison, reference_comparison,
                                     summarize)
from loe_codec.errors import UsageError

IMAGES = ["i1", "i2"]
BPPS = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2]


def rows(codec, image, fn, factor=1.0, settings=None):
    return [{"image": image, "codec": codec, "setting": settings[k] if settings else str(k), "bpp": b * factor,
             "psnr": fn(b)} for k, b in enumerate(BPPS)]


def line(offset):
    return lambda b: offset + 4 * math.log(b)


@pytest.fixture
def results():
    out = []
    for image, offset in zip(IMAGES, (30.0, 34.0)):
        out += rows("jpeg", image, line(offset))
        out += rows("jpeg2000", image, line(offset), factor=0.5)  # half the bits for the same PSNR
        out += rows("webp", image, line(offset), factor=0.8)
    return out


@pytest.mark.parametrize("bd", [BdSpec(), BdSpec("pchip", "images"), BdSpec("cubic", "images")])
def test_summary_points_and_bd(results, bd):
    labels = {"jpeg": "JPEG-420", "jpeg2000": "JPEG2000", "webp": "WebP"}
    settings = {name: [str(k) for k in range(len(BPPS))] for name in labels}
    s = summarize(results, IMAGES, labels, settings, [0.25, 1.0, 5.0], bd)
    assert s["anchors"] == ["jpeg", "jpeg2000"] and bd.method in s["bd"]
    jpeg, j2k, webp = (s["codecs"][n] for n in ("jpeg", "jpeg2000", "webp"))
    assert jpeg["mean_psnr"][:2] == pytest.approx([32 + 4 * math.log(0.25), 32.0])
    assert jpeg["mean_psnr"][2] is None  # beyond every sweep
    assert j2k["mean_psnr"][1] == pytest.approx(32.0 + 4 * math.log(2))
    assert j2k["bd"]["jpeg"]["rate"] == pytest.approx(-50.0)
    assert jpeg["bd"]["jpeg2000"]["rate"] == pytest.approx(100.0)
    assert webp["bd"]["jpeg"]["rate"] == pytest.approx(-20.0)
    assert webp["bd"]["jpeg2000"]["psnr"] == pytest.approx(-4 * math.log(0.8 / 0.5))
    assert jpeg["bd"]["jpeg"] == {"rate": pytest.approx(0.0), "psnr": pytest.approx(0.0)}
    first = jpeg["settings"][0]
    assert first == {"setting": "0", "images": 2, "bpp": pytest.approx(0.1),
                     "psnr": pytest.approx(32 + 4 * math.log(0.1))}


def test_mean_curve_keeps_the_rates_every_image_reaches():
    cs = [[(0.1, 20.0), (0.4, 26.0), (1.6, 32.0)], [(0.2, 22.0), (0.8, 28.0), (3.2, 34.0)]]
    assert mean_curve(cs, (0.1, 0.2, 0.4, 1.6, 3.2)) == [(0.2, pytest.approx(22.5)), (0.4, pytest.approx(25.5)),
                                                      (1.6, pytest.approx(31.5))]


def test_bd_spec_checks_its_fields():
    with pytest.raises(UsageError, match="method"):
        BdSpec("linear")
    with pytest.raises(UsageError, match="average"):
        BdSpec(average="median")


def test_the_default_bd_reproduces_the_reference_anchors():
    """The mean curves of kodak_classical_codecs.json (bpp 0.25..2) and its BD-rates vs JPEG 4:2:0."""
    grid = [0.25, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0]
    jpeg = [26.91098801, 28.94917529, 29.88596519, 31.67017997, 33.04094133, 35.22619192, 36.98687174]
    webp = [29.04174842, 30.89942345, 31.90003578, 33.89688856, 35.44230938, 37.76365275, 39.46551317]
    jpeg2000 = [29.28760093, 31.18136879, 32.21408963, 34.32365995, 36.00946823, 38.68426412, 40.80810491]
    jpeg2000 = [(0.1, 26.40982461), (0.15, 27.58140661)] + list(zip(grid, jpeg2000))  # J2K reaches lower
    for test, expected in ((list(zip(grid, webp)), -36.47), (jpeg2000, -42.56)):
        # one "image" whose curve is the mean curve: the curve average is then the curve itself
        out = BdSpec().deltas([list(zip(grid, jpeg))], [test])
        assert out["rate"] == pytest.approx(expected, abs=0.005)
        assert out["psnr"] > 2


def test_no_anchor_no_bd(results):
    s = summarize([r for r in results if r["codec"] == "webp"], IMAGES, {"webp": "WebP"}, {}, [1.0])
    assert s["anchors"] == [] and s["codecs"]["webp"]["bd"] == {}


def test_an_image_missing_from_a_codec_gives_no_mean(results):
    partial = [r for r in results if not (r["codec"] == "webp" and r["image"] == "i2")]
    assert curves(partial, "webp", IMAGES)[1] == []
    s = summarize(partial, IMAGES, {"jpeg": "JPEG-420", "webp": "WebP"}, {}, [1.0])
    assert s["codecs"]["webp"]["mean_psnr"] == [None] and s["codecs"]["webp"]["bd"]["jpeg"]["rate"] is None


def test_reference_comparison(results):
    reference = {"target_bpp": [0.05, 1.0], "codecs": {"JPEG-420": {"mean_psnr": [None, 31.9]},
                                                      "Other": {"mean_psnr": [1.0, 2.0]}}}
    out = reference_comparison(results, IMAGES, {"jpeg": "JPEG-420", "webp": "WebP"}, reference)
    assert out == [{"codec": "jpeg", "label": "JPEG-420", "bpp": 1.0, "ours": pytest.approx(32.0),
                    "reference": 31.9, "delta": pytest.approx(0.1)}]


def test_reference_bd_comparison(results):
    s = summarize(results, IMAGES, {"jpeg": "JPEG-420", "webp": "WebP"}, {}, [1.0])
    reference = {"bd_rate_vs_JPEG-420_percent": {"WebP": -19.0, "AVIF-444": -47.0}}
    (row,) = reference_bd_comparison(s, reference)
    assert row["label"] == "WebP" and row["ours"] == pytest.approx(-20.0) and row["delta"] == pytest.approx(-1.0)
    no_anchor = summarize(results, IMAGES, {"webp": "WebP"}, {}, [1.0])
    assert reference_bd_comparison(no_anchor, reference) == []


def test_setting_lines(results):
    from loe_codec.bench.report import setting_lines

    s = summarize(results, IMAGES, {"jpeg": "JPEG-420"}, {"jpeg": ["0", "5"]}, [1.0])
    assert setting_lines(s) == [f"JPEG-420 0: 0.1000 bpp, {32 + 4 * math.log(0.1):.2f} dB (mean of 2 image(s))",
                                f"JPEG-420 5: 3.2000 bpp, {32 + 4 * math.log(3.2):.2f} dB (mean of 2 image(s))"]
    assert setting_lines(s, most=1) == []
