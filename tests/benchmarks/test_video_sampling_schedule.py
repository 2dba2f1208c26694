"""The partial error-driven sampling of benchmarks/video_sampling_schedule.py."""

from __future__ import annotations

import dataclasses
import importlib

import torch

from loe_codec import fit
from loe_codec.config import FitConfig, ModelConfig
from support import load_script, two_tile_targets

MODEL = ModelConfig(width=12, banks=(1, 2, 2, 1), pe_frequencies=3)
FIT = FitConfig(steps=20, samples_per_tile=256, learning_rate=1e-2, warmup_steps=5, seed=0, sampling="error")


def test_uniform_after_switches_the_fit_to_uniform_samples(monkeypatch):
    monkeypatch.setattr(fit.FitLoop, "step", fit.FitLoop.step)  # restored after the test
    targets = two_tile_targets()
    plain = fit.fit_tiles(MODEL, FIT, targets, device="cpu")
    load_script("benchmarks/video_sampling_schedule.py").uniform_after(0.5)
    pools = []
    step = fit.FitLoop.step

    def spy(self, i):  # which samples step i drew
        loss = step(self, i)
        pools.append((self.pool.sampler is not None, self.pool.weights is not None))
        return loss

    monkeypatch.setattr(fit.FitLoop, "step", spy)
    switched = fit.fit_tiles(MODEL, FIT, targets, device="cpu")
    assert pools == [(True, True)] * 10 + [(False, False)] * 10
    assert not torch.equal(plain.weights[1], switched.weights[1])


def test_qat_uniform_fine_tunes_on_uniform_samples(monkeypatch):
    encode = importlib.import_module("loe_codec.encode")
    monkeypatch.setattr(encode, "finetune_quantized", encode.finetune_quantized)  # restored after the test
    seen = []
    monkeypatch.setattr(fit, "finetune_quantized", lambda model, steps, fit_cfg, *a, **k: seen.append(fit_cfg))
    load_script("benchmarks/video_sampling_schedule.py").qat_uniform()
    encode.finetune_quantized(None, None, FIT)
    assert seen == [dataclasses.replace(FIT, sampling="uniform")]
