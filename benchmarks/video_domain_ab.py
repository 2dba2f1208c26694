"""Format 6 against format 7's block domains: blocks of a clip fitted along its camera path, once with their
tiles' domains (format 6: pixels shifted past the edge alias) and once with the domains grown to hold the
shifted pixels (format 7, :meth:`loe_codec.motion.CameraPath.block_domain`). Float fits of the first time
chunk's blocks, one at a time, sized for ``bpp`` as the encoder sizes them; prints and appends one JSON line
per fit (the block's mean training PSNR over the last 2000 steps, its domain) to ``--out``. Used for
benchmarks/README.md ("Motion-compensated coordinates")::

    python benchmarks/video_domain_ab.py bbb60.mkv 0.03 --blocks 0,1,2,3 --steps 16000 --out ab.jsonl
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from loe_codec import video  # noqa: E402
from loe_codec.encode import with_channels  # noqa: E402
from loe_codec.motion import CameraPath, camera_path  # noqa: E402
from loe_codec.path_coding import on_grid  # noqa: E402
from loe_codec.video_encode import video_batches  # noqa: E402
from loe_codec.video_tiling import SpaceTimeGrid  # noqa: E402
from loe_codec.videoio import VideoSource  # noqa: E402
from video_fit_trace import trace  # noqa: E402
from video_sizes import print_and_append  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source")
    ap.add_argument("bpp", type=float, help="the rate the blocks are sized for (bits per pixel per frame)")
    ap.add_argument("--preset", default="video-best")
    ap.add_argument("--blocks", default="0", help="comma-separated block indices of the first chunk")
    ap.add_argument("--steps", type=int, help="fit steps (default: the preset's)")
    ap.add_argument("--out", help="append the JSON lines here")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    source = VideoSource(args.source)
    config = video.blocks_for_rate(video.video_preset(args.preset).with_overrides(steps=args.steps), source.width,
                                   source.height, source.frames, args.bpp)
    codec = with_channels(config.codec, source.channels)
    grid = SpaceTimeGrid.of(source.width, source.height, source.frames, codec.tile.size, codec.tile.margin,
                            config.time.chunk, config.time.margin)
    estimated = on_grid(camera_path(source.iter_frames()))
    for block in (int(b) for b in args.blocks.split(",")):
        for widens in (False, True):
            path = CameraPath(estimated.offsets, widens=widens)
            targets = [t for part, ts in video_batches(source, grid, codec, path) if part[0].chunk.index == 0
                       for t in ts]
            target = targets[block]
            rows = trace(codec, [target], 500)
            line = {"source": args.source, "bpp": args.bpp, "preset": args.preset, "block": block,
                    "steps": codec.fit.steps, "width": codec.model.width, "domain": "grown" if widens else "tile's",
                    "origin": target.origin, "extent": target.extent,
                    "last_2000_psnr": round(sum(r["psnr"][0] for r in rows[-4:]) / len(rows[-4:]), 3),
                    "seconds": rows[-1]["seconds"], "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
            print_and_append(line, args.out)


if __name__ == "__main__":
    main()
