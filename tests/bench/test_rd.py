"""RD maths on synthetic curves with known answers."""

import math

import numpy as np
import pytest

from loe_codec.bench.rd import bd_psnr, bd_rate, clean_curve, mean_delta, mean_psnr_at, pchip, psnr_at

METHODS = ("pchip", "cubic")


def curve(fn, bpps):
    return [(b, fn(b)) for b in bpps]


def wavy(b):
    """A realistic concave, non-polynomial RD curve."""
    x = math.log(b)
    return 30 + 6 * x - 0.8 * x * x + 0.3 * math.sin(3 * x)


BPPS = [0.1, 0.17, 0.25, 0.4, 0.6, 0.9, 1.3, 2.0, 3.0]


def test_psnr_at_is_linear_in_log_bpp():
    pts = [(0.25, 28.0), (1.0, 34.0)]
    assert psnr_at(pts, 0.5) == pytest.approx(31.0)  # log 0.5 is halfway between log 0.25 and log 1
    assert psnr_at(pts, 0.25) == pytest.approx(28.0) and psnr_at(pts, 1.0) == pytest.approx(34.0)
    assert psnr_at(pts, 0.2) is None and psnr_at(pts, 1.01) is None  # no extrapolation
    assert psnr_at([], 0.5) is None
    # A point rate control landed next to the rate answers for it (its PSNR, not extrapolated); 1% off does not.
    assert psnr_at([(0.0500064, 29.0)], 0.05) == pytest.approx(29.0)
    assert psnr_at([(0.0505, 29.0)], 0.05) is None and psnr_at(pts, 1.004) == pytest.approx(34.0)


def test_clean_curve_sorts_averages_ties_and_drops_lossless():
    x, y = clean_curve([(1.0, 30.0), (0.5, 28.0), (1.0, 32.0), (4.0, None), (2.0, math.inf)])
    assert np.allclose(np.exp(x), [0.5, 1.0]) and np.allclose(y, [28.0, 31.0])


def test_mean_psnr_at_needs_every_image():
    a = [(0.25, 28.0), (1.0, 34.0)]
    b = [(0.5, 30.0), (2.0, 36.0)]
    assert mean_psnr_at([a, b], 0.5) == pytest.approx((31.0 + 30.0) / 2)
    assert mean_psnr_at([a, b], 0.3) is None  # b does not reach 0.3 bpp


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("factor", [0.8, 1.0, 1.37])
def test_bd_rate_of_a_curve_shifted_by_a_rate_factor_is_that_factor(method, factor):
    anchor = curve(wavy, BPPS)
    test = [(b * factor, p) for b, p in anchor]
    assert bd_rate(anchor, test, method) == pytest.approx((factor - 1) * 100, abs=1e-9)
    assert bd_rate(test, anchor, method) == pytest.approx((1 / factor - 1) * 100, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_bd_psnr_of_a_curve_shifted_by_a_constant_is_that_constant(method):
    anchor = curve(wavy, BPPS)
    test = [(b, p + 1.25) for b, p in anchor]
    assert bd_psnr(anchor, test, method) == pytest.approx(1.25, abs=1e-9)
    assert bd_rate(anchor, test, method) < 0  # better quality at every rate: fewer bits for the same PSNR


@pytest.mark.parametrize("method", METHODS)
def test_bd_over_the_overlap_only(method):
    # anchor: psnr = 30 + 10 ln(bpp); test: psnr = 33 + 5 ln(bpp) -- straight lines, so every method is exact.
    anchor = curve(lambda b: 30 + 10 * math.log(b), np.geomspace(0.1, 2.0, 7))
    test = curve(lambda b: 33 + 5 * math.log(b), np.geomspace(0.5, 4.0, 7))
    # BD-PSNR: mean of (33 + 5x) - (30 + 10x) over x in [ln 0.5, ln 2], whose mean x is 0 -> +3 dB.
    assert bd_psnr(anchor, test, method) == pytest.approx(3.0, abs=1e-9)
    # BD-rate: ln R_test(p) - ln R_anchor(p) = (p - 33)/5 - (p - 30)/10 = p/10 - 3.6 over the shared PSNRs.
    lo, hi = 33 + 5 * math.log(0.5), 30 + 10 * math.log(2.0)
    expected = (math.exp((lo + hi) / 2 / 10 - 3.6) - 1) * 100
    assert bd_rate(anchor, test, method) == pytest.approx(expected, abs=1e-9)


def test_bd_is_none_without_overlap_or_points():
    a = curve(wavy, [0.1, 0.2, 0.3, 0.4])
    b = curve(wavy, [1.0, 2.0, 3.0, 4.0])
    assert bd_rate(a, b) is None and bd_psnr(a, b) is None
    assert bd_psnr(a, a[:1]) is None  # one point is not a curve
    assert bd_psnr(a, a[:3], "cubic") is None  # a cubic needs four
    with pytest.raises(ValueError):
        bd_rate(a, a, "spline")


def test_pchip_interpolates_the_knots_and_keeps_monotone_data_monotone():
    x = np.array([0.0, 1.0, 1.5, 4.0, 4.2])
    y = np.array([0.0, 0.1, 3.0, 3.1, 8.0])
    assert np.allclose(pchip(x, y, x), y)
    t = np.linspace(0, 4.2, 500)
    assert np.all(np.diff(pchip(x, y, t)) >= -1e-12)  # a cubic spline would overshoot here
    assert np.allclose(pchip(x[:2], y[:2], np.array([0.5])), [0.05])  # two points: a line


def test_mean_delta_averages_images_and_refuses_a_missing_overlap():
    anchor = curve(wavy, BPPS)
    tests = [[(b * 0.9, p) for b, p in anchor], [(b * 0.7, p) for b, p in anchor]]
    assert mean_delta([anchor, anchor], tests, "rate") == pytest.approx(-20.0)
    assert mean_delta([anchor, anchor], [[(b, p + 1) for b, p in anchor]] * 2, "psnr") == pytest.approx(1.0)
    assert mean_delta([anchor, anchor], [tests[0], []], "rate") is None
