"""Rate-distortion maths: curves, PSNR at fixed rates, Bjøntegaard deltas.

A *curve* is a sequence of ``(bpp, psnr)`` points of one image coded at
several settings. Rates are always handled in natural log of bpp (BD-rate
does not depend on the base).

* :func:`psnr_at` interpolates a curve linearly in log(bpp) (no extrapolation).
* :func:`bd_rate` / :func:`bd_psnr` are the Bjøntegaard deltas (VCEG-M33) of a
  test curve against an anchor over the interval both curves cover. ``method``
  ``"cubic"`` (the default) fits one cubic polynomial per curve, the original
  VCEG-M33 method (needs >= 4 points; the reference anchors of this project
  were computed so); ``"pchip"`` interpolates each curve with a monotone
  piecewise cubic Hermite spline (Fritsch-Carlson slopes, as
  ``scipy.interpolate.PchipInterpolator``; the JVET common test conditions'
  newer practice), which follows long, dense sweeps without wobbling.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

Curve = Sequence[tuple[float, float]]
METHODS = ("pchip", "cubic")
_GRID = 2001  # samples for integrating the pchip interpolant (trapezoid rule)


def clean_curve(points: Iterable[tuple[float, float | None]]) -> tuple[np.ndarray, np.ndarray]:
    """``(log_bpp, psnr)`` sorted by rate, without non-finite PSNRs; points at equal rate are averaged."""
    pts = [(math.log(b), p) for b, p in points if b > 0 and p is not None and math.isfinite(p)]
    if not pts:
        return np.empty(0), np.empty(0)
    x = np.array([p[0] for p in pts])
    y = np.array([p[1] for p in pts])
    ux, inverse = np.unique(x, return_inverse=True)
    uy = np.bincount(inverse, weights=y) / np.bincount(inverse)
    return ux, uy


SAME_RATE = 0.005  # a curve's end within 0.5% of a rate counts as reaching it (rate control lands that close)


def psnr_at(points: Curve, bpp: float) -> float | None:
    """PSNR of a curve at ``bpp``, linear in log(bpp); ``None`` outside the curve's rates (its ends
    stretched by :data:`SAME_RATE`, so that one point coded at 0.0500 bpp answers for 0.05)."""
    x, y = clean_curve(points)
    t = math.log(bpp)
    if len(x) == 0 or t < x[0] - SAME_RATE or t > x[-1] + SAME_RATE:
        return None
    return float(np.interp(t, x, y))


def mean_psnr_at(curves: Sequence[Curve], bpp: float) -> float | None:
    """Mean over images of :func:`psnr_at`; ``None`` unless every image's curve reaches ``bpp``."""
    values = [psnr_at(c, bpp) for c in curves]
    if not values or any(v is None for v in values):
        return None
    return float(np.mean(values))


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson derivatives at the knots (shape preserving, as scipy's PCHIP)."""
    h = np.diff(x)
    m = np.diff(y) / h
    if len(x) == 2:
        return np.array([m[0], m[0]])
    d = np.zeros_like(y)
    w1 = 2 * h[1:] + h[:-1]
    w2 = h[1:] + 2 * h[:-1]
    same = (np.sign(m[:-1]) * np.sign(m[1:])) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        harmonic = (w1 + w2) / (w1 / m[:-1] + w2 / m[1:])
    d[1:-1] = np.where(same, harmonic, 0.0)
    for end, (h0, h1, m0, m1) in ((0, (h[0], h[1], m[0], m[1])), (-1, (h[-1], h[-2], m[-1], m[-2]))):
        de = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(de) != np.sign(m0):
            de = 0.0
        elif np.sign(m0) != np.sign(m1) and abs(de) > abs(3 * m0):
            de = 3 * m0
        d[end] = de
    return d


def pchip(x: np.ndarray, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Evaluate the PCHIP interpolant of the knots ``(x, y)`` (``x`` strictly increasing) at ``t``."""
    d = _pchip_slopes(x, y)
    k = np.clip(np.searchsorted(x, t, side="right") - 1, 0, len(x) - 2)
    h = x[k + 1] - x[k]
    s = (t - x[k]) / h
    h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
    h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
    return h00 * y[k] + h10 * h * d[k] + h01 * y[k + 1] + h11 * h * d[k + 1]


def _mean_over(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    """Mean value of the curve ``y(x)`` (interpolated by ``method``) over ``[lo, hi]``."""
    if method == "cubic":
        poly = np.polyint(np.polyfit(x, y, 3))
        return float((np.polyval(poly, hi) - np.polyval(poly, lo)) / (hi - lo))
    t = np.linspace(lo, hi, _GRID)
    v = pchip(x, y, t)
    return float(np.sum((v[1:] + v[:-1]) * np.diff(t)) / 2 / (hi - lo))


def _by_psnr(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The curve as log-rate over PSNR: sorted by PSNR, equal PSNRs averaged."""
    uy, inverse = np.unique(y, return_inverse=True)
    return uy, np.bincount(inverse, weights=x) / np.bincount(inverse)


def _delta(anchor: Curve, test: Curve, method: str, over_psnr: bool) -> float | None:
    if method not in METHODS:
        raise ValueError(f"unknown BD method {method!r}; choose one of {', '.join(METHODS)}")
    need = 4 if method == "cubic" else 2
    curves = []
    for pts in (anchor, test):
        x, y = clean_curve(pts)
        if over_psnr:
            x, y = _by_psnr(x, y)  # now x = PSNR, y = log-rate
        if len(x) < need:
            return None
        curves.append((x, y))
    lo = max(c[0][0] for c in curves)
    hi = min(c[0][-1] for c in curves)
    if not hi > lo:
        return None
    (xa, ya), (xt, yt) = curves
    return _mean_over(xt, yt, lo, hi, method) - _mean_over(xa, ya, lo, hi, method)


def bd_rate(anchor: Curve, test: Curve, method: str = "cubic") -> float | None:
    """Bjøntegaard delta rate of ``test`` vs ``anchor`` in percent (negative: ``test`` needs fewer bits).

    Log-rate is interpolated as a function of PSNR and averaged over the PSNR
    interval both curves cover; ``None`` without overlap or with too few points.
    """
    d = _delta(anchor, test, method, over_psnr=True)
    return None if d is None else (math.exp(d) - 1.0) * 100.0


def bd_psnr(anchor: Curve, test: Curve, method: str = "cubic") -> float | None:
    """Bjøntegaard delta PSNR of ``test`` vs ``anchor`` in dB (positive: ``test`` is better).

    PSNR is interpolated as a function of log-rate and averaged over the
    log-rate interval both curves cover; ``None`` without overlap or with too few points.
    """
    return _delta(anchor, test, method, over_psnr=False)


def mean_delta(anchor: Sequence[Curve], test: Sequence[Curve], metric: str = "rate",
               method: str = "cubic") -> float | None:
    """Mean over images of the per-image BD-rate (``metric="rate"``) or BD-PSNR (``"psnr"``).

    ``anchor[i]`` and ``test[i]`` are the curves of image ``i``; ``None`` if any
    image has no delta (no overlap), so a mean never silently drops images.
    """
    fn = bd_rate if metric == "rate" else bd_psnr
    values = [fn(a, t, method) for a, t in zip(anchor, test)]
    if not values or any(v is None for v in values):
        return None
    return float(np.mean(values))
