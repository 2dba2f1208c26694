"""A network size per video block (loe_codec.block_sizes): the bits model, the widths, widening, and an
encode whose blocks get widths of their own from a pilot fit (on ``samples/carphone_12f.mp4``, tiny networks)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from loe_codec.block_sizes import (PILOT_SPREAD, RATIO_RANGE, bit_ratios, block_widths, initialised_within, narrow_initial,
                                   pilot_steps, sized_config, widened)
from loe_codec.config import ModelConfig
from loe_codec.errors import UsageError
from loe_codec.fitcache import FitCache
from loe_codec.model import TiledLoE
from loe_codec.metrics import psnr_from_mse
from loe_codec.reference import reference_weights
from loe_codec.video import LoeVideo, encode_video
from loe_codec.videoio import VideoSource
from test_video import CLIP, tiny_video_config

MODEL = ModelConfig(dims=3, width=12, banks=(1, 2, 1), pe_frequencies=3)


def test_equal_errors_keep_equal_shares():
    assert bit_ratios([0.01] * 4, [100] * 4) == pytest.approx([1.0] * 4)


def test_shares_follow_the_errors_and_keep_the_bits():
    mse = [1e-3, 7e-4, 5e-4, 1.3e-3]
    voxels = [100, 100, 50, 150]
    ratios = bit_ratios(mse, voxels)
    assert sum(v * r for v, r in zip(voxels, ratios)) == pytest.approx(sum(voxels))
    order = np.argsort(mse)
    assert list(np.argsort(ratios)) == list(order)  # more error, more bits
    a = 2.0 * math.log(10) / (10 * math.log(2))  # unclamped: in proportion to MSE ** (spread / (1 + a))
    assert ratios[0] / ratios[1] == pytest.approx((mse[0] / mse[1]) ** (PILOT_SPREAD / (1 + a)))
    plain = bit_ratios(mse, voxels, spread=1.0)
    assert plain[0] / plain[1] == pytest.approx((mse[0] / mse[1]) ** (1 / (1 + a)))
    assert max(ratios) / min(ratios) > max(plain) / min(plain)  # the pilot's errors spread apart


def test_shares_stay_within_their_limits():
    ratios = bit_ratios([1.0, 1e-6, 1e-6, 1e-6], [1, 1, 1, 1])
    lo, hi = RATIO_RANGE
    assert all(lo - 1e-9 <= r <= hi + 1e-9 for r in ratios)
    assert ratios[0] == pytest.approx(hi) and sum(ratios) == pytest.approx(4.0)


def test_widths_follow_the_shares():
    model = dataclasses.replace(MODEL, width=40)
    widths = block_widths(model, [1.0, 0.5, 1.5])
    assert widths[0] == 40 and widths[1] < 40 < widths[2]
    for w, r in zip(widths, [1.0, 0.5, 1.5]):
        assert dataclasses.replace(model, width=w).parameter_count() <= r * model.parameter_count()
        assert dataclasses.replace(model, width=w + 1).parameter_count() > r * model.parameter_count()


def test_sized_config_is_the_widest_network_with_masks():
    from test_video import tiny_video_config as cfg
    codec = cfg().codec
    same = sized_config(codec, [12, 12])
    assert same.model.width == 12 and not same.quant.prunes_units
    sized = sized_config(codec, [10, 15, 12, 15])
    assert sized.model.width == 15 and sized.quant.prunes_units
    assert sized.quant.unit_ladder == (1.0, 12 / 15, 10 / 15)


def test_a_widened_network_computes_the_narrow_one():
    narrow = dataclasses.replace(MODEL, width=7)
    small = initialised_within(narrow, MODEL, [3, 4])
    with torch.no_grad():  # move it away from its initialisation, biases included
        for p in small.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    big = TiledLoE.initialised(MODEL, [5])
    model, units = widened([(small, 1), (big, 0), (small, 0)], MODEL)
    assert [u.sum(dim=1).tolist() for u in units] == [[7, 12, 7]] * (MODEL.layers - 1)
    coords = torch.rand(50, 3) * 2 - 1
    tile = torch.zeros(50, dtype=torch.long)
    with torch.no_grad():
        for t, (source, s) in enumerate([(small, 1), (big, 0), (small, 0)]):
            assert torch.allclose(model(tile + t, coords), source(tile + s, coords), atol=1e-5)


def test_a_narrow_network_starts_from_the_wide_reference():
    narrow = dataclasses.replace(MODEL, width=7)
    weights, _ = narrow_initial(narrow, MODEL, 11)
    wide = reference_weights(MODEL, 11)
    for w, ref in zip(weights, wide):  # the wide reference's first units, up to a scale per layer
        part = ref[:, :w.shape[1], :w.shape[2]]
        ratio = (w * part).sum() / (part * part).sum()
        assert torch.allclose(w, ratio * part, atol=1e-6) and ratio >= 1.0


def test_pilot_steps_are_a_small_fraction():
    assert pilot_steps(64000) == 2000 and pilot_steps(10) == 1


def test_unknown_block_sizes_is_a_usage_error():
    with pytest.raises(UsageError, match="block_sizes"):
        dataclasses.replace(tiny_video_config(), block_sizes="biggest")


def _frames(path) -> np.ndarray:
    return np.stack(list(VideoSource(path).iter_frames())).astype(np.float64)


def test_sized_blocks_encode_decode_and_resume(tmp_path):
    cfg = dataclasses.replace(tiny_video_config(steps=64), block_sizes="pilot")
    cache = tmp_path / "cache"
    stages: set[str] = set()
    result = encode_video(CLIP, tmp_path / "s.loe", config=cfg, device="cpu", bpp=2.0, cache_dir=cache,
                          progress=lambda stage, done, total: stages.add(stage))
    assert "pilot" in stages and abs(result.bpp - 2.0) / 2.0 < 0.05
    with LoeVideo(result.path) as clip:
        assert clip.config.quant.prunes_units and clip.config.model.width > 12
        kept = {int(u.sum()) for k in range(27) for u in clip.reader.tile_units(k)}
        assert len(kept) > 1  # the blocks got widths of their own
        decoded = clip.decode(device="cpu").astype(np.float64)
    mse = np.mean((decoded - _frames(CLIP)) ** 2, axis=(1, 2, 3))
    assert float(np.mean([psnr_from_mse(m) for m in mse])) == pytest.approx(result.psnr, abs=0.01)
    fits = sorted(p.name for p in FitCache(cache).directory.glob("batch-*.pt"))
    assert fits  # the pilot's and the sized blocks' fits
    again = encode_video(CLIP, tmp_path / "t.loe", config=cfg, device="cpu", bpp=2.0, cache_dir=cache)
    assert sorted(p.name for p in FitCache(cache).directory.glob("batch-*.pt")) == fits  # nothing fitted again
    assert again.bytes == result.bytes and again.psnr == pytest.approx(result.psnr)


def test_equal_pilot_errors_encode_as_equal_blocks(tmp_path, monkeypatch):
    import loe_codec.video_encode as video_encode
    monkeypatch.setattr(video_encode, "bit_ratios", lambda mse, voxels: [1.0] * len(mse))
    cfg = tiny_video_config(steps=16)
    sized = encode_video(CLIP, tmp_path / "p.loe", config=dataclasses.replace(cfg, block_sizes="pilot"), device="cpu")
    equal = encode_video(CLIP, tmp_path / "e.loe", config=cfg, device="cpu")
    assert (tmp_path / "p.loe").read_bytes() == (tmp_path / "e.loe").read_bytes()
    assert sized.psnr == equal.psnr


def test_widened_blocks_fit_their_gains_to_the_kept_weights():
    from types import SimpleNamespace

    from loe_codec.fitted import FittedBatch
    from loe_codec.reference import fitted_gains, tile_seed
    codec = dataclasses.replace(tiny_video_config().codec, model=MODEL)
    narrow = dataclasses.replace(MODEL, width=6)
    blocks = [SimpleNamespace(index=k) for k in (4, 9)]
    seeds = [tile_seed(codec.fit.seed, b.index) for b in blocks]
    small = initialised_within(narrow, MODEL, seeds)
    with torch.no_grad():  # a fitted network: its start times 0.9, plus a little of its own
        for p in small.weights:
            p.mul_(0.9).add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    model, units = widened([(small, 0), (small, 1)], MODEL)
    batch = FittedBatch.of(blocks, model, None, None, codec, units)
    assert batch.units is units
    for k, seed in enumerate(seeds):
        kept = [ref[:, :w.shape[2], :w.shape[3]] for ref, w in zip(reference_weights(MODEL, seed), small.weights)]
        expected = fitted_gains([w[k:k + 1] for w in small.weights], [r[None] for r in kept])[0]
        assert torch.allclose(batch.gains[k], expected)
        # the hidden layers' gains: about 0.9 times the narrow start's rescaling, not shrunk by the dropped weights
        assert (batch.gains[k, 1:] > 0.9).all()
    unmasked = FittedBatch.of(blocks, model, None, None, codec)
    assert (unmasked.gains[:, 1:] < 0.6 * batch.gains[:, 1:]).all()  # what counting the dropped weights gives


def test_only_video_best_sizes_its_blocks_and_video_fast_keeps_the_images_fine_tuning_rate():
    from loe_codec.video import video_preset
    best, default, fast = (video_preset(name) for name in ("video-best", "video", "video-fast"))
    assert best.block_sizes == "pilot" and {default.block_sizes, fast.block_sizes} == {"equal"}
    # video-fast's 18 fine-tuning steps gain nothing at 3e-5 (carphone: 20.39 against 20.45 dB at 0.1 bpp)
    assert best.codec.quant.qat_learning_rate == default.codec.quant.qat_learning_rate == 3e-5
    assert fast.codec.quant.qat_learning_rate == 1e-3
