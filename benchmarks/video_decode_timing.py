"""Partial video decode: 10 frames of a 320x160 region against the full decode, blocks read and seconds.

Encodes the first ``--frames`` frames of a video with a cheap config (the timing
does not depend on how well the blocks are fitted, only on their count and
size; the preset's ``--motion`` choice is kept, so a panning clip is timed along its camera path),
then times both decodes on a freshly opened file each:

    python benchmarks/video_decode_timing.py /work/shared/data/video/bigbuckbunny.mp4 --frames 60

Writes ``benchmarks/results/video_decode_timing.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from loe_codec.video import LoeVideo, encode_video  # noqa: E402
from video import cut_reference  # noqa: E402


def timed_decode(path: Path, **selection) -> dict:
    with LoeVideo(path) as clip:
        started = time.perf_counter()
        frames = 0
        for _ in clip.iter_frames(device="cpu", **selection):
            frames += 1
        seconds = time.perf_counter() - started
        return {"selection": {k: v for k, v in selection.items()}, "frames": frames, "seconds": round(seconds, 3),
                "blocks_read": len(set(clip.reader.blocks_read)), "blocks_total": len(clip.grid)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--preset", default="video")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ref = cut_reference(args.video, Path(tmp) / "ref.mkv", args.frames)
        out = Path(tmp) / "clip.loe"
        enc = encode_video(ref.path, out, args.preset, steps=args.steps, device="cpu", measure_psnr=False)
        x, y = (ref.width - 320) // 2, (ref.height - 160) // 2
        part = timed_decode(out, frames=(20, 30), region=(x, y, 320, 160))
        full = timed_decode(out)
        with LoeVideo(out) as clip:
            format_version = clip.info()["format_version"]
    report = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                          "torch_threads": torch.get_num_threads()},
              "video": args.video, "width": ref.width, "height": ref.height, "frames": ref.frames,
              "preset": args.preset, "steps": args.steps, "blocks": enc.blocks, "bytes": enc.bytes,
              "motion": enc.motion, "format_version": format_version,
              "region_decode": part, "full_decode": full,
              "speedup": round(full["seconds"] / part["seconds"], 1)}
    path = ROOT / "benchmarks" / "results" / "video_decode_timing.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
