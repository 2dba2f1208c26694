"""Rate control of video encodes (--bpp per pixel per frame, --psnr mean per frame, -q): the images' code.

On ``samples/carphone_12f.mp4`` with the tiny 3-D networks of :mod:`test_video` (27 blocks, 40 steps).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from loe_codec.config import slope_for_quality
from loe_codec.errors import UsageError
from loe_codec.video import LoeVideo, encode_video
from test_video import CLIP, FAST_VIDEO, tiny_video_config


def _encode(tmp_path, name: str, **rate):
    return encode_video(CLIP, tmp_path / f"{name}.loe", config=tiny_video_config(), device="cpu", **rate)


@pytest.mark.parametrize("bpp", [1.5, 3.0])
def test_bpp_target_lands_within_5_percent(tmp_path, bpp):
    result = _encode(tmp_path, "b", bpp=bpp)
    assert abs(result.bpp - bpp) / bpp < 0.05, result
    with LoeVideo(result.path) as clip:
        assert clip.info()["bpp"] == pytest.approx(result.bpp)
        assert clip.config.quant.slope != tiny_video_config().codec.quant.slope  # the solved slope is stored
        assert clip.decode(device="cpu").shape == (12, 72, 88, 3)


def test_psnr_target_reached_or_noted(tmp_path):
    reachable = _encode(tmp_path, "p", psnr=14.0)
    assert reachable.psnr >= 14.0 - 0.3 and not reachable.notes
    full = _encode(tmp_path, "f")
    assert reachable.bytes < full.bytes  # the lowest rate that reaches it, not the finest steps
    beyond = _encode(tmp_path, "x", psnr=60.0)
    assert beyond.notes and "below the 60 dB asked" in beyond.notes[0] and "video" in beyond.notes[0]


def test_quality_is_monotone_in_size(tmp_path):
    sizes = [_encode(tmp_path, f"q{q}", quality=q).bytes for q in (10, 50, 90)]
    assert sizes[0] < sizes[1] < sizes[2], sizes
    with LoeVideo(tmp_path / "q10.loe") as clip:
        assert clip.config.quant.slope == pytest.approx(slope_for_quality(10), rel=1e-5)


def test_rate_choices_are_checked_before_work(tmp_path):
    for rate in ({"bpp": 1.0, "psnr": 30.0}, {"bpp": -1.0}, {"psnr": 0.0}, {"quality": 101}):
        with pytest.raises(UsageError):
            _encode(tmp_path, "bad", **rate)
    assert list(tmp_path.iterdir()) == []


def test_cli_rate_options(tmp_path):
    runner = CliRunner()
    out = tmp_path / "b.loe"
    r = runner.invoke(app, ["encode", str(CLIP), "-o", str(out), *FAST_VIDEO, "--bpp", "2.5", "--json"])
    assert r.exit_code == 0, r.output
    assert abs(json.loads(r.stdout)["bpp"] - 2.5) / 2.5 < 0.05
    r = runner.invoke(app, ["encode", str(CLIP), "-o", str(tmp_path / "p.loe"), *FAST_VIDEO, "--psnr", "60"])
    assert r.exit_code == 0 and "below the 60 dB asked" in r.stderr, r.output
    for bad, message in ((["--bpp", "0"], "bpp target"), (["--psnr", "-3"], "PSNR target"),
                         (["--bpp", "1", "-q", "50"], "at most one"), (["-q", "120"], "")):
        target = tmp_path / "bad.loe"
        r = runner.invoke(app, ["encode", str(CLIP), "-o", str(target), *FAST_VIDEO, *bad])
        assert r.exit_code == 2 and message in r.stderr, (bad, r.output)
        assert not target.exists()


def test_video_fit_cache_serves_other_rates(tmp_path):
    """Encodes of one clip at several rates share the fits (as images do with a cache folder)."""
    cache = tmp_path / "fits"
    first = encode_video(CLIP, tmp_path / "a.loe", config=tiny_video_config(), bpp=2.0, device="cpu",
                         measure_psnr=False, cache_dir=cache)
    stored = sorted(cache.iterdir())
    assert stored
    again = encode_video(CLIP, tmp_path / "b.loe", config=tiny_video_config(), bpp=2.0, device="cpu",
                         measure_psnr=False, cache_dir=cache)
    assert sorted(cache.iterdir()) == stored and again.bytes == first.bytes
    encode_video(CLIP, tmp_path / "c.loe", config=tiny_video_config(), chunk=6, bpp=2.0, device="cpu",
                 measure_psnr=False, cache_dir=cache)
    assert len(list(cache.iterdir())) > len(stored)  # other time chunks: other fits


def test_resume_reuses_the_fits_of_an_interrupted_encode_and_removes_them(tmp_path, monkeypatch):
    out = tmp_path / "r.loe"
    first = encode_video(CLIP, out, config=tiny_video_config(), device="cpu", measure_psnr=False,
                         cache_dir=str(out) + ".fits")  # what a killed --resume run leaves behind
    assert (tmp_path / "r.loe.fits").is_dir()
    out.unlink()

    def no_fitting(*args, **kwargs):
        raise AssertionError("a resumed encode must not fit again")
    monkeypatch.setattr("loe_codec.video_encode.fit_blocks", no_fitting)
    again = encode_video(CLIP, out, config=tiny_video_config(), device="cpu", measure_psnr=False, resume=True)
    assert again.bytes == first.bytes and out.read_bytes() and not (tmp_path / "r.loe.fits").exists()


def test_cli_resume_for_video(tmp_path):
    out = tmp_path / "c.loe"
    r = CliRunner().invoke(app, ["encode", str(CLIP), "-o", str(out), *FAST_VIDEO, "--resume", "--no-measure"])
    assert r.exit_code == 0, r.output
    assert out.exists() and not (tmp_path / "c.loe.fits").exists()
