"""The crop of benchmarks/video_crop.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from support import load_script

CLIP = Path(__file__).resolve().parents[2] / "samples" / "carphone_12f.mp4"


def test_crop_keeps_the_box_of_the_first_frames(tmp_path):
    from loe_codec.videoio import VideoSource

    script = load_script("benchmarks/video_crop.py")
    out = tmp_path / "crop.mkv"
    assert script.crop(str(CLIP), str(out), 5, (8, 16, 40, 24)) == 5
    source = np.stack(list(VideoSource(CLIP).iter_frames()))[:5, 16:40, 8:48]
    cropped = np.stack(list(VideoSource(out).iter_frames()))
    assert cropped.shape == source.shape == (5, 24, 40, 3)
    assert np.abs(cropped.astype(int) - source).max() <= 3
