"""The per-tile choice of model size (unit ladder) on and off, at the same rate targets, on the same fits.

    python benchmarks/unit_ladder.py DATA_DIR --images kodim23 kodim05 --bpp 0.25,0.35,0.5 \\
        --cache FIT_CACHE --out benchmarks/results/unit_ladder_cpu

Each image is fitted once with the `balanced` preset (the fit cache is shared by every encode), then
coded with `--bpp` targets with the preset's unit ladder and with every tile keeping all its units
((1.0,)); real files, full decodes. Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import loe_codec  # noqa: E402
from loe_codec.config import preset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("--images", nargs="+", required=True)
    ap.add_argument("--bpp", default="0.25,0.35,0.5")
    ap.add_argument("--preset", default="balanced")
    ap.add_argument("--cache", required=True, help="fit cache folder (kept: later runs reuse the fits)")
    ap.add_argument("--out", required=True, help="output path without extension")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = preset(args.preset)
    modes = {"ladder": base.quant.unit_ladder, "all units": (1.0,)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for image in args.images:
            src = Path(args.data) / f"{image}.png"
            for bpp in (float(b) for b in args.bpp.split(",")):
                for mode, ladder in modes.items():
                    cfg = dataclasses.replace(base, quant=dataclasses.replace(base.quant, unit_ladder=ladder))
                    out = Path(tmp) / "x.loe"
                    start = time.perf_counter()
                    r = loe_codec.encode(src, out, config=cfg, bpp=bpp, device="cpu", cache_dir=args.cache)
                    info = loe_codec.info(out)
                    row = {"image": image, "target_bpp": bpp, "mode": mode, "bpp": r.bpp, "psnr": r.psnr,
                           "slope": info["quantization"]["slope"], "units_kept": info.get("units_kept"),
                           "seconds": time.perf_counter() - start}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    run = {"command": " ".join(sys.argv), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "torch": torch.__version__,
           "threads": args.threads, "preset": args.preset, "rows": rows}
    Path(args.out + ".json").write_text(json.dumps(run, indent=1))
    lines = [f"# Unit ladder on and off at the same --bpp targets ({args.preset}, fits shared)", "",
             f"`{run['command']}`, {run['date']}, torch {run['torch']}, {args.threads} thread(s)", "",
             "| image | target bpp | all units: bpp, dB | ladder: bpp, dB | gain | tiles by kept fraction |",
             "|---|---|---|---|---|---|"]
    for image in args.images:
        for bpp in (float(b) for b in args.bpp.split(",")):
            pick = {r["mode"]: r for r in rows if r["image"] == image and r["target_bpp"] == bpp}
            a, b = pick["all units"], pick["ladder"]
            kept = b["units_kept"]["tiles_by_fraction"] if b["units_kept"] else {}
            lines.append(f"| {image} | {bpp:g} | {a['bpp']:.4f}, {a['psnr']:.2f} | {b['bpp']:.4f}, {b['psnr']:.2f} | "
                         f"{b['psnr'] - a['psnr']:+.2f} dB | {kept} |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
