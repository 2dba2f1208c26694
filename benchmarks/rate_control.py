"""Rate control accuracy: ``--bpp`` and ``--psnr`` targets against what the written files measure.

For every image and target, encodes through :func:`loe_codec.encode` (a real `.loe` file, its
PSNR from a full decode) and records the target, the achieved bpp and PSNR, and the error. A
``--cache`` folder shares one fit per image between the targets (and with earlier runs keyed the
same way, e.g. a ``loe bench`` fit cache).

Example::

    python benchmarks/rate_control.py --data ../shared/data/kodak --images kodim05,kodim23 \\
        --bpp 0.3,0.5,0.8 --psnr 28,32 --out benchmarks/results/rate_control_cpu.json --cache /tmp/fits
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

import loe_codec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--images", required=True, help="comma-separated names without extension")
    parser.add_argument("--preset", default="balanced")
    parser.add_argument("--bpp", default="", help="comma-separated bpp targets")
    parser.add_argument("--psnr", default="", help="comma-separated PSNR targets (dB)")
    parser.add_argument("--cache", type=Path, help="fit cache folder (kept)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    targets = [("bpp", float(v)) for v in args.bpp.split(",") if v] + \
              [("psnr", float(v)) for v in args.psnr.split(",") if v]
    rows = []
    with tempfile.TemporaryDirectory(prefix="loe-rate-") as tmp:
        cache = args.cache or Path(tmp) / "fits"
        for image in args.images.split(","):
            for kind, value in targets:
                started = time.perf_counter()
                r = loe_codec.encode(args.data / f"{image}.png", Path(tmp) / "x.loe", args.preset, device="cpu",
                                     cache_dir=cache, **{kind: value})
                got = r.bpp if kind == "bpp" else r.psnr
                rows.append({"image": image, "target": kind, "value": value, "bpp": r.bpp, "psnr": r.psnr,
                             "error": (got / value - 1) * 100 if kind == "bpp" else got - value,
                             "slope": loe_codec.info(Path(tmp) / "x.loe")["quantization"]["slope"],
                             "seconds": round(time.perf_counter() - started, 1)})
                print(json.dumps(rows[-1]), flush=True)
    run = {"date": datetime.date.today().isoformat(), "preset": args.preset,
           "machine": f"{platform.machine()}, torch {torch.__version__}, 1 thread, CPU",
           "command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "rows": rows}
    args.out.write_text(json.dumps(run, indent=1))
    lines = [f"{run['date']}, preset `{args.preset}`, {run['machine']}", "", f"`{run['command']}`", "",
             "| image | target | bpp | PSNR | error | slope |", "|---|---|---|---|---|---|"]
    for r in rows:
        err = f"{r['error']:+.2f}%" if r["target"] == "bpp" else f"{r['error']:+.2f} dB"
        lines.append(f"| {r['image']} | {r['target']} {r['value']:g} | {r['bpp']:.4f} | {r['psnr']:.2f} | {err} | "
                     f"{r['slope']:g} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
