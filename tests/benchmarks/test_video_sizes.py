"""The video size sweep's overrides (benchmarks/video_sizes.py)."""

from __future__ import annotations

from loe_codec.video import video_preset
from support import load_script


def test_variant_applies_model_chunk_and_max_width():
    sizes = load_script("benchmarks/video_sizes.py")
    base = video_preset("video")
    config, chunk = sizes.variant("video", {"model": {"width": 72, "time_banks": [1, 2, 1, 1, 1]}, "chunk": 120,
                                            "max_width": 72})
    assert chunk == 120 and config.max_width == 72
    assert config.codec.model.width == 72 and config.codec.model.time_banks == (1, 2, 1, 1, 1)
    assert config.codec.fit == base.codec.fit and config.time == base.time
    tiled, _ = sizes.variant("video", {"tile": {"size": 512}})
    assert tiled.codec.tile.size == 512 and tiled.codec.model == base.codec.model
    target, _ = sizes.variant("video", {"bits_per_parameter": 4.0})
    assert target.bits_per_parameter == 4.0 and target.codec == base.codec
    same, no_chunk = sizes.variant("video", {})
    assert same == base and no_chunk is None


def test_progress_log_prints_every_two_percent_and_the_end(capsys):
    log = load_script("benchmarks/video_sizes.py").ProgressLog()
    for done in range(0, 101):
        log("fit", done, 100)
    log("measure", 3, 3)
    lines = capsys.readouterr().err.splitlines()
    fit = [line.split()[1] for line in lines if line.startswith("fit ")]
    assert fit == [f"{d}/100" for d in range(0, 101, 2)]
    assert lines[-1].startswith("measure 3/3 ")
