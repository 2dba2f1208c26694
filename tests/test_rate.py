"""Rate–distortion choices (loe_codec.rate): steps from sensitivities, the slope search, sensitivities."""

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch

from loe_codec.config import FitConfig, ModelConfig
from loe_codec.fit import fit_tiles
from loe_codec.rate import Probe, layer_sensitivity, solve_slope, steps_for_slope
from support import two_tile_targets

MODEL = ModelConfig(width=12, banks=(1, 2, 2, 1), pe_frequencies=3)
FIT = FitConfig(steps=30, samples_per_tile=256, learning_rate=1e-2, warmup_steps=5, seed=0)


# --- steps_for_slope -----------------------------------------------------------------------------------------

def test_steps_follow_the_lagrangian_formula():
    sens = torch.tensor([[1.0, 4.0, 250.0], [0.5, 1e4, 3.0]])
    for slope in (1e-4, 0.3, 20.0):
        steps = steps_for_slope(sens, slope)
        assert steps.shape == sens.shape
        expected = torch.sqrt(6 * slope / (math.log(2) * sens))
        torch.testing.assert_close(steps, expected, rtol=1e-6, atol=0)


def test_steps_minimise_error_plus_slope_times_bits():
    # Per weight: error h * step**2 / 12, bits c - log2(step). The formula's step is the minimum.
    h, slope = 37.0, 0.02
    step = float(steps_for_slope(torch.tensor([[h]]), slope))
    grid = np.linspace(0.2 * step, 5 * step, 20001)
    cost = h * grid**2 / 12 + slope * (10 - np.log2(grid))
    assert grid[np.argmin(cost)] == pytest.approx(step, rel=1e-3)


def test_steps_grow_with_the_slope_and_shrink_with_the_sensitivity():
    sens = torch.logspace(-3, 5, 9).view(1, -1)
    slopes = [1e-6, 1e-4, 1e-2, 1.0, 100.0]
    per_slope = torch.stack([steps_for_slope(sens, s)[0] for s in slopes])
    assert (per_slope[1:] > per_slope[:-1]).all()  # larger slope: coarser steps, smaller files
    assert (per_slope[:, 1:] < per_slope[:, :-1]).all()  # more sensitive layer: finer steps
    # Zero sensitivity (a layer nothing depends on) gives a huge but finite step, not inf / nan.
    assert torch.isfinite(steps_for_slope(torch.zeros(2, 3), 1e-3)).all()


# --- solve_slope ---------------------------------------------------------------------------------------------

def _size(slope: float) -> float:
    """A synthetic coded size in bytes: decreasing in the slope, integer-valued like a real one."""
    return float(int(1000 + 40000 / (1 + slope) ** 0.5))


@pytest.mark.parametrize("target", [1500.0, 5000.0, 20000.0, 38000.0])
def test_solve_slope_hits_a_size_target(target):
    calls = []

    def measure(slope):
        calls.append(slope)
        return _size(slope)

    slope = solve_slope(measure, target, low=1e-4, high=1e5)
    assert 1e-4 <= slope <= 1e5 and len(calls) <= 40
    assert _size(slope) >= target  # the slope returned meets the target (size / quality at least it)
    assert _size(slope) == pytest.approx(target, rel=0.01)
    # The exact solution of 1000 + 40000 / sqrt(1 + s) = target.
    exact = (40000 / (target - 1000)) ** 2 - 1
    assert slope == pytest.approx(exact, rel=0.01)


def test_solve_slope_on_a_quality_like_measure():
    # PSNR-like: decreasing in log-slope. The answer is the largest slope that still reaches the target.
    def psnr(slope):
        return 40.0 - 3.0 * math.log10(slope)

    slope = solve_slope(psnr, 37.0, low=1e-4, high=1e5)
    assert psnr(slope) >= 37.0 and slope == pytest.approx(10.0, rel=0.01)


