"""What moving bits between a clip's blocks would give: a model, fed with measured numbers.

Every block ``i`` of equal size holds equal bits now, at mean squared error ``M_i`` (from its PSNR), and
gains ``s_i`` dB per doubling of its bits near there, so at ``r_i`` times its bits its error is
``M_i * r_i ** -a_i`` with ``a_i = s_i * ln 10 / (10 ln 2)``. Keeping the clip's bits (``sum r_i`` = the
number of blocks), the error summed over the blocks is least where ``a_i M_i r_i ** (-a_i - 1)`` is the
same for every block (solved here by bisection); ``--ratios`` prices a given allocation instead. The
clip's PSNR is taken as the PSNR of the blocks' mean squared error (the codec reports the mean per-frame
PSNR, a little lower where frames differ). Used in benchmarks/README.md ("A network size per block")::

    python benchmarks/video_bit_allocation.py tl=33.14 tr=38.58 bl=36.23 br=36.68 --slope 1.7 \\
        --slope-of tl=2.0 --ratios tl=1.5
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loe_codec.metrics import psnr_from_mse  # noqa: E402

PEAK = 255.0


def mse_of(psnr: float) -> float:
    """The inverse of :func:`loe_codec.metrics.psnr_from_mse` (peak 255)."""
    return PEAK ** 2 / 10 ** (psnr / 10)


def exponent(slope_db: float) -> float:
    """``a`` of ``MSE ~ bits ** -a`` for ``slope_db`` dB per doubling of the bits."""
    return slope_db * math.log(10) / (10 * math.log(2))


def clip_psnr(mses: list[float], exponents: list[float], ratios: list[float]) -> float:
    return psnr_from_mse(sum(m * r ** -a for m, a, r in zip(mses, exponents, ratios)) / len(mses))


def best_ratios(mses: list[float], exponents: list[float]) -> list[float]:
    """The bit ratios (summing to the number of blocks) that minimise the summed error."""
    def ratios_at(lam: float) -> list[float]:  # a M r^(-a-1) = lam
        return [(a * m / lam) ** (1 / (a + 1)) for m, a in zip(mses, exponents)]

    lo, hi = 1e-12, 1e12
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if sum(ratios_at(mid)) > len(mses):
            lo = mid
        else:
            hi = mid
    return ratios_at(math.sqrt(lo * hi))


def pairs(items: list[str], what: str) -> dict[str, float]:
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        if not value:
            raise SystemExit(f"{what}: expected NAME=VALUE, got {item!r}")
        out[name] = float(value)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("blocks", nargs="+", help="NAME=PSNR of each equal-sized block at equal bits")
    ap.add_argument("--slope", type=float, action="append", required=True,
                    help="dB per doubling of a block's bits (repeat to model several slopes)")
    ap.add_argument("--slope-of", nargs="*", default=[], help="NAME=dB per doubling for named blocks")
    ap.add_argument("--ratios", nargs="*", default=[], help="NAME=bit ratio for named blocks: the rest share "
                    "what is left equally")
    args = ap.parse_args()
    psnrs = pairs(args.blocks, "blocks")
    names = list(psnrs)
    mses = [mse_of(psnrs[n]) for n in names]
    own = pairs(args.slope_of, "--slope-of")
    fixed = pairs(args.ratios, "--ratios")
    unknown = (set(own) | set(fixed)) - set(names)
    if unknown:
        raise SystemExit(f"no such block: {', '.join(sorted(unknown))}")
    now = clip_psnr(mses, [0.0] * len(names), [1.0] * len(names))
    for slope in args.slope:
        exps = [exponent(own.get(n, slope)) for n in names]
        best = best_ratios(mses, exps)
        row = {"slope_db_per_doubling": {n: own.get(n, slope) for n in names}, "psnr_now": round(now, 3),
               "best_ratios": {n: round(r, 3) for n, r in zip(names, best)},
               "psnr_best": round(clip_psnr(mses, exps, best), 3)}
        if fixed:
            rest = (len(names) - sum(fixed.values())) / max(1, len(names) - len(fixed))
            ratios = [fixed.get(n, rest) for n in names]
            row["given_ratios"] = {n: round(r, 3) for n, r in zip(names, ratios)}
            row["psnr_given"] = round(clip_psnr(mses, exps, ratios), 3)
        print(json.dumps(row))


if __name__ == "__main__":
    main()
