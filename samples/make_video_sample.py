"""Cut the tiny test clip ``samples/carphone_12f.mp4`` from the shared carphone sequence.

The first 12 frames of ``carphone_pristine.mp4`` (176x144, 29.97 fps), downscaled
to 88x72 (area filter) and re-encoded with libx264 (CRF 12, yuv420p):

    python samples/make_video_sample.py /work/shared/data/video/carphone_pristine.mp4
"""

import sys
from pathlib import Path

import av

FRAMES, WIDTH, HEIGHT = 12, 88, 72


def main(src: str, dst: str = str(Path(__file__).with_name("carphone_12f.mp4"))) -> None:
    with av.open(src) as inp, av.open(dst, "w") as out:
        stream_in = inp.streams.video[0]
        stream = out.add_stream("libx264", rate=stream_in.average_rate)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "12", "preset": "medium"}
        for k, frame in enumerate(inp.decode(stream_in)):
            if k == FRAMES:
                break
            small = frame.reformat(width=WIDTH, height=HEIGHT, format="yuv420p", interpolation="AREA")
            small.pts, small.time_base = k, 1 / stream_in.average_rate
            for packet in stream.encode(small):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


if __name__ == "__main__":
    main(*sys.argv[1:])
