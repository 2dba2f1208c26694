"""The fit's convergence, block by block: a video preset's float fit of some blocks of a clip at a rate,
with every block's mean training PSNR over each window of ``--every`` steps.

The blocks are sized for ``bpp`` as :func:`loe_codec.video.encode_video` sizes them, taken from the
clip's first time chunk (``--blocks``: their indices there, row-major; default all) and fitted together
in one batched model, as the encoder fits a batch, but with no quantization: the trace shows what the
learning-rate schedule does to each network. Used for benchmarks/README.md ("What else was tried at
0.03 bpp, and why twice the steps gave little on the whole clip")::

    python benchmarks/video_fit_trace.py bbb60.mkv 0.03 --preset video-best --blocks 1 --out trace_b1.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loe_codec import fit, video  # noqa: E402
from loe_codec.encode import with_channels  # noqa: E402
from loe_codec.motion import MOTION_CHOICES, camera_path, followed_path  # noqa: E402
from loe_codec.path_coding import on_grid  # noqa: E402
from loe_codec.video_encode import video_batches  # noqa: E402
from loe_codec.video_fit import fit_blocks  # noqa: E402
from loe_codec.video_tiling import SpaceTimeGrid  # noqa: E402
from loe_codec.videoio import VideoSource  # noqa: E402


def sized_blocks(source: VideoSource, config: video.VideoConfig, bpp: float, blocks: list[int] | None):
    """The codec config sized for ``bpp`` and the fit targets of the first chunk's ``blocks``."""
    if config.bits_per_parameter is not None:  # as encode_video does
        config = video.blocks_for_rate(config, source.width, source.height, source.frames, bpp)
    codec = with_channels(config.codec, source.channels)
    grid = SpaceTimeGrid.of(source.width, source.height, source.frames, codec.tile.size, codec.tile.margin,
                            config.time.chunk, config.time.margin)
    path = None if config.motion == "none" else followed_path(
        config.motion, on_grid(camera_path(source.iter_frames())), [grid.time.window(c) for c in grid.time.chunks()])
    chunk_targets = []
    for part, targets in video_batches(source, grid, codec, path):
        if part[0].chunk.index != 0:
            break
        chunk_targets += targets
    chosen = range(len(chunk_targets)) if blocks is None else blocks
    return codec, [chunk_targets[k] for k in chosen]


def trace(codec, targets, every: int) -> list[dict]:
    """Fit ``targets`` with ``codec``'s model and fit; one row per ``every`` steps (the mean training PSNR
    of every block over those steps, the learning rate at their end, each block's rollbacks by the fit's
    spike guard so far, the seconds so far)."""
    rows, total, seen = [], None, 0
    started = time.perf_counter()
    step = fit.FitLoop.step

    def traced(loop, i):
        nonlocal total, seen
        loss = step(loop, i)
        total = loop.tile_loss.clone() if total is None else total + loop.tile_loss
        seen += 1
        if (i + 1) % every == 0 or i + 1 == loop.fit_cfg.steps:
            rows.append({"step": i + 1, "lr": fit.learning_rate(i, loop.fit_cfg),
                         "psnr": [round(-10 * math.log10(float(v)), 3) for v in (total / seen).cpu()],
                         "rollbacks": loop.guard.rollbacks.tolist(),
                         "seconds": round(time.perf_counter() - started, 1)})
            total, seen = None, 0
        return loss

    fit.FitLoop.step = traced
    try:
        fit_blocks(codec.model, codec.fit, targets, "cpu")
    finally:
        fit.FitLoop.step = step
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source")
    ap.add_argument("bpp", type=float, help="the rate the blocks are sized for (bits per pixel per frame)")
    ap.add_argument("--preset", default="video-best")
    ap.add_argument("--motion", choices=MOTION_CHOICES, help="fit along the camera path or not, or where it "
                                                                        "pans (default: the preset's)")
    ap.add_argument("--steps", type=int, help="fit steps (default: the preset's)")
    ap.add_argument("--blocks", help="comma-separated block indices of the first chunk (default: all)")
    ap.add_argument("--every", type=int, default=500, help="steps per trace row")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="write the trace here (JSON)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    config = video.video_preset(args.preset).with_overrides(steps=args.steps, motion=args.motion)
    blocks = None if args.blocks is None else [int(b) for b in args.blocks.split(",")]
    codec, targets = sized_blocks(VideoSource(args.source), config, args.bpp, blocks)
    rows = trace(codec, targets, args.every)
    result = {"source": args.source, "bpp": args.bpp, "preset": args.preset, "motion": config.motion,
              "followed_path": targets[0].shift is not None,
              "blocks": args.blocks,
              "width": codec.model.width, "steps": codec.fit.steps, "learning_rate": codec.fit.learning_rate,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "trace": rows}
    text = json.dumps(result)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
