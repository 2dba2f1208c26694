"""The schedule and Adam variants of benchmarks/video_fit_variant.py."""

from __future__ import annotations

import math

import pytest
import torch

from loe_codec import fit
from loe_codec.config import FitConfig, ModelConfig
from support import load_script, two_tile_targets

MODEL = ModelConfig(width=12, banks=(1, 2, 2, 1), pe_frequencies=3)
FIT = FitConfig(steps=110, samples_per_tile=256, learning_rate=1e-2, final_lr_fraction=0.05, warmup_steps=10)


@pytest.fixture
def variant(monkeypatch):
    """The script, with everything it patches restored after the test."""
    monkeypatch.setattr(fit, "learning_rate", fit.learning_rate)
    monkeypatch.setattr(fit.FitLoop, "__init__", fit.FitLoop.__init__)
    return load_script("benchmarks/video_fit_variant.py")


def test_exp_decays_geometrically_after_the_warm_up(variant):
    cosine = fit.learning_rate
    variant.schedule("exp")
    assert fit.learning_rate(3, FIT) == cosine(3, FIT)  # warm-up unchanged
    assert fit.learning_rate(10, FIT) == pytest.approx(1e-2)
    assert fit.learning_rate(60, FIT) == pytest.approx(1e-2 * math.sqrt(0.05))  # halfway: low ** 0.5
    assert fit.learning_rate(110, FIT) == pytest.approx(5e-4)
    assert fit.learning_rate(60, FIT) < cosine(60, FIT)


def test_the_fine_tuning_keeps_its_cosine(variant):
    cosine = fit.learning_rate
    qat = FitConfig(steps=100, learning_rate=1e-3, warmup_steps=0)
    variant.schedule("exp")
    assert [fit.learning_rate(s, qat) for s in (0, 50, 99)] == [cosine(s, qat) for s in (0, 50, 99)]


def test_unknown_schedules_are_refused(variant):
    for name in ("linear", "hold=0.25"):
        with pytest.raises(ValueError):
            variant.schedule(name)


def test_beta2_reaches_the_fit_and_changes_it(variant):
    targets = two_tile_targets()
    plain = fit.fit_tiles(MODEL, FIT, targets, device="cpu")
    variant.adam_beta2(0.9)
    seen = []
    init = fit.FitLoop.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        seen.append(self.opt.param_groups[0]["betas"])

    fit.FitLoop.__init__ = spy
    changed = fit.fit_tiles(MODEL, FIT, targets, device="cpu")
    assert seen == [(0.9, 0.9)]
    assert not torch.equal(plain.weights[1], changed.weights[1])


def test_first_layer_lr_scales_only_the_first_layers_steps(variant):
    torch.manual_seed(0)
    model = fit.TiledLoE.initialised(MODEL, [1, 2])
    before = [p.detach().clone() for p in model.parameters()]
    variant.adam_beta2(0.999)
    variant.first_layer_lr(0.1)
    loop = fit.FitLoop(model, FIT, fit._PixelPool(two_tile_targets(), torch.device("cpu")), seed=0)
    loop.step(FIT.warmup_steps)  # at the peak: Adam's first step moves every weight by about lr
    moved = [(p.detach() - b).abs().max().item() for p, b in zip(model.parameters(), before)]
    first = {id(model.weights[0]), id(model.biases[0])}
    for p, m in zip(model.parameters(), moved):
        expected = 1e-3 if id(p) in first else 1e-2
        assert m == pytest.approx(expected, rel=0.05)
    assert loop.opt.param_groups[0]["betas"] == (0.9, 0.999)
    assert [g["lr"] for g in loop.opt.param_groups] == [pytest.approx(1e-2), pytest.approx(1e-3)]


def test_first_layer_lr_one_changes_nothing(variant):
    init = fit.FitLoop.__init__
    variant.first_layer_lr(1.0)
    assert fit.FitLoop.__init__ is init
