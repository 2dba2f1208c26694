"""The per-tile choice of how many hidden units to keep (loe_codec.pruning) and unit masks in fine-tuning."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from loe_codec.config import CodecConfig, FitConfig, ModelConfig, QuantConfig, TileConfig
from loe_codec.fitted import FittedBatch, batch_steps
from loe_codec.fit import finetune_quantized, fit_tiles
from loe_codec.model import TiledLoE
from loe_codec.model.units import all_units, drop_units
from loe_codec.pruning import rung_units, tune_rungs, unit_importance
from loe_codec.rate import Probe, layer_sensitivity
from support import two_tile_targets

CONFIG = CodecConfig(model=ModelConfig(width=8, banks=(1, 2, 2, 1), pe_frequencies=2),
                     fit=FitConfig(steps=40, samples_per_tile=256, learning_rate=1e-2, warmup_steps=5),
                     quant=QuantConfig(slope=1e-6, qat_steps=8, unit_ladder=(1.0, 0.5, 0.25)),
                     tile=TileConfig(size=10, margin=2))


@pytest.fixture(scope="module")
def fitted():
    targets = two_tile_targets()
    model = fit_tiles(CONFIG.model, CONFIG.fit, targets)
    probe = Probe.of(targets, [140, 140], per_tile=512)
    batch = FittedBatch.of([SimpleNamespace(index=0), SimpleNamespace(index=1)], model,
                           layer_sensitivity(model, probe), probe, CONFIG)
    return batch, targets


def test_a_unit_without_outgoing_weights_does_not_matter(fitted):
    batch, _ = fitted
    model = TiledLoE(CONFIG.model, [w.detach().clone() for w in batch.model.weights],
                     [b.detach().clone() for b in batch.model.biases])
    model.weights[2].data[1, :, 5, :] = 0  # tile 1, unit 5 of hidden layer 1
    before = [w.detach().clone() for w in model.weights]
    scores = unit_importance(model, batch.probe)
    assert [tuple(s.shape) for s in scores] == [(2, 8)] * 3
    assert scores[1][1, 5] == 0 and scores[1][0, 5] > 0 and (scores[1][1] > 0).sum() == 7
    assert all(torch.equal(a, b) for a, b in zip(before, model.weights))  # the weights are left as they were


def test_rungs_keep_the_most_important_units():
    scores = [torch.tensor([[5.0, 1.0, 3.0, 0.5], [0.0, 2.0, 9.0, 4.0]])]
    assert rung_units(scores, 0.5)[0].tolist() == [[True, False, True, False], [False, False, True, True]]
    assert rung_units(scores, 1.0)[0].all()
    assert rung_units(scores, 0.01)[0].sum(dim=1).tolist() == [1, 1]  # at least one unit


def test_fine_tuning_with_units_keeps_dropped_weights_at_zero(fitted):
    batch, targets = fitted
    units = all_units(2, CONFIG.model.layers, CONFIG.model.width)
    units[0][0, :3] = False
    units[2][1, 4:] = False
    model = TiledLoE(CONFIG.model, [w.detach().clone() for w in batch.model.weights],
                     [b.detach().clone() for b in batch.model.biases])
    steps = batch_steps(batch, CONFIG.quant.slope)
    model.quantize_in_loop(steps, batch.offsets, units)
    used = [model.weight(layer) for layer in range(CONFIG.model.layers)]
    assert torch.equal(used[0][0, :, :, :3], torch.zeros_like(used[0][0, :, :, :3]))  # columns of dropped outputs
    assert torch.equal(used[1][0, :, :3, :], torch.zeros_like(used[1][0, :, :3, :]))  # rows of dropped inputs
    assert used[1][1, :, :3, :].abs().sum() > 0  # the other tile keeps them
    model.quantize_in_loop(None)
    tuned = finetune_quantized(model, steps, CONFIG.fit, CONFIG.quant, targets, units=units)
    assert tuned.quant_units is None  # off again afterwards
    with pytest.raises(ValueError, match="units"):
        tuned.quantize_in_loop(steps, None, units[:-1])


def test_the_slope_decides_how_many_units_tiles_keep(fitted):
    batch, targets = fitted
    rungs = tune_rungs(batch, batch_steps(batch, 1e-3), CONFIG, targets, "cpu")
    assert [r.units[0].sum(dim=1).tolist() for r in rungs] == [[8, 8], [4, 4], [2, 2]]
    assert all(r.rungs is None and r.tiles is batch.tiles for r in rungs)
    candidate = dataclasses.replace(batch, rungs=rungs)
    kept = {}
    for slope in (1e-9, 10.0):
        chosen = candidate.selected(slope, CONFIG)
        assert [tuple(u.shape) for u in chosen.units] == [(2, 8)] * 3 and chosen.units[0].dtype == torch.bool
        counts = torch.stack([u.sum(dim=1) for u in chosen.units])  # [layers - 1, T]: one rung per tile
        assert (counts == counts[0]).all()
        kept[slope] = counts[0].tolist()
        for t, n in enumerate(kept[slope]):  # each tile's network is its rung's
            rung = rungs[[8, 4, 2].index(n)]
            assert torch.equal(chosen.model.weights[1][t], rung.model.weights[1][t].detach())
    assert kept[1e-9] == [8, 8]  # bits are free: the full network
    assert kept[10.0] == [2, 2]  # bits are dear: the smallest rung
    # Estimates at a slope count the choice made at that slope.
    assert candidate.squared_error(10.0, CONFIG).tolist() == \
        candidate.selected(10.0, CONFIG).squared_error_at(batch_steps(candidate.selected(10.0, CONFIG), 10.0)).tolist()
    assert batch.selected(1e-3, CONFIG) is batch  # no candidates: the batch itself


def test_dropped_units_cost_no_bits_in_the_estimate(fitted):
    batch, _ = fitted
    steps = batch_steps(batch, 1e-4)
    full = batch.bytes_at(steps, CONFIG)
    half = dataclasses.replace(batch, units=[u & (torch.arange(8) < 4) for u in all_units(2, 4, 8)])
    assert (half.bytes_at(steps, CONFIG) < 0.6 * full).all()
    assert torch.equal(drop_units(list(batch.model.weights), None)[0], batch.model.weights[0])
