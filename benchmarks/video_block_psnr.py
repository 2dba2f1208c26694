"""Mean per-frame PSNR of every spatial block of decoded video `.loe` files against their source clip.

Which blocks hold a clip's error: each spatial tile's core rectangle (the file's own grid; its
blocks cover all frames), named ``rRcC`` (row, column), and the whole frame as ``all`` (the figure
``loe eval`` prints). Frames are decoded and read one at a time. The per-quadrant tables of
benchmarks/README.md (Big Buck Bunny's first 60 frames: 2 x 2 tiles of 640x360 pixels, ``r0c0`` top left)
come from it::

    python benchmarks/video_block_psnr.py bbb60.mkv a.loe b.loe --out blocks.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loe_codec.metrics import psnr_from_mse  # noqa: E402
from loe_codec.video import LoeVideo  # noqa: E402
from loe_codec.videoio import VideoSource  # noqa: E402


def block_psnr(source: str | Path, codec: str | Path, device: str = "cpu") -> dict[str, float]:
    """``{"rRcC": mean per-frame PSNR of that tile's core, ..., "all": of the whole frame}`` (dB)."""
    with LoeVideo(codec) as video:
        src = VideoSource(source)
        if (src.width, src.height, src.frames) != (video.width, video.height, video.frames):
            raise SystemExit(f"{source} is {src.width}x{src.height}, {src.frames} frames; {codec} holds "
                             f"{video.width}x{video.height}, {video.frames} frames")
        boxes = {f"r{t.row}c{t.col}": (slice(t.y0, t.y1), slice(t.x0, t.x1)) for t in video.grid.space.tiles()}
        boxes["all"] = (slice(None), slice(None))
        per_frame: dict[str, list[float]] = {name: [] for name in boxes}
        for decoded, reference in zip(video.iter_frames(device=device), src.iter_frames(), strict=True):
            err = (decoded.astype(np.float64) - reference.astype(np.float64)) ** 2  # [H, W, C]
            for name, (ys, xs) in boxes.items():
                per_frame[name].append(psnr_from_mse(float(err[ys, xs].mean())))
    return {name: float(np.mean(values)) for name, values in per_frame.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="the clip the files were encoded from")
    ap.add_argument("codecs", nargs="+", help="video .loe files")
    ap.add_argument("--out", help="append one JSON line per file here")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    for codec in args.codecs:
        line = json.dumps({"file": codec, "psnr": {k: round(v, 2) for k, v in
                                                   block_psnr(args.source, codec, args.device).items()}})
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
