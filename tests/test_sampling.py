import dataclasses

import pytest
import torch

from loe_codec.config import CodecConfig, FitConfig, ModelConfig
from loe_codec.errors import UsageError
from loe_codec.fit import _PixelPool, fit_tiles
from loe_codec.sampling import CellSampler
from loe_codec.video_fit import BlockTarget, _VoxelPool, fit_blocks
from support import two_tile_targets, window_mse

MODEL = ModelConfig(width=12, banks=(1, 2, 2, 1), pe_frequencies=3)
FIT = FitConfig(steps=60, samples_per_tile=256, learning_rate=1e-2, warmup_steps=5, seed=0, sampling="error")
SHAPES = [(5, 20, 37), (1, 9, 16)]  # not multiples of the (4, 16, 16) cells: edge cells are smaller


def _sampler():
    return CellSampler(SHAPES, torch.device("cpu"))


def test_draws_stay_inside_their_targets_and_reach_every_voxel_class():
    s = _sampler()
    local, weight = s.draw(100000, torch.Generator().manual_seed(0))
    assert local.shape == weight.shape == (2, 100000)
    for k, (f, h, w) in enumerate(SHAPES):
        assert 0 <= int(local[k].min()) and int(local[k].max()) < f * h * w
        # Uniform at first (no errors seen): every voxel equally likely, weights 1.
        counts = torch.bincount(local[k], minlength=f * h * w).float()
        assert counts.min() > 0
        torch.testing.assert_close(weight[k], torch.ones(100000))


def test_cells_with_larger_errors_get_more_samples_and_smaller_weights():
    s = _sampler()
    gen = torch.Generator().manual_seed(1)
    f, h, w = SHAPES[0]
    for _ in range(30):
        local, _ = s.draw(512, gen)
        col = local % w
        err = torch.where(col < 16, 1.0, 0.01)  # the left cells are 100 times as wrong
        s.observe(err.reshape(-1).float())
    local, weight = s.draw(20000, gen)
    left = (local[0] % w) < 16
    share = 16 / w
    assert left.float().mean() > share + 0.2  # the uniform share is 0.43
    assert weight[0][left].max() < 1 < weight[0][~left].min()
    assert float(weight.max()) <= 1 / 0.25 + 1e-5  # mix 0.25 bounds the weights


def test_weighted_samples_keep_the_uniform_mean():
    """Importance weights make the weighted sample mean estimate the uniform mean of any function."""
    s = _sampler()
    gen = torch.Generator().manual_seed(2)
    f, h, w = SHAPES[0]
    value = (torch.arange(f * h * w) % w / w).float() ** 3  # larger to the right
    for _ in range(20):
        local, _ = s.draw(512, gen)
        s.observe(torch.cat([value[local[0]], torch.full((512,), 0.5)]))
    local, weight = s.draw(200000, gen)
    assert abs(float((value[local[0]] * weight[0]).mean()) - float(value.mean())) < 0.01 * float(value.mean()) + 2e-3
    assert abs(float(value[local[0]].mean()) - float(value.mean())) > 0.02  # the draw itself is not uniform


def test_error_sampled_pools_give_matching_coordinates_and_values():
    targets = two_tile_targets()
    pool = _PixelPool(targets, torch.device("cpu"))
    pool.sample_by_error()
    tile, coords, target = pool.sample(64, torch.Generator().manual_seed(0))
    assert pool.weights.shape == (128,)
    for k, (xy, value) in enumerate(zip(coords, target)):
        t = targets[int(tile[k])]
        col = float(xy[0]) * t.extent_x + t.domain_x - t.window_x - 0.5
        row = float(xy[1]) * t.extent_y + t.domain_y - t.window_y - 0.5
        assert abs(col - round(col)) < 1e-3 and abs(row - round(row)) < 1e-3
        torch.testing.assert_close(value, t.pixels[round(row), round(col)].float() / 255 - 0.5)

    voxels = torch.randint(0, 256, (6, 10, 12, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    block = BlockTarget(voxels, window=(0, 0, 0), origin=(0.0, 0.0, 0.0), extent=(12.0, 10.0, 6.0), seed=0)
    pool = _VoxelPool([block], torch.device("cpu"))
    pool.sample_by_error()
    _, coords, target = pool.sample(200, torch.Generator().manual_seed(0))
    for xyt, value in zip(coords, target):
        x, y, t = (float(xyt[d]) * e - 0.5 for d, e in enumerate((12.0, 10.0, 6.0)))
        torch.testing.assert_close(value, voxels[round(t), round(y), round(x)].float() / 255 - 0.5)


def test_error_sampled_fits_are_deterministic_and_learn():
    targets = two_tile_targets()
    a = fit_tiles(MODEL, FIT, targets, device="cpu")
    b = fit_tiles(MODEL, FIT, targets, device="cpu")
    assert all(torch.equal(x, y) for x, y in zip(a.weights, b.weights))
    uniform = fit_tiles(MODEL, dataclasses.replace(FIT, sampling="uniform"), targets, device="cpu")
    assert not torch.equal(a.weights[1], uniform.weights[1])  # the setting is used
    initial = fit_tiles(MODEL, dataclasses.replace(FIT, steps=0), targets, device="cpu")
    assert window_mse(a, targets) < 0.5 * window_mse(initial, targets)

    voxels = torch.randint(0, 256, (4, 8, 8, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    block = BlockTarget(voxels, window=(0, 0, 0), origin=(0.0, 0.0, 0.0), extent=(8.0, 8.0, 4.0), seed=0)
    model = fit_blocks(dataclasses.replace(MODEL, dims=3), dataclasses.replace(FIT, steps=5), [block])
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_the_setting_is_checked_and_stored_only_where_it_is_not_the_default():
    with pytest.raises(UsageError, match="sampling must be one of"):
        FitConfig(sampling="hard")
    assert "sampling" not in CodecConfig().to_dict()["fit"]  # files read by decoders from before it
    cfg = dataclasses.replace(CodecConfig(), fit=FIT)
    assert cfg.to_dict()["fit"]["sampling"] == "error"
    assert CodecConfig.from_dict(cfg.to_dict()) == cfg


def test_an_error_sampled_sync_free_step_reads_nothing_back_to_the_host():
    from loe_codec.fit import FitLoop
    from loe_codec.hostreads import HostReads
    from loe_codec.model import TiledLoE

    targets = two_tile_targets()
    pool = _PixelPool(targets, torch.device("cpu"))
    pool.sample_by_error()
    loop = FitLoop(TiledLoE.initialised(MODEL, [t.seed for t in targets]), FIT, pool, 0, "fp32", "dense")
    loop.step(0)
    with HostReads() as reads:
        [loop.step(step) for step in range(1, 4)]
    assert reads.ops == []
