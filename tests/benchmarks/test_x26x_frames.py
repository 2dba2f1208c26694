"""The per-frame-type bit count of benchmarks/x26x_frames.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from support import load_script

CLIP = Path(__file__).resolve().parents[2] / "samples" / "carphone_12f.mp4"


def _clip() -> tuple[np.ndarray, float]:
    from loe_codec.videoio import VideoSource

    source = VideoSource(CLIP)
    return np.stack(list(source.iter_frames())), float(source.fps)


def test_types_account_for_every_frame_and_byte_and_the_intra_frame_costs_most():
    frames = load_script("benchmarks/x26x_frames.py")
    clip, fps = _clip()
    run = frames.measure(clip, fps, crf=28)
    types = run["types"]
    assert sum(t["frames"] for t in types.values()) == len(clip)
    assert abs(sum(t["bytes_share"] for t in types.values()) - 1) < 1e-3
    assert types["I"]["frames"] == 1  # one keyframe in a 12-frame clip
    assert all(types["I"]["bpp"] > t["bpp"] for k, t in types.items() if k != "I")
    assert 20 < run["psnr"] < 60


def test_a_still_clip_puts_nearly_all_its_bytes_in_the_intra_frame(tmp_path):
    import json

    from loe_codec.videoio import VideoSource

    frames = load_script("benchmarks/x26x_frames.py")
    out, still = tmp_path / "still.json", tmp_path / "still.mkv"
    assert frames.main([str(CLIP), "--frames", "8", "--still", "3", "--crf", "28", "--save-clip", str(still),
                        "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["frames"] == 8 and result["still"] == 3
    assert result["runs"][0]["types"]["I"]["bytes_share"] > 0.8
    saved = list(VideoSource(still).iter_frames())
    assert len(saved) == 8 and all((f == _clip()[0][3]).all() for f in saved)
