"""Rate control of video encodes (--bpp per pixel per frame, --psnr mean per frame, -q): the images' code.

On ``samples/carphone_12f.mp4`` with the tiny 3-D networks of :mod:`test_video` (27 blocks, 40 steps).
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from typer.testing import CliRunner

import loe_codec
from cli.main import app
from loe_codec.config import slope_for_quality
from loe_codec.errors import UsageError
from loe_codec.video import (AUTO_CHUNKS, ENOUGH_BITS, MIN_AUTO_WIDTH, LoeVideo, VideoConfig, blocks_for_rate,
                             encode_video, video_preset)
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


def test_blocks_choose_their_size_and_info_reports_it(tmp_path):
    """With a unit ladder, each block keeps the rung of least error + slope x bits; `loe info` counts them."""
    vcfg = tiny_video_config()
    vcfg = dataclasses.replace(vcfg, codec=dataclasses.replace(
        vcfg.codec, quant=dataclasses.replace(vcfg.codec.quant, unit_ladder=(1.0, 0.5), qat_steps=8)))
    result = encode_video(CLIP, tmp_path / "u.loe", config=vcfg, device="cpu", bpp=1.0)
    assert abs(result.bpp - 1.0) < 0.05, result
    info = loe_codec.info(result.path)
    kept = info["units_kept"]
    assert sum(kept["tiles_by_fraction"].values()) == 27 and set(kept["tiles_by_fraction"]) <= {"1", "0.5"}
    assert sum(info["rate_split"].values()) == info["bytes"] and info["rate_split"]["header"] > 0
    with LoeVideo(result.path) as clip:
        assert clip.decode(device="cpu").shape == (12, 72, 88, 3)
    r = CliRunner().invoke(app, ["info", str(result.path)])
    assert r.exit_code == 0 and "blocks keeping a fraction of their hidden units" in r.stdout, r.output
    assert "range-coded weights" in r.stdout


def test_info_of_blocks_that_keep_every_unit(tmp_path):
    info = loe_codec.info(_encode(tmp_path, "a", quality=50).path)
    assert "units_kept" not in info and sum(info["rate_split"].values()) == info["bytes"]


def _pinned_preset() -> VideoConfig:
    """The ``video`` preset with banks over space and time alike (its shape when these numbers were
    worked out): the sizing rules under test, not the preset's tuning."""
    vcfg = video_preset("video")
    model = dataclasses.replace(vcfg.codec.model, time_banks=None)
    return dataclasses.replace(vcfg, codec=dataclasses.replace(vcfg.codec, model=model))


def _chunk(vcfg, width, height, frames, bpp) -> int:
    return blocks_for_rate(vcfg, width, height, frames, bpp).time.chunk


def test_chunk_follows_the_rate():
    """Fewer, longer blocks at low rates: about ``bits_per_parameter`` bits per parameter in each block."""
    vcfg = _pinned_preset()
    sized = [blocks_for_rate(vcfg, 176, 144, 120, bpp) for bpp in (0.03, 0.06, 0.1, 0.16, 0.5, 5.0)]
    chunks = [s.time.chunk for s in sized]
    assert chunks == sorted(chunks, reverse=True) and chunks[0] == AUTO_CHUNKS[1] == 120
    assert chunks[-1] == AUTO_CHUNKS[0] - 1  # 8 near-equal chunks of 15 (the nearest count to 120 / 16)
    for bpp, s in zip((0.06, 0.16, 0.5), (sized[1], sized[3], sized[4])):
        per_block = 176 * 144 * s.time.chunk  # one 256-px tile per frame here
        bits_per_parameter = bpp * per_block / s.codec.model.parameter_count()
        # the nearest whole number of chunks: within a factor 1.5 of the bits per parameter asked
        assert vcfg.bits_per_parameter / 1.5 < bits_per_parameter < vcfg.bits_per_parameter * 1.5
    # 50 frames per block asked: 110 frames -> 2 chunks of 55 (2.2 is nearer 2 than 3)
    wide = sized[3].codec.model
    raw = round(wide.parameter_count() * 5.0 / (0.31 * 176 * 144))
    assert raw == 50 and _chunk(vcfg, 176, 144, 110, 0.31) == 55 and _chunk(vcfg, 176, 144, 140, 0.31) == 47
    with pytest.raises(UsageError):
        dataclasses.replace(vcfg, bits_per_parameter=0.0)


