import dataclasses

import pytest
import torch

from loe_codec.config import FitConfig, ModelConfig
from loe_codec.fit import TileTarget, _PixelPool, fit_tiles, learning_rate, tile_seed
from support import smooth_image

MODEL = ModelConfig(width=12, banks=(1, 2, 2, 1), pe_frequencies=3)
FIT = FitConfig(steps=30, samples_per_tile=256, learning_rate=1e-2, warmup_steps=5, seed=0)


def _targets(seed: int = 0) -> list[TileTarget]:
    """Two tiles of a 20x14 smooth image split at x = 10 with margin 2 (windows clipped to the image)."""
    img = torch.from_numpy(smooth_image(14, 20, 3, seed=3))
    left = TileTarget(img[:, 0:12].clone(), 0, 0, -2.0, -2.0, 14.0, 18.0, tile_seed(seed, 0))
    right = TileTarget(img[:, 8:20].clone(), 8, 0, 8.0, -2.0, 14.0, 18.0, tile_seed(seed, 1))
    return [left, right]


def _mse(model, targets) -> float:
    """Mean squared error of the model at every pixel centre of every target window."""
    errs = []
    for k, t in enumerate(targets):
        h, w, _ = t.pixels.shape
        yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        coords = torch.stack([(xx.reshape(-1) + t.window_x - t.domain_x) / t.extent_x,
                              (yy.reshape(-1) + t.window_y - t.domain_y) / t.extent_y], 1)
        with torch.no_grad():
            pred = model(torch.full((h * w,), k, dtype=torch.long), coords)
        errs.append(((pred - (t.pixels.reshape(-1, 3).float() / 255 - 0.5)) ** 2).mean())
    return float(torch.stack(errs).mean())


def test_same_inputs_and_seed_give_bit_identical_weights():
    a = fit_tiles(MODEL, FIT, _targets(), device="cpu")
    b = fit_tiles(MODEL, FIT, _targets(), device="cpu")
    for pa, pb in zip(list(a.weights) + list(a.biases), list(b.weights) + list(b.biases)):
        assert torch.equal(pa, pb)
    # ...and the seed matters (so the check above is not vacuous).
    c = fit_tiles(MODEL, FIT, _targets(seed=1), device="cpu")
    assert not torch.equal(a.weights[1], c.weights[1])


def test_loss_goes_down_on_a_tiny_image():
    targets = _targets()
    losses = []
    fitted = fit_tiles(MODEL, dataclasses.replace(FIT, steps=40), targets, device="cpu",
                       progress=lambda step, total, loss: losses.append((step, loss)))
    initial = fit_tiles(MODEL, dataclasses.replace(FIT, steps=0), targets, device="cpu")
    before, after = _mse(initial, targets), _mse(fitted, targets)
    assert after < 0.5 * before, (before, after)
    # Progress reports every step here (steps < 100), ending at the last one, with a falling loss.
    assert [s for s, _ in losses] == list(range(1, 41))
    first, last = sum(l for _, l in losses[:5]) / 5, sum(l for _, l in losses[-5:]) / 5
    assert last < first


def test_fit_returns_cpu_float32_model_one_network_per_target():
    model = fit_tiles(MODEL, dataclasses.replace(FIT, steps=2), _targets(), device="cpu")
    assert model.num_tiles == 2
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters())
    assert not model.training


def test_pixel_pool_samples_pixel_centres_with_their_values():
    targets = _targets()
    pool = _PixelPool(targets, torch.device("cpu"))
    tile, coords, target = pool.sample(64, torch.Generator().manual_seed(0))
    assert tile.tolist() == [0] * 64 + [1] * 64
    for k, (xy, value) in enumerate(zip(coords, target)):
        t = targets[int(tile[k])]
        # Invert p = (pos - domain) / extent with pos = window + col + 0.5.
        col = float(xy[0]) * t.extent_x + t.domain_x - t.window_x - 0.5
        row = float(xy[1]) * t.extent_y + t.domain_y - t.window_y - 0.5
        assert abs(col - round(col)) < 1e-3 and abs(row - round(row)) < 1e-3
        pixel = t.pixels[round(row), round(col)].float() / 255 - 0.5
        torch.testing.assert_close(value, pixel)
        assert 0 <= float(xy.min()) and float(xy.max()) <= 1


def test_learning_rate_schedule():
    cfg = FitConfig(steps=100, learning_rate=1e-2, warmup_steps=10, final_lr_fraction=0.1)
    lrs = [learning_rate(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-3)
    assert lrs[9] == pytest.approx(1e-2)
    assert lrs[10] == pytest.approx(1e-2)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # cosine decay is monotone
    assert learning_rate(100, cfg) == pytest.approx(1e-3)
    assert min(lrs) >= 1e-3 - 1e-12


def test_tile_seeds_differ_per_tile_and_run():
    seeds = {tile_seed(s, t) for s in range(3) for t in range(50)}
    assert len(seeds) == 150
    assert tile_seed(4, 7) == tile_seed(4, 7)


def test_a_diverging_fit_is_an_error_not_a_silent_file():
    from loe_codec.errors import CodecRuntimeError

    wild = dataclasses.replace(FIT, learning_rate=1e38, warmup_steps=1)
    with pytest.raises(CodecRuntimeError, match="diverged"):
        fit_tiles(MODEL, wild, _targets())
