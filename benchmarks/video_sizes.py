"""Video block sizes: one clip encoded at a few ``--bpp`` rates with a video preset changed by overrides.

Each run names a variant and gives its changes to the preset as JSON (``model`` / ``fit`` /
``quant`` / ``tile`` fields, ``chunk``: frames per block, ``max_width``: the widest network the rate
may choose, ``bits_per_parameter``: the rate rule's target, ``motion``: ``"global"`` to fit along the
camera path, ``block_sizes``: ``"pilot"`` for a network size per block); the rates share one fit through a fit cache
(``--cache DIR/NAME``). Prints and appends one JSON line per rate (bpp, mean per-frame PSNR, seconds,
blocks) to ``--out``. Used for the size sweep of benchmarks/README.md ("Video blocks sized by the rate")::

    python benchmarks/video_sizes.py clip.mp4 w40_c120 '{"chunk": 120, "model": {"width": 40}}' \\
        0.06,0.1,0.16 --out benchmarks/results/video_sizes_cpu.jsonl

A first 32 or 64 frames of a clip: cut them losslessly first (``loe bench --frames`` does the
same for its codecs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from loe_codec import video  # noqa: E402
from loe_codec.bench.machine import code_version  # noqa: E402


def variant(preset: str, changes: dict) -> tuple[video.VideoConfig, int | None]:
    """The preset with ``changes`` applied, and the chunk asked for (None: the preset's / the rate's)."""
    base = video.video_preset(preset)
    codec = base.codec
    parts = {name: dataclasses.replace(getattr(codec, name), **{k: tuple(v) if isinstance(v, list) else v
                                                                 for k, v in changes.get(name, {}).items()})
             for name in ("model", "fit", "quant", "tile")}
    top = {k: changes[k] for k in ("max_width", "bits_per_parameter", "motion", "block_sizes") if k in changes}
    return dataclasses.replace(base, codec=dataclasses.replace(codec, **parts), **top), changes.get("chunk")


class ProgressLog:
    """A stage-progress callback that prints ``stage done/total`` and the seconds so far, every 2% of a stage."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.last: dict[str, int] = {}

    def __call__(self, stage: str, done: float, total: float) -> None:
        bucket = int(50 * done / total) if total else 50  # fiftieths: 2% each
        if bucket > self.last.get(stage, -1):
            self.last[stage] = bucket
            print(f"{stage} {done:.0f}/{total:.0f} {time.perf_counter() - self.t0:.0f}s", file=sys.stderr,
                  flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source")
    ap.add_argument("name", help="the variant's name (also its fit cache folder)")
    ap.add_argument("changes", help='JSON: {"model": {...}, "fit": {...}, "quant": {...}, "tile": {...}, '
                                       '"chunk": N, "max_width": W, "bits_per_parameter": B, "motion": "global", '
                                       '"block_sizes": "pilot"}')
    ap.add_argument("bpp", help="comma-separated rates, bits per pixel per frame")
    ap.add_argument("--preset", default="video")
    ap.add_argument("--cache", default="video_sizes_cache", help="folder of the fit caches")
    ap.add_argument("--work", default=".", help="folder for the .loe files (made if missing)")
    ap.add_argument("--out", help="append the JSON lines here")
    ap.add_argument("--progress", action="store_true", help="print each stage's progress to stderr every 2%%")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    Path(args.work).mkdir(parents=True, exist_ok=True)
    config, chunk = variant(args.preset, json.loads(args.changes))
    code = code_version()  # the code this process loaded (the tree may change while a long run goes on)
    for bpp in (float(b) for b in args.bpp.split(",")):
        t0 = time.perf_counter()
        cache = Path(args.cache) / args.name
        # A run that took up earlier fits or snapshots (a killed run started again) says so: its seconds are
        # this process's only.
        found = {"batches": len([f for f in cache.glob("batch-*.pt") if not f.name.endswith(".partial.pt")]),
                 "snapshots": len(list(cache.glob("batch-*.partial.pt")))}
        result = video.encode_video(args.source, Path(args.work) / f"{args.name}_{bpp}.loe", config=config, bpp=bpp,
                                    chunk=chunk, device="cpu", cache_dir=cache,
                                    progress=ProgressLog() if args.progress else None)
        with video.LoeVideo(result.path) as clip:
            info = clip.info()
        line = {"variant": args.name, "changes": json.loads(args.changes), "source": args.source, "bpp": bpp,
                "file_bpp": round(result.bpp, 4), "psnr": round(result.psnr, 3), "blocks": result.blocks,
                "chunk": info["blocks"]["chunk_frames"], "width": info["model"]["width"],
                "parameters_per_block": info["model"]["parameters_per_block"],
                "seconds": round(time.perf_counter() - t0, 1), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                     time.gmtime()),
                "threads": torch.get_num_threads(), "code": code, "cache_at_start": found}
        print_and_append(line, args.out)


def print_and_append(line: dict, out: str | None) -> None:
    """Print one JSON result line, and append it to the file ``out`` if given."""
    print(json.dumps(line), flush=True)
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
