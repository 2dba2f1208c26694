"""Weights coded against the tile's seeded initialisation (format 3) vs the weights themselves (format 2).

The same fits (one fit cache per image, shared by every setting), each quality coded both ways:
the steps, fine-tuning and sizes differ only by the reference. Writes JSON and Markdown.

Example::

    python benchmarks/reference_coding.py --data ../shared/data/kodak --images kodim23,kodim05 \\
        --qualities 20,35,50,70 --out benchmarks/results/reference_coding_cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
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
from loe_codec.bench.rd import bd_psnr, bd_rate
from loe_codec.config import preset, slope_for_quality

REFERENCES = ("seeded-uniform-1", "none")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--images", required=True, help="comma-separated names without extension")
    parser.add_argument("--preset", default="balanced")
    parser.add_argument("--qualities", default="20,35,50,70")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.images.split(","):
            for q in (int(v) for v in args.qualities.split(",")):
                for ref in REFERENCES:
                    base = preset(args.preset)
                    cfg = dataclasses.replace(base, quant=dataclasses.replace(base.quant, reference=ref))
                    cfg = cfg.with_overrides(slope=slope_for_quality(q))
                    started = time.perf_counter()
                    r = loe_codec.encode(args.data / f"{name}.png", Path(tmp) / f"{name}_{q}_{ref}.loe", config=cfg,
                                         device="cpu", cache_dir=Path(tmp) / f"fits-{name}")
                    rows.append({"image": name, "quality": q, "reference": ref, "bytes": r.bytes, "bpp": r.bpp,
                                 "psnr": r.psnr, "seconds": time.perf_counter() - started})
                    print(json.dumps(rows[-1]), flush=True)
    write(args, rows)
    return 0


def write(args: argparse.Namespace, rows: list[dict]) -> None:
    meta = {"date": datetime.date.today().isoformat(), "command": "python " + shlex.join(sys.argv),
            "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread, CPU",
            "preset": args.preset}
    summary = {}
    for name in dict.fromkeys(r["image"] for r in rows):
        curves = {ref: sorted((r["bpp"], r["psnr"]) for r in rows if r["image"] == name and r["reference"] == ref)
                  for ref in REFERENCES}
        saved = [1 - a["bytes"] / b["bytes"] for a, b in zip(
            (r for r in rows if r["image"] == name and r["reference"] == REFERENCES[0]),
            (r for r in rows if r["image"] == name and r["reference"] == REFERENCES[1]))]
        summary[name] = {"bd_rate": bd_rate(curves["none"], curves[REFERENCES[0]]),
                         "bd_psnr": bd_psnr(curves["none"], curves[REFERENCES[0]]),
                         "bytes_saved_min": min(saved), "bytes_saved_max": max(saved)}
    args.out.write_text(json.dumps({**meta, "rows": rows, "summary": summary}, indent=1))
    lines = [f"{meta['date']}, {meta['machine']}", "", f"`{meta['command']}`", "",
             "| image | quality | reference | bytes | bpp | PSNR |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['image']} | {r['quality']} | {r['reference']} | {r['bytes']} | {r['bpp']:.3f} | {r['psnr']:.2f} |"
              for r in rows]
    lines += ["", "| image | bytes saved at equal quality setting | BD-rate vs no reference | BD-PSNR |",
              "|---|---|---|---|"]
    lines += [f"| {n} | {s['bytes_saved_min']:.1%} - {s['bytes_saved_max']:.1%} | {s['bd_rate']:+.1f}% | "
              f"{s['bd_psnr']:+.2f} dB |" for n, s in summary.items()]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