def test_solve_slope_clamps_unreachable_targets():
    # Every slope gives a larger file than asked: the coarsest slope tried; no slope gives a large enough
    # file: the finest one (low).
    assert solve_slope(_size, 10.0, low=1e-4, high=1e5) == pytest.approx(1e5, rel=0.01)
    assert solve_slope(_size, 1e9, low=1e-4, high=1e5) == 1e-4


# --- layer_sensitivity ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fitted():
    targets = two_tile_targets()
    return fit_tiles(MODEL, FIT, targets), targets


def test_sensitivity_is_positive_finite_and_per_tile_and_layer(fitted):
    model, targets = fitted
    before = [w.detach().clone() for w in model.weights]
    probe = Probe.of(targets, [100, 100], per_tile=512)
    sens = layer_sensitivity(model, probe)
    assert sens.shape == (2, MODEL.layers) and sens.dtype == torch.float32
    assert torch.isfinite(sens).all() and (sens > 0).all()
    assert all(torch.equal(a, b) for a, b in zip(before, model.weights))  # the probe noise is undone
    assert torch.equal(sens, layer_sensitivity(model, probe))  # deterministic


def test_sensitivity_follows_the_scale_of_what_comes_after(fitted):
    # Scaling tile 0's output layer by 3 multiplies the output change caused by noise in every earlier
    # layer of tile 0 by 3, so their sensitivities grow 9x; the output layer's own sensitivity (per unit of
    # noise variance) and everything in tile 1 stay as they were.
    model, targets = fitted
    probe = Probe.of(targets, [100, 100], per_tile=512)
    base = layer_sensitivity(model, probe)
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        scaled.weights[-1][0] *= 3
    ratio = layer_sensitivity(scaled, probe) / base
    torch.testing.assert_close(ratio[0, :-1], torch.full((MODEL.layers - 1,), 9.0), rtol=1e-3, atol=0)
    torch.testing.assert_close(ratio[0, -1], torch.tensor(1.0), rtol=1e-3, atol=0)
    torch.testing.assert_close(ratio[1], torch.ones(MODEL.layers), rtol=1e-4, atol=0)


def test_sensitivity_is_per_weight_as_the_step_formula_assumes(fitted):
    # The model behind steps_for_slope (rate module doc): noise of variance v on each of the n weights of layer
    # l adds about n * h[l] * v of squared error (over the pixels a tile stands for), h being per weight.
    # Check it with uniform noise of a small step (variance step**2 / 12), averaged over a few draws.
    model, targets = fitted
    probe = Probe.of(targets, [100, 100], per_tile=1024)
    sens = layer_sensitivity(model, probe).double()
    gen = torch.Generator().manual_seed(11)
    base = model(probe.tile, probe.coords).detach()
    for layer in range(MODEL.layers):
        measured = torch.zeros(2, dtype=torch.float64)
        for _ in range(4):
            noisy = copy.deepcopy(model)
            w = noisy.weights[layer]
            step = 0.02 * float(w.detach().pow(2).mean().sqrt())
            with torch.no_grad():
                w.add_((torch.rand(w.shape, generator=gen) - 0.5) * step)
                change = (noisy(probe.tile, probe.coords) - base).pow(2).view(2, -1).mean(dim=1).double()
            measured += change * probe.pixels / (step**2 / 12) / 4  # error per unit of noise variance
        n = w[0].numel()
        ratio = (measured / (n * sens[:, layer])).tolist()
        assert all(0.5 < r < 2.0 for r in ratio), (layer, n, ratio)


def test_probe_squared_error_scales_with_the_tile_area(fitted):
    model, targets = fitted
    probe = Probe.of(targets, [100, 100], per_tile=256)
    err = probe.squared_error(model)
    assert err.shape == (2,) and err.dtype == torch.float64 and (err > 0).all()
    big = dataclasses.replace(probe, pixels=probe.pixels * 4)
    torch.testing.assert_close(big.squared_error(model), 4 * err)
    small = probe.subset(64)
    assert small.tile.tolist() == [0] * 64 + [1] * 64 and small.coords.shape == (128, 2)
