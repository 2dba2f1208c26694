"""Where x264 (or x265) spends its bits on a clip: its intra frames against the rest, frame by frame.

A coordinate network codes a whole space-time block at once; x264 codes one intra (I) frame and
then only what changes. This encodes a clip as the video benchmark does (PyAV, preset medium,
yuv420p, one CRF per run) and reports, per frame type (I / P / B), the frames, their share of the
bytes, their bits per pixel and their mean PSNR (RGB, 8-bit, against the source)::

    python benchmarks/x26x_frames.py clip.mp4 --frames 60 --crf 33,38 --out benchmarks/results/x264_frames.json

``--still K`` codes frame K held for the clip's length instead (a clip without motion: what the
codecs do with the picture alone); ``--save-clip PATH`` writes the clip coded (FFV1, lossless) for
``loe bench``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


PICTURE_TYPES = {1: "I", 2: "P", 3: "B"}  # libavutil's AVPictureType


def picture_type(kind) -> str:
    """``I`` / ``P`` / ``B`` of a decoded frame's ``pict_type`` (an enum or an int, by PyAV version)."""
    return getattr(kind, "name", None) or PICTURE_TYPES.get(int(kind), str(int(kind)))


def frame_costs(path: str | Path) -> list[tuple[str, int, np.ndarray]]:
    """Every frame of a coded clip in display order: (picture type ``I``/``P``/``B``, bytes of its
    packet, decoded uint8 RGB ``[H, W, 3]``)."""
    import av

    sizes: dict[int, int] = {}
    frames: list[tuple[int, str, np.ndarray]] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.pts is not None:
                sizes[packet.pts] = packet.size
            for frame in packet.decode():
                frames.append((frame.pts, picture_type(frame.pict_type), frame.to_ndarray(format="rgb24")))
    frames.sort(key=lambda f: f[0])
    return [(kind, sizes[pts], pixels) for pts, kind, pixels in frames]


def by_type(costs: list[tuple[str, int, np.ndarray]], reference: np.ndarray) -> dict:
    """Per picture type: frames, share of the bytes, bits per pixel per frame, mean PSNR."""
    from loe_codec.metrics import psnr

    pixels = reference.shape[1] * reference.shape[2]
    total = sum(size for _, size, _ in costs)
    out = {}
    for kind in sorted({k for k, _, _ in costs}):
        picked = [(size, psnr(ref, dec)) for (k, size, dec), ref in zip(costs, reference, strict=True) if k == kind]
        sizes = np.array([s for s, _ in picked], dtype=np.float64)
        out[kind] = {"frames": len(picked), "bytes_share": round(float(sizes.sum() / total), 4),
                     "bpp": round(float(sizes.mean() * 8 / pixels), 4),
                     "psnr": round(float(np.mean([q for _, q in picked])), 2)}
    return out


def measure(reference: np.ndarray, fps: float, crf: int, library: str = "libx264") -> dict:
    """Code ``reference`` ``[F, H, W, 3]`` at one CRF as the video benchmark does; the whole clip and per type."""
    from loe_codec.metrics import psnr
    from loe_codec.videoio import write_video

    options = {"crf": str(crf), "preset": "medium"}
    if library == "libx265":
        options["x265-params"] = "log-level=error"
    with tempfile.TemporaryDirectory(prefix="x26x-frames-") as tmp:
        out = Path(tmp) / "clip.mp4"
        write_video(iter(reference), out, fps, library, options)
        costs = frame_costs(out)
        file_bytes = out.stat().st_size
    frames, height, width = reference.shape[:3]
    return {"crf": crf, "bpp": round(file_bytes * 8 / (width * height * frames), 5),
            "psnr": round(float(np.mean([psnr(r, d) for (_, _, d), r in zip(costs, reference, strict=True)])), 2),
            "types": by_type(costs, reference)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("video")
    parser.add_argument("--frames", type=int, default=None, help="the first N frames only")
    parser.add_argument("--crf", default="33,38", help="CRFs, comma separated")
    parser.add_argument("--library", default="libx264", choices=("libx264", "libx265"))
    parser.add_argument("--still", type=int, default=None, metavar="K", help="frame K held for the clip's length")
    parser.add_argument("--save-clip", default=None, metavar="PATH", help="write the clip coded here (FFV1 .mkv)")
    parser.add_argument("--out", required=True, help="results JSON")
    args = parser.parse_args(argv)

    from loe_codec.videoio import VideoSource

    source = VideoSource(args.video)
    reference = []
    for frame in source.iter_frames():
        if args.frames is not None and len(reference) == args.frames:
            break
        reference.append(frame)
    clip = np.stack(reference)
    if args.still is not None:
        if not 0 <= args.still < len(clip):
            parser.error(f"--still {args.still}: the clip has {len(clip)} frames")
        clip = np.repeat(clip[args.still:args.still + 1], len(clip), axis=0)
    if args.save_clip:
        from loe_codec.videoio import write_video

        write_video(iter(clip), args.save_clip, source.fps, "ffv1")
    runs = [measure(clip, float(source.fps), int(c), args.library) for c in args.crf.split(",")]
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
              "video": args.video, "width": source.width, "height": source.height, "frames": len(clip),
              "still": args.still, "library": args.library, "runs": runs}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for run in runs:
        parts = ", ".join(f"{k}: {v['frames']} frames, {100 * v['bytes_share']:.1f}% of the bytes, "
                          f"{v['bpp']:.3f} bpp, {v['psnr']:.2f} dB" for k, v in run["types"].items())
        print(f"CRF {run['crf']}: {run['bpp']:.4f} bpp, {run['psnr']:.2f} dB; {parts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
