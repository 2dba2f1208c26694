"""Rate control of video encodes (--bpp per pixel per frame, --psnr mean per frame, -q): the images' code.

On ``samples/carphone_12f.mp4`` with the tiny 3-D networks of :mod:`test_video` (27 blocks, 40 steps).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

import loe_codec
from cli.main import app
from loe_codec.config import slope_for_quality
from loe_codec.errors import UsageError
from loe_codec.tiling import TileGrid
from loe_codec.video import LoeVideo, encode_video
from loe_codec.video_presets import (AUTO_CHUNKS, ENOUGH_BITS, MIN_AUTO_WIDTH, MOST_BITS, VideoConfig, blocks_for_rate,
                                    video_preset)
from test_video import CLIP, FAST_VIDEO, tiny_video_config


def _encode(tmp_path, name: str, **rate):
    return encode_video(CLIP, tmp_path / f"{name}.loe", config=tiny_video_config(), device="cpu", **rate)


@pytest.mark.parametrize("bpp", [1.5, 3.0])
def test_bpp_target_lands_within_5_percent(tmp_path, bpp):
    result = _encode(tmp_path, "b", bpp=bpp)
    assert abs(result.bpp - bpp) / bpp < 0.05, result
    assert not result.notes
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


def test_unreachable_bpp_target_says_so(tmp_path):
    # 27 blocks' headers and tables on a 12-frame 88x72 clip: far above 0.01 bpp at the coarsest steps.
    result = _encode(tmp_path, "small", bpp=0.01)
    assert result.bpp > 0.5
    assert len(result.notes) == 1 and "0.01 bpp cannot be reached" in result.notes[0] and "video" in result.notes[0]


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


def test_an_encode_killed_inside_a_fit_resumes_from_its_snapshot_and_writes_the_same_file(tmp_path, monkeypatch):
    whole = encode_video(CLIP, tmp_path / "whole.loe", config=tiny_video_config(), device="cpu", measure_psnr=False)
    monkeypatch.setattr("loe_codec.fitcache.SNAPSHOT_SECONDS", 0.0)  # a snapshot after every step
    out = tmp_path / "k.loe"

    class Killed(Exception):
        pass

    def kill(stage, done, total):  # in the second time chunk's batch (blocks 9-17), at its step 25 of 40
        if stage == "fit" and done >= 9 * 40 + 9 * 25:
            raise Killed
    with pytest.raises(Killed):
        encode_video(CLIP, out, config=tiny_video_config(), device="cpu", measure_psnr=False, resume=True,
                     progress=kill)
    fits = tmp_path / "k.loe.fits"
    assert len(list(fits.glob("batch-*.partial.pt"))) == 1 and not out.exists()

    steps = []
    real = loe_codec.fit.FitLoop.step
    monkeypatch.setattr(loe_codec.fit.FitLoop, "step", lambda loop, i: steps.append(i) or real(loop, i))
    again = encode_video(CLIP, out, config=tiny_video_config(), device="cpu", measure_psnr=False, resume=True)
    # The first chunk's fit came from the cache, the second went on at step 24 (its last snapshot: step 25
    # was being reported when it was killed), the third was fitted from the start.
    assert steps == list(range(24, 40)) + list(range(40))
    assert out.read_bytes() == Path(whole.path).read_bytes() and again.bytes == whole.bytes
    assert not fits.exists()


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
    """The ``video`` preset with banks over space and time alike and ``max_width`` 56 (its shape when
    these numbers were worked out): the sizing rules under test, not the preset's tuning."""
    vcfg = video_preset("video")
    model = dataclasses.replace(vcfg.codec.model, time_banks=None)
    return dataclasses.replace(vcfg, codec=dataclasses.replace(vcfg.codec, model=model), max_width=56)


def _chunk(vcfg, width, height, frames, bpp) -> int:
    return blocks_for_rate(vcfg, width, height, frames, bpp).time.chunk


def _bits_per_parameter(sized: VideoConfig, bpp: float) -> float:
    return bpp * 176 * 144 * sized.time.chunk / sized.codec.model.parameter_count()  # one tile per frame


