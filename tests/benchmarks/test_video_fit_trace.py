"""The per-block convergence trace of benchmarks/video_fit_trace.py."""

from __future__ import annotations

import math

from loe_codec import fit
from loe_codec.video import video_preset
from loe_codec.videoio import VideoSource
from support import SAMPLES, load_script


def test_trace_reports_each_chosen_block_every_window():
    script = load_script("benchmarks/video_fit_trace.py")
    config = video_preset("video").with_overrides(steps=7)
    codec, targets = script.sized_blocks(VideoSource(SAMPLES / "carphone_12f.mp4"), config, 0.05, [0])
    assert len(targets) == 1 and codec.model.out_channels == 3
    assert codec.model.width < config.codec.model.width  # sized for the rate, as encode_video sizes it
    step = fit.FitLoop.step
    rows = script.trace(codec, targets, every=3)
    assert fit.FitLoop.step is step  # put back
    assert [r["step"] for r in rows] == [3, 6, 7]
    assert all(len(r["psnr"]) == 1 and math.isfinite(r["psnr"][0]) for r in rows)
    assert all(r["rollbacks"] == [0] for r in rows)
    assert [r["lr"] for r in rows] == [fit.learning_rate(s - 1, codec.fit) for s in (3, 6, 7)]
