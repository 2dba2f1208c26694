"""``loe bench`` on a video: loe video, its plain-MLP baseline, per-frame images and x264/x265 on the sample clip.

Tiny settings (a few fitting steps, the first 4 frames): the plumbing, not the quality.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from loe_codec.bench.loe import LoeSetting, loe_setting
from loe_codec.config import PRESETS, slope_for_quality
from loe_codec.errors import UsageError

CLIP = Path(__file__).resolve().parents[2] / "samples" / "carphone_12f.mp4"
QUICK = ["-c", "loe,mlp,frames,x264", "-s", "loe=video-fast/4@bpp2", "-s", "mlp=video-fast/4@bpp2",
         "-s", "frames=fast/4@q50", "-s", "x264=20,30,40", "--frames", "2", "--device", "cpu", "--quiet"]


def test_video_bench_end_to_end(tmp_path):
    out = tmp_path / "v.json"
    result = CliRunner().invoke(app, ["bench", str(CLIP), "-o", str(out), *QUICK])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["media"] == "video" and data["image_files"]["carphone_12f"]["frames"] == 2
    assert data["image_files"]["carphone_12f"]["source"] == str(CLIP)  # the clip the cut was made from
    assert "mean of 1 video(s)" in out.with_suffix(".md").read_text()
    assert {r["codec"] for r in data["results"]} == {"loe", "mlp", "frames", "x264"} and len(data["results"]) == 6
    loe_bpp = next(r["bpp"] for r in data["results"] if r["setting"] == "video-fast/4@bpp2")
    assert abs(loe_bpp - 2) < 0.1  # bits per pixel per frame, as the target counts them
    assert all(r["psnr"] > 5 for r in data["results"])
    assert data["summary"]["anchors"] == ["x264"] and "x264" in data["summary"]["codecs"]["loe"]["bd"]
    assert out.with_suffix(".png").stat().st_size > 0 and "BD-rate" in result.stdout
    assert "per-frame PSNR" in out.with_suffix(".md").read_text()


def test_video_bench_cache_keeps_cuts_fits_and_frames_for_a_later_run(tmp_path, monkeypatch):
    cache = tmp_path / "cache"  # made by the run
    first = CliRunner().invoke(app, ["bench", str(CLIP), "-o", str(tmp_path / "a.json"), "--cache", str(cache), *QUICK])
    assert first.exit_code == 0, first.output
    cuts = list((cache / "cuts").glob("*.mkv"))
    frames = [d for d in (cache / "frames").iterdir()]
    fits = sorted((cache / "fits").glob("batch-*.pt"))
    assert len(cuts) == 1 and cuts[0].name.startswith("carphone_12f_2f_") and len(frames) == 1
    assert len(list(frames[0].glob("*.png"))) == 2 and len(fits) == 4  # loe, mlp and each frame's fit
    stamps = {f: f.stat().st_mtime_ns for f in [*cuts, *fits]}

    from loe_codec.fitcache import FitCache

    def no_fitting(*args, **kwargs):
        raise AssertionError("a fit kept in the cache was done again")
    monkeypatch.setattr(FitCache, "store", no_fitting)
    second = CliRunner().invoke(app, ["bench", str(CLIP), "-o", str(tmp_path / "b.json"), "--cache", str(cache),
                                      *QUICK])
    assert second.exit_code == 0, second.output
    assert {f: f.stat().st_mtime_ns for f in stamps} == stamps  # the same cut and fits, untouched
    a, b = (json.loads((tmp_path / n).read_text())["results"] for n in ("a.json", "b.json"))
    assert [(r["codec"], r["bytes"], r["psnr"]) for r in a] == [(r["codec"], r["bytes"], r["psnr"]) for r in b]

    # The source copied again (re-provisioned data: another path, a new modification time), and the cut under
    # the name an earlier loe-codec gave it (of the source's path and time): both found, nothing fitted again.
    from loe_codec.bench.videos import legacy_identity
    copy = tmp_path / "again" / CLIP.name
    copy.parent.mkdir()
    shutil.copyfile(CLIP, copy)
    os.utime(copy, ns=(10**18, 10**18))
    cuts[0].rename(cuts[0].with_name(f"carphone_12f_2f_{legacy_identity(copy)}.mkv"))
    third = CliRunner().invoke(app, ["bench", str(copy), "-o", str(tmp_path / "c.json"), "--cache", str(cache),
                                     *QUICK])
    assert third.exit_code == 0, third.output
    assert sorted((cache / "cuts").glob("*.mkv")) == cuts  # renamed back, not cut again
    c = json.loads((tmp_path / "c.json").read_text())["results"]
    assert [(r["codec"], r["bytes"], r["psnr"]) for r in c] == [(r["codec"], r["bytes"], r["psnr"]) for r in a]


def test_video_bench_shows_the_stages_of_loe_encodes(tmp_path):
    """A measurement that takes hours says how far its fit is, frame by frame for per-frame images."""
    from loe_codec.bench import make_codecs, open_videos, run_bench

    videos = open_videos([CLIP], 2, tmp_path)
    codecs = make_codecs(["loe", "frames"], "cpu", video=True)
    seen = []
    run_bench(videos, codecs, {"loe": ("video-fast/4@bpp2",), "frames": ("fast/4@q50",)}, tmp_path / "v.json",
              points=[2.0], progress=lambda done, total, what: seen.append((done, total, what)))
    assert ("0", "carphone_12f loe video-fast/4@bpp2: fit 100%") in {(str(d), w) for d, t, w in seen}
    assert any(w.startswith("carphone_12f frames fast/4@q50: frame 2/2 fit") for d, t, w in seen)
    assert seen[-1] == (2, 2, "done") and all(c.progress is None for c in codecs)


def test_video_bench_cache_must_be_a_folder_in_an_existing_one(tmp_path):
    for cache, text in ((tmp_path / "no" / "cache", "does not exist"), (CLIP, "not a folder")):
        result = CliRunner().invoke(app, ["bench", str(CLIP), "-o", str(tmp_path / "v.json"), "--cache", str(cache),
                                          *QUICK])
        assert result.exit_code == 2 and text in result.stderr, result.output


@pytest.mark.parametrize("args, text", [
    (["-c", "jpeg"], "unknown video codec"),
    (["-c", "loe", "-s", "loe=balanced"], "unknown setting"),
    (["-c", "x264", "-s", "x264=60"], "CRF"),
])
def test_video_bench_usage_errors(tmp_path, args, text):
    result = CliRunner().invoke(app, ["bench", str(CLIP), "-o", str(tmp_path / "v.json"), *args])
    assert result.exit_code == 2 and text in result.stderr, result.output


def test_bench_refuses_mixed_inputs_and_frames_on_images(tmp_path, crops_dir):
    image = next(crops_dir.iterdir())
    result = CliRunner().invoke(app, ["bench", str(CLIP), str(image), "-o", str(tmp_path / "v.json")])
    assert result.exit_code == 2 and "not both" in result.stderr
    result = CliRunner().invoke(app, ["bench", str(image), "--frames", "3", "-o", str(tmp_path / "v.json")])
    assert result.exit_code == 2 and "videos only" in result.stderr


def test_loe_setting_syntax():
    assert LoeSetting.parse("video/300@bpp0.1", ("video",)) == LoeSetting("video", 300, None, 0.1)
    assert LoeSetting.parse("fast@q40", PRESETS) == LoeSetting("fast", None, 40, None)
    config, bpp = loe_setting("fast/7@q40")
    assert config.fit.steps == 7 and bpp is None
    assert config.quant.slope == pytest.approx(slope_for_quality(40), rel=1e-5)
    for bad in ("fast@q101", "fast/x", "fast/-1", "fast@bpp0", "nonesuch"):
        with pytest.raises(UsageError):
            LoeSetting.parse(bad, PRESETS)


def test_mlp_baseline_of_the_video_preset_has_equal_parameters_at_every_rate():
    """The plain MLP follows the rate like LoE (narrower, wider up to its own max_width): equal parameters."""
    from loe_codec.bench.video_codecs import MLP_LEARNING_RATE, mlp_video_config
    from loe_codec.video import blocks_for_rate, video_preset

    loe = video_preset("video")
    mlp = mlp_video_config(loe)
    assert set(mlp.codec.model.banks) == {1} and mlp.codec.fit.learning_rate == MLP_LEARNING_RATE
    assert mlp.max_width > mlp.codec.model.width
    for bpp in (0.03, 0.06, 0.1, 0.16):
        a, b = (blocks_for_rate(c, 176, 144, 120, bpp) for c in (loe, mlp))
        assert a.time.chunk == b.time.chunk, bpp
        ratio = b.codec.model.parameter_count() / a.codec.model.parameter_count()
        assert 0.9 < ratio <= 1.1, (bpp, ratio)
