"""Summaries of synthetic results: mean PSNR at the points, BD against the anchors, the reference comparison."""

import math

import pytest

from loe_codec.bench.summary import curves, reference_comparison, summarize

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


def test_summary_points_and_bd(results):
    labels = {"jpeg": "JPEG-420", "jpeg2000": "JPEG2000", "webp": "WebP"}
    settings = {name: [str(k) for k in range(len(BPPS))] for name in labels}
    s = summarize(results, IMAGES, labels, settings, [0.25, 1.0, 5.0])
    assert s["anchors"] == ["jpeg", "jpeg2000"] and s["bd_method"] == "pchip"
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
    assert first == {"setting": "0", "images": 2, "bpp": pytest.approx(0.1), "psnr": pytest.approx(32 + 4 * math.log(0.1))}


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
