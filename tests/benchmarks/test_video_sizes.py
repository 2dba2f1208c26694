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


def test_a_run_records_its_code_threads_and_what_the_cache_held(tmp_path, monkeypatch):
    import json
    import sys

    from support import SAMPLES

    sizes = load_script("benchmarks/video_sizes.py")
    changes = '{"fit": {"steps": 4, "samples_per_tile": 64}, "model": {"width": 8}, "quant": {"qat_steps": 0}}'
    out = tmp_path / "runs.jsonl"
    argv = ["video_sizes.py", str(SAMPLES / "carphone_12f.mp4"), "tiny", changes, "1.0", "--preset", "video-fast",
            "--cache", str(tmp_path / "cache"), "--work", str(tmp_path / "files"), "--out", str(out)]  # made
    for _ in range(2):
        monkeypatch.setattr(sys, "argv", argv)
        sizes.main()
    first, second = (json.loads(line) for line in out.read_text().splitlines())
    assert first["cache_at_start"] == {"batches": 0, "snapshots": 0}
    assert second["cache_at_start"]["batches"] >= 1  # the second run took up the first's fits
    assert first["threads"] >= 1 and first["code"]
    assert first["psnr"] == second["psnr"] and (tmp_path / "files" / "tiny_1.0.loe").is_file()


def test_code_version_is_the_checkouts_commit_or_unknown(tmp_path):
    import subprocess

    from loe_codec.bench.machine import ROOT, code_version

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode == 0:
        assert code_version().split("+")[0] == head.stdout.strip()
    assert code_version(tmp_path) == "unknown"
