"""--psnr targets on Kodak images with cached fits: the PSNR reached and the bits spent.

    python benchmarks/psnr_target.py DATA_DIR --cache FIT_CACHE kodim23:28,31,33 kodim05:21,23

`balanced` preset, one thread; prints one JSON line per encode (image, target, PSNR of the written
file, bpp, units kept per tile, notes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import loe_codec  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("jobs", nargs="+", help="IMAGE:PSNR,PSNR,...")
    ap.add_argument("--cache", required=True)
    ap.add_argument("--preset", default="balanced")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "x.loe"
        for job in args.jobs:
            image, targets = job.split(":")
            for target in (float(t) for t in targets.split(",")):
                r = loe_codec.encode(Path(args.data) / f"{image}.png", out, args.preset, psnr=target, device="cpu",
                                     cache_dir=args.cache)
                print(json.dumps({"image": image, "target": target, "psnr": r.psnr, "bpp": r.bpp,
                                  "units": loe_codec.info(out).get("units_kept"), "notes": list(r.notes)}), flush=True)


if __name__ == "__main__":
    main()
