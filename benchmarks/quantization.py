"""Where the bits go and what quantization costs: float vs coded networks, entropy coders compared.

For every image: fit the preset's networks once (``--cache`` keeps the fits), then measure by
full decodes at scale 1:

* the float networks' PSNR (no quantization at all);
* format 1's raw int8 weights (bytes and PSNR), the baseline the entropy coder must beat;
* for every slope: bytes and PSNR of the coded file without and with the quantization-aware
  fine-tuning, and the bytes the integers would take as raw int8/int16 compressed by zstd
  (level 19) or brotli (quality 11) per tile instead of the range coder.

Example::

    python benchmarks/quantization.py --data ../shared/data/kodak --images kodim05,kodim23 \\
        --slopes 1e-4,1e-3,1e-2 --out benchmarks/results/quantization_cpu.json --cache /tmp/fits
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save

from loe_codec import entropy
from loe_codec.config import QuantConfig, preset
from loe_codec.container import Header, overhead_bytes
from loe_codec.encode import BlobSource, finish_batch, fit_batches, make_header, measure, tile_targets, \
    with_channels
from loe_codec.fitted import batch_steps, pack_batch
from loe_codec.fitcache import FitCache
from loe_codec.imageio import ImageSource
from loe_codec.quantize import dequantize_weight, quantize_weight
from loe_codec.tileblob import int8_bytes
from loe_codec.tiling import TileGrid


class FloatSource:
    """The fitted float networks of one batch, readable like a file."""

    def __init__(self, config, model):
        self.config, self.model = config, model

    def read_tile(self, index):
        return [w[index].detach() for w in self.model.weights], [b[index].detach() for b in self.model.biases]


class Int8Source(FloatSource):
    """The same networks as format 1 stored them: int8 with a float16 scale per (bank, output)."""

    def read_tile(self, index):
        q = QuantConfig(scheme="int8")
        return ([dequantize_weight(quantize_weight(w[index].detach(), q)) for w in self.model.weights],
                [b[index].detach().half().float() for b in self.model.biases])


def general_purpose_bytes(batch, slope: float) -> dict:
    """Bytes of the batch's integers at ``slope`` as raw int8/int16 per tile, zstd'ed and brotli'd."""
    import brotli
    import zstandard

    steps = batch_steps(batch, slope)
    out = {"raw": 0, "zstd19": 0, "brotli11": 0, "range_coder": 0}
    integers = batch.integers(steps)
    for k in range(len(batch.tiles)):
        ints = [q[k].numpy().astype(np.int32) for q in integers]
        dtype = np.int8 if max(int(np.abs(a).max()) for a in ints) < 128 else np.int16
        raw = b"".join(a.astype(dtype).tobytes() for a in ints)
        out["raw"] += len(raw)
        out["zstd19"] += len(zstandard.ZstdCompressor(level=19).compress(raw))
        out["brotli11"] += len(brotli.compress(raw, quality=11))
        out["range_coder"] += entropy.encode(ints, [entropy.model_for(a) for a in ints]).nbytes
    return out


def run_image(path: Path, config, slopes: list[float], cache: FitCache | None) -> dict:
    image = ImageSource(path)
    config = with_channels(config, image.channels)
    grid = TileGrid(image.width, image.height, config.tile.size, config.tile.margin)
    pixels = image.width * image.height
    started = time.perf_counter()
    batches = [b for b, _ in fit_batches(image, grid, config, "cpu", cache=cache)]
    fit_s = time.perf_counter() - started
    if len(batches) != 1:
        raise SystemExit(f"{path}: one batch per image expected (raise tiles_per_batch)")
    batch = batches[0]
    header = overhead_bytes(make_header(image, config, {"psnr": 99.9999}))
    int8_cfg = dataclasses.replace(config, quant=QuantConfig(scheme="int8"))
    v1_meta = Header(make_header(image, int8_cfg).source, int8_cfg, [0] * len(grid), {"psnr": 99.9999},
                     version=1).to_json()
    v1_tensors = {f"tile.{k}": torch.zeros(int8_bytes(int8_cfg), dtype=torch.uint8) for k in range(len(grid))}
    v1_size = len(save(v1_tensors, metadata={"loe": v1_meta}))  # format 1, exactly
    row = {
        "image": path.name, "tiles": len(grid), "fit_s": round(fit_s, 1),
        "float_psnr": measure(FloatSource(config, batch.model), grid, image, "cpu").psnr(),
        "int8_v1": {"bpp": v1_size * 8 / pixels,
                    "psnr": measure(Int8Source(config, batch.model), grid, image, "cpu").psnr()},
        "slopes": [],
    }
    for slope in slopes:
        cfg = config.with_overrides(slope=slope)
        blobs = pack_batch(batch, slope, cfg)
        plain = {"bpp": (sum(b.size for b in blobs) + header) * 8 / pixels,
                 "psnr": measure(BlobSource(cfg, blobs), grid, image, "cpu").psnr()}
        tuned = copy.deepcopy(batch)
        blobs = finish_batch(tuned, tile_targets(image, grid, cfg, batch.tiles), cfg, "cpu")
        qat = {"bpp": (sum(b.size for b in blobs) + header) * 8 / pixels,
               "psnr": measure(BlobSource(cfg, blobs), grid, image, "cpu").psnr()}
        row["slopes"].append({"slope": slope, "no_finetune": plain, "finetuned": qat,
                              "integer_bytes": general_purpose_bytes(batch, slope)})
        print(json.dumps({"image": path.name, "slope": slope, "float": round(row["float_psnr"], 3),
                          "plain": plain, "qat": qat}), flush=True)
    return row


def markdown(run: dict) -> str:
    lines = [f"Preset `{run['preset']}`, {run['date']}, {run['machine']}", "", f"`{run['command']}`", "",
             "| image | float dB | int8 (format 1) bpp / dB | slope | coded bpp / dB | + fine-tuning bpp / dB | "
             "range coder / brotli / zstd (integer bytes) |", "|---|---|---|---|---|---|---|"]
    for r in run["images"]:
        for s in r["slopes"]:
            ib = s["integer_bytes"]
            lines.append(f"| {r['image']} | {r['float_psnr']:.2f} | {r['int8_v1']['bpp']:.3f} / "
                         f"{r['int8_v1']['psnr']:.2f} | {s['slope']:g} | {s['no_finetune']['bpp']:.3f} / "
                         f"{s['no_finetune']['psnr']:.2f} | {s['finetuned']['bpp']:.3f} / {s['finetuned']['psnr']:.2f} "
                         f"| {ib['range_coder']} / {ib['brotli11']} / {ib['zstd19']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of images")
    parser.add_argument("--images", required=True, help="comma-separated names without extension")
    parser.add_argument("--preset", default="balanced")
    parser.add_argument("--slopes", default="1e-4,1e-3,1e-2")
    parser.add_argument("--out", type=Path, required=True, help="results JSON (a .md is written beside it)")
    parser.add_argument("--cache", type=Path, help="folder keeping the fits between runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = preset(args.preset)
    cache = FitCache(args.cache) if args.cache else None
    slopes = [float(s) for s in args.slopes.split(",")]
    rows = [run_image(args.data / f"{name}.png", config, slopes, cache) for name in args.images.split(",")]
    run = {"preset": args.preset, "date": datetime.date.today().isoformat(),
           "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread",
           "command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "images": rows}
    args.out.write_text(json.dumps(run, indent=1))
    args.out.with_suffix(".md").write_text(markdown(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
