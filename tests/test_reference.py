"""The seeded reference weights (loe_codec.reference): fixed for ever, since files are coded against them."""

import numpy as np
import pytest
import torch

from loe_codec.config import ModelConfig
from loe_codec.model.network import init_tile_parameters
from loe_codec.reference import (batch_references, fitted_gains, initial_biases, reference_weights, tile_seed,
                                 uniform)

MODEL = ModelConfig(width=8, banks=(1, 2, 2, 1), pe_frequencies=2, out_channels=3)


def test_the_generator_never_changes():
    """Pinned values: a change here would silently misdecode every file coded against the reference."""
    assert uniform(0, 0, 4).tolist() == [0.3048969507217407, -0.6672071218490601, 0.019757986068725586,
                                         0.9511433839797974]
    assert uniform(123456, 3, 3).tolist() == [0.5158209800720215, -0.06280624866485596, 0.7132860422134399]
    assert uniform(2**31 - 1, 9, 2).tolist() == [0.11613011360168457, 0.1374518871307373]
    assert tile_seed(0, 0) == 17 and tile_seed(4, 7) == 4 * 1_000_003 + 7 * 7919 + 17


def test_uniform_is_uniform_in_minus_one_one_and_streams_differ():
    u = uniform(5, 1, 200_000)
    assert u.dtype == np.float32 and u.min() >= -1.0 and u.max() < 1.0
    assert abs(u.mean()) < 0.01 and abs(u.std() - 1 / np.sqrt(3)) < 0.01
    assert np.array_equal(uniform(5, 1, 10), u[:10])  # a prefix does not depend on the count
    assert not np.array_equal(uniform(5, 2, 10), u[:10]) and not np.array_equal(uniform(6, 1, 10), u[:10])


def test_reference_is_the_initialisation_with_the_model_bounds():
    weights, biases = init_tile_parameters(MODEL, 42)
    refs = reference_weights(MODEL, 42)
    assert all(torch.equal(w, r) for w, r in zip(weights, refs))
    assert all(torch.equal(b, e) for b, e in zip(biases, initial_biases(MODEL, 42)))
    for layer, (w, (fan_in, fan_out), nb) in enumerate(zip(refs, MODEL.layer_shapes(), MODEL.bank_counts())):
        assert w.dtype == torch.float32 and tuple(w.shape) == (nb, fan_in, fan_out)
        bound = 1 / fan_in if layer == 0 else np.sqrt(6 / fan_in)  # SIREN first layer, then He-uniform
        assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound
    assert not torch.equal(reference_weights(MODEL, 43)[1], refs[1])


def test_fitted_gains_minimise_the_residual_and_are_float16_exact():
    refs = batch_references(MODEL, [1, 2, 3])
    assert [tuple(r.shape) for r in refs] == [(3, nb, i, o) for (i, o), nb in zip(MODEL.layer_shapes(),
                                                                                    MODEL.bank_counts())]
    gen = torch.Generator().manual_seed(0)
    true = torch.tensor([[0.9, 0.0, -0.5, 1.3], [0.2, 1.0, 0.7, 0.0], [1.0, 1.0, 1.0, 1.0]])
    weights = [true[:, l].view(-1, 1, 1, 1) * r + 0.01 * torch.randn(r.shape, generator=gen)
               for l, r in enumerate(refs)]
    gains = fitted_gains(weights, refs)
    assert gains.shape == (3, MODEL.layers) and torch.equal(gains, gains.half().float())
    assert torch.allclose(gains, true, atol=0.05)
    for l, (w, r) in enumerate(zip(weights, refs)):  # no other gain leaves a smaller residual
        best = (w - gains[:, l].view(-1, 1, 1, 1) * r).pow(2).sum()
        for delta in (-0.01, 0.01):
            assert best <= (w - (gains[:, l] + delta).view(-1, 1, 1, 1) * r).pow(2).sum()


@pytest.mark.parametrize("dims", [2, 3])
def test_references_exist_for_video_models_too(dims):
    cfg = ModelConfig(dims=dims, width=6, banks=(1, 2, 1), pe_frequencies=1, out_channels=3)
    refs = reference_weights(cfg, 7)
    assert [tuple(r.shape) for r in refs] == [(nb, i, o) for (i, o), nb in zip(cfg.layer_shapes(),
                                                                                 cfg.bank_counts())]