def test_network_narrows_where_the_longest_block_is_short_of_bits():
    vcfg = _pinned_preset()
    for frames, bpp in ((120, 0.06), (120, 0.08), (60, 0.12)):  # enough bits: the preset's network
        assert blocks_for_rate(vcfg, 176, 144, frames, bpp).codec.model == vcfg.codec.model
    low = blocks_for_rate(vcfg, 176, 144, 120, 0.03)
    assert low.time.chunk == 120 and MIN_AUTO_WIDTH < low.codec.model.width < vcfg.codec.model.width
    model = low.codec.model
    affordable = 0.03 * 176 * 144 * 120 / vcfg.bits_per_parameter
    assert model.parameter_count() <= affordable < dataclasses.replace(model, width=model.width + 1).parameter_count()
    short = blocks_for_rate(vcfg, 176, 144, 30, 0.06)  # a short clip: one block of all its frames, narrower
    assert short.time.chunk == 30 and short.codec.model.width < vcfg.codec.model.width
    assert blocks_for_rate(vcfg, 176, 144, 120, 1e-4).codec.model.width == MIN_AUTO_WIDTH
    assert low.codec.model.banks == vcfg.codec.model.banks and low.codec.fit == vcfg.codec.fit


def test_network_widens_where_the_longest_block_has_bits_to_spare():
    """Up to ``max_width`` where the wider network still gets ENOUGH_BITS of the target; then shorter blocks."""
    vcfg = _pinned_preset()
    wide = dataclasses.replace(vcfg.codec.model, width=vcfg.max_width)
    at_threshold = wide.parameter_count() * vcfg.bits_per_parameter * ENOUGH_BITS / (176 * 144 * 120)
    below = blocks_for_rate(vcfg, 176, 144, 120, at_threshold * 0.98)
    above = blocks_for_rate(vcfg, 176, 144, 120, at_threshold * 1.02)
    assert below.codec.model == vcfg.codec.model and above.codec.model == wide
    assert below.time.chunk == above.time.chunk == 120  # one block of the whole clip either way
    high = blocks_for_rate(vcfg, 176, 144, 120, 0.5)
    assert high.codec.model == wide and high.time.chunk < 120  # no wider than max_width: shorter blocks
    assert high.codec.fit == vcfg.codec.fit
    unbounded = dataclasses.replace(vcfg, max_width=None)  # no max_width: never wider than the model
    assert blocks_for_rate(unbounded, 176, 144, 120, 0.5).codec.model == vcfg.codec.model
    with pytest.raises(UsageError):
        dataclasses.replace(vcfg, max_width=vcfg.codec.model.width - 1)


def test_bpp_encode_chooses_the_chunk_unless_asked(tmp_path):
    vcfg = dataclasses.replace(tiny_video_config(), bits_per_parameter=4.0)
    chosen = _chunk(vcfg, 88, 72, 12, 1.0)
    assert chosen != vcfg.time.chunk
    auto = encode_video(CLIP, tmp_path / "a.loe", config=vcfg, device="cpu", bpp=1.0)
    asked = encode_video(CLIP, tmp_path / "b.loe", config=vcfg, device="cpu", bpp=1.0, chunk=4)
    plain = encode_video(CLIP, tmp_path / "c.loe", config=vcfg, device="cpu", quality=50)
    frames = [loe_codec.info(r.path)["blocks"]["chunk_frames"] for r in (auto, asked, plain)]
    assert frames == [chosen, 4, vcfg.time.chunk]
    assert abs(auto.bpp - 1.0) < 0.05
