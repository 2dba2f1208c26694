"""Cut a crop of a clip's first frames for quick video experiments (FFV1 in yuv444p: the RGB frames
round-trip to within a step or two of 8 bits, as in the crops measured in benchmarks/README.md)::

    python benchmarks/video_crop.py bbb60.mkv crop.mkv --frames 60 --box 640,180,640,360

``--box X,Y,W,H``: the crop's top-left pixel and size.
"""

from __future__ import annotations

import argparse

import av
import numpy as np


def crop(source: str, out: str, frames: int, box: tuple[int, int, int, int]) -> int:
    """Write the first ``frames`` frames of ``source`` cut to ``box`` (x, y, w, h) to ``out``; returns the
    frames written."""
    x, y, w, h = box
    n = 0
    with av.open(source) as src, av.open(out, "w") as dst:
        stream = src.streams.video[0]
        ffv1 = dst.add_stream("ffv1", rate=stream.average_rate)
        ffv1.width, ffv1.height, ffv1.pix_fmt = w, h, "yuv444p"
        for frame in src.decode(stream):
            if n == frames:
                break
            rgb = np.ascontiguousarray(frame.to_ndarray(format="rgb24")[y:y + h, x:x + w])
            dst.mux(ffv1.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            n += 1
        dst.mux(ffv1.encode())
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--box", required=True, help="X,Y,W,H")
    args = ap.parse_args()
    crop(args.source, args.out, args.frames, tuple(int(v) for v in args.box.split(",")))


if __name__ == "__main__":
    main()