def test_chunk_follows_the_rate():
    """Fewer, longer blocks at low rates: about ``bits_per_parameter`` bits per parameter in each block."""
    vcfg = _pinned_preset()
    rates = (0.03, 0.06, 0.1, 0.16, 0.5, 5.0)
    sized = [blocks_for_rate(vcfg, 176, 144, 120, bpp) for bpp in rates]
    chunks = [s.time.chunk for s in sized]
    assert chunks == sorted(chunks, reverse=True) and chunks[0] == AUTO_CHUNKS[1] == 120
    assert chunks[-1] == 18  # 7 near-equal chunks: 8 would be shorter than AUTO_CHUNKS[0]
    target = vcfg.bits_per_parameter
    for bpp, s in zip(rates[:-1], sized[:-1]):
        assert ENOUGH_BITS * target <= _bits_per_parameter(s, bpp) <= MOST_BITS * target, bpp
        if s.time.chunk < 120:  # a block longer by one fewer chunk: more than MOST_BITS for the widest network
            longer = math.ceil(120 / (math.ceil(120 / s.time.chunk) - 1))
            wide = dataclasses.replace(s.codec.model, width=vcfg.max_width)
            assert bpp * 176 * 144 * longer / wide.parameter_count() > MOST_BITS * target, bpp
    assert _bits_per_parameter(sized[-1], 5.0) > MOST_BITS * target  # the shortest blocks: all the bits
    # near-equal chunks of a clip that is not a multiple: 110 frames in 2 blocks of 55, 140 in 3 of 47
    wide = dataclasses.replace(vcfg.codec.model, width=vcfg.max_width)
    two_blocks = wide.parameter_count() * target / (176 * 144 * 55) * 1.1
    assert _chunk(vcfg, 176, 144, 110, two_blocks) == 55 and _chunk(vcfg, 176, 144, 140, two_blocks) == 47
    with pytest.raises(UsageError):
        dataclasses.replace(vcfg, bits_per_parameter=0.0)


def test_network_narrows_where_the_longest_block_is_short_of_bits():
    vcfg = _pinned_preset()
    for frames, bpp in ((120, 0.06), (120, 0.055), (60, 0.12)):  # a little short: the preset's network
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


def test_network_widens_with_the_rate_up_to_max_width():
    """The widest network up to ``max_width`` that gets the whole target in one block of the clip: the
    width grows with the rate (no jump to ``max_width``, which left rates just short of it on shorter
    blocks); past ``max_width``, shorter blocks, each with the widest network at the target."""
    vcfg = _pinned_preset()
    model = vcfg.codec.model
    bpp_per_parameter = vcfg.bits_per_parameter / (176 * 144 * 120)  # one 120-frame block at the target
    for width in (model.width, (model.width + vcfg.max_width) // 2, vcfg.max_width):
        sized_model = dataclasses.replace(model, width=width)
        sized = blocks_for_rate(vcfg, 176, 144, 120, sized_model.parameter_count() * bpp_per_parameter * 1.001)
        assert sized.codec.model == sized_model and sized.time.chunk == 120, width
    # a little short of the model's bits (but ENOUGH_BITS of them): still the model, in one block
    short = blocks_for_rate(vcfg, 176, 144, 120, model.parameter_count() * bpp_per_parameter * ENOUGH_BITS * 1.02)
    assert short.codec.model == model and short.time.chunk == 120
    high = blocks_for_rate(vcfg, 176, 144, 120, 0.5)
    assert high.time.chunk < 120 and high.codec.model.width <= vcfg.max_width  # no wider: shorter blocks
    assert vcfg.bits_per_parameter <= _bits_per_parameter(high, 0.5) <= MOST_BITS * vcfg.bits_per_parameter
    wider = dataclasses.replace(high.codec.model, width=high.codec.model.width + 1)  # each the widest at the target
    assert 0.5 * 176 * 144 * high.time.chunk / wider.parameter_count() < vcfg.bits_per_parameter
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


@pytest.mark.parametrize("preset, bpp, blocks, width", [("video", 0.02, 6, 53), ("video", 0.03, 6, 65),
                                                         ("video-best", 0.01, 4, 46), ("video-best", 0.02, 4, 65),
                                                         ("video-best", 0.03, 4, 81), ("video-best", 0.05, 4, 105),
                                                         ("video-best", 0.1, 8, 105), ("video-best", 0.161, 8, 134)])
def test_presets_size_big_buck_bunny_as_measured(preset, bpp, blocks, width):
    """The blocks behind the recorded Big Buck Bunny numbers (1280x720, 60 frames; benchmarks/README.md):
    ``video-best``'s 640-pixel tiles give 4 blocks, wider than the preset's ``max_width`` 72 at 0.03 bpp;
    both fit on uniform samples (error-driven ones gained nothing consistent)."""
    vcfg = video_preset(preset)
    sized = blocks_for_rate(vcfg, 1280, 720, 60, bpp)
    tiles = len(TileGrid(1280, 720, sized.codec.tile.size, sized.codec.tile.margin))
    assert (tiles * math.ceil(60 / sized.time.chunk), sized.codec.model.width) == (blocks, width)
    assert sized.codec.fit.sampling == "uniform"
