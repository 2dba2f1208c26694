"""Per-image BD-rate / BD-PSNR between one codec's curves in two `loe bench` JSONs (e.g. before and
after a codec change), plus the same for a classical anchor found in the second run.

    python benchmarks/compare_runs.py BEFORE.json AFTER.json [--codec loe] [--anchor jpeg] [--method pchip]

Prints a Markdown table: per image the points of both runs, BD of AFTER vs BEFORE (over the PSNR /
rate interval both cover), and BD of each run vs the anchor; then the means.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loe_codec.bench.rd import bd_psnr, bd_rate  # noqa: E402


def curve(run: dict, codec: str, image: str) -> list[tuple[float, float]]:
    return sorted((r["bpp"], r["psnr"]) for r in run["results"]
                  if r["codec"] == codec and r["image"] == image and r.get("psnr") is not None)


def fmt(v: float | None, unit: str) -> str:
    return "n/a" if v is None else f"{v:+.1f}%" if unit == "%" else f"{v:+.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--codec", default="loe")
    ap.add_argument("--anchor", default="jpeg")
    ap.add_argument("--method", default="pchip", choices=("pchip", "cubic"))
    args = ap.parse_args()
    before, after = (json.loads(Path(p).read_text()) for p in (args.before, args.after))
    images = [i for i in after["images"] if curve(before, args.codec, i) and curve(after, args.codec, i)]
    sums = {k: [] for k in ("rate", "psnr", "before_anchor", "after_anchor")}
    print(f"| image | before (bpp, dB) | after (bpp, dB) | BD-rate after vs before | BD-PSNR | "
          f"BD-rate vs {args.anchor}: before | after |")
    print("|---|---|---|---|---|---|---|")
    for image in images:
        b, a = curve(before, args.codec, image), curve(after, args.codec, image)
        anchor = curve(after, args.anchor, image)
        values = {"rate": bd_rate(b, a, args.method), "psnr": bd_psnr(b, a, args.method),
                  "before_anchor": bd_rate(anchor, b, args.method), "after_anchor": bd_rate(anchor, a, args.method)}
        for k, v in values.items():
            sums[k].append(v)
        pts = lambda c: " ".join(f"({x:.3f}, {y:.2f})" for x, y in c)  # noqa: E731
        print(f"| {image} | {pts(b)} | {pts(a)} | {fmt(values['rate'], '%')} | {fmt(values['psnr'], 'dB')} | "
              f"{fmt(values['before_anchor'], '%')} | {fmt(values['after_anchor'], '%')} |")
    mean = {k: (sum(v) / len(v) if v and None not in v else None) for k, v in sums.items()}
    print(f"| mean | | | {fmt(mean['rate'], '%')} | {fmt(mean['psnr'], 'dB')} | "
          f"{fmt(mean['before_anchor'], '%')} | {fmt(mean['after_anchor'], '%')} |")


if __name__ == "__main__":
    main()
