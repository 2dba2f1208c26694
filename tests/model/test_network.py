import dataclasses
import itertools
import math

import pytest
import torch

from loe_codec.config import ModelConfig
from loe_codec.model import TiledLoE, bank_index
from loe_codec.model.network import init_tile_parameters
from loe_codec.quantize import quantize_to_step, storable_steps


def _random_model(cfg: ModelConfig, tiles: int, dtype=torch.float64) -> TiledLoE:
    gen = torch.Generator().manual_seed(5)
    weights = [torch.randn(tiles, nb, i, o, generator=gen, dtype=dtype) / math.sqrt(i)
               for (i, o), nb in zip(cfg.layer_shapes(), cfg.bank_counts())]
    biases = [torch.randn(tiles, o, generator=gen, dtype=dtype) * 0.1 for _, o in cfg.layer_shapes()]
    return TiledLoE(cfg, weights, biases)


def _activation(cfg: ModelConfig, layer: int, x: torch.Tensor) -> torch.Tensor:
    if cfg.activation == "sine":
        return torch.sin(cfg.sine_w0 * x) if layer == 0 else torch.sin(x)
    if cfg.activation == "relu":
        return torch.relu(x)
    return torch.nn.functional.gelu(x)


def _manual_encoding(coords: torch.Tensor, freqs: int) -> torch.Tensor:
    c = coords * 2 - 1
    parts = [c]
    parts += [torch.sin(2**k * math.pi * c[:, [d]]) for d in range(coords.shape[1]) for k in range(freqs)]
    parts += [torch.cos(2**k * math.pi * c[:, [d]]) for d in range(coords.shape[1]) for k in range(freqs)]
    return torch.cat(parts, 1)


@pytest.mark.parametrize("activation", ["sine", "relu", "gelu"])
@pytest.mark.parametrize("dims", [2, 3])
def test_all_ones_banks_equal_plain_mlp(activation, dims):
    cfg = ModelConfig(dims=dims, width=10, banks=(1, 1, 1, 1), activation=activation, pe_frequencies=3,
                      sine_w0=5.0, out_channels=3)
    model = _random_model(cfg, tiles=1)
    # The same weights in a plain torch MLP (nn.Linear stores [out, in]).
    layers = []
    for layer, (w, b) in enumerate(zip(model.weights, model.biases)):
        lin = torch.nn.Linear(w.shape[2], w.shape[3], dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(w[0, 0].T)
            lin.bias.copy_(b[0])
        layers.append(lin)
    coords = torch.rand(64, dims, dtype=torch.float64)
    x = _manual_encoding(coords, cfg.pe_frequencies)
    for layer, lin in enumerate(layers):
        x = lin(x)
        if layer < len(layers) - 1:
            x = _activation(cfg, layer, x)
    got = model(torch.zeros(64, dtype=torch.long), coords)
    torch.testing.assert_close(got, x)


def test_all_ones_banks_ignore_the_arrangement_and_position():
    cfg = ModelConfig(width=8, banks=(1, 1, 1), pe_frequencies=0, activation="relu")
    model = _random_model(cfg, tiles=1)
    # With pe_frequencies=0 and relu, a plain MLP is piecewise linear in p: check a linear piece
    # numerically against a hand-computed product of the matrices.
    coords = torch.rand(32, 2, dtype=torch.float64)
    h = torch.relu((coords * 2 - 1) @ model.weights[0][0, 0] + model.biases[0][0])
    h = torch.relu(h @ model.weights[1][0, 0] + model.biases[1][0])
    expect = h @ model.weights[2][0, 0] + model.biases[2][0]
    torch.testing.assert_close(model(torch.zeros(32, dtype=torch.long), coords), expect)


def test_nearest_blend_only_the_picked_bank_gets_gradient():
    cfg = ModelConfig(width=6, banks=(2, 3, 2, 1), pe_frequencies=2, subdivide=2)
    model = _random_model(cfg, tiles=1)
    scales = cfg.scales()
    for point in torch.rand(6, 2, dtype=torch.float64):
        model.zero_grad(set_to_none=True)
        coords = point.unsqueeze(0)
        model(torch.zeros(1, dtype=torch.long), coords).sum().backward()
        for layer, n in enumerate(cfg.banks):
            grad = model.weights[layer].grad[0]  # [banks, in, out]
            norms = grad.flatten(1).abs().sum(1)
            picked = int(bank_index(coords, n, scales[layer])[0])
            assert norms[picked] > 0, f"layer {layer}: the picked bank {picked} got no gradient"
            others = [b for b in range(n**2) if b != picked]
            assert float(norms[others].sum()) == 0.0, f"layer {layer}: banks other than {picked} got gradient"


@pytest.mark.parametrize("blend", ["nearest", "linear"])
@pytest.mark.parametrize("dims,banks", [(2, (1, 2, 3, 1)), (2, (2, 2, 1)), (3, (1, 2, 2, 1))])
def test_tiled_batch_equals_separate_networks(blend, dims, banks):
    cfg = ModelConfig(dims=dims, width=8, banks=banks, blend=blend, pe_frequencies=2, out_channels=4)
    tiles = 5
    batched = TiledLoE.initialised(cfg, seeds=[11, 22, 33, 44, 55])
    singles = [TiledLoE(cfg, [w[k:k + 1].detach().clone() for w in batched.weights],
                        [b[k:k + 1].detach().clone() for b in batched.biases]) for k in range(tiles)]
    # Mixed, shuffled samples; tile 3 gets none, tile 0 gets many.
    tile = torch.cat([torch.zeros(40, dtype=torch.long), torch.tensor([1, 2, 4] * 15)])
    tile = tile[torch.randperm(tile.numel())]
    coords = torch.rand(tile.numel(), dims)
    with torch.no_grad():
        got = batched(tile, coords)
        for k in range(tiles):
            sel = tile == k
            if not bool(sel.any()):
                continue
            expect = singles[k](torch.zeros(int(sel.sum()), dtype=torch.long), coords[sel])
            torch.testing.assert_close(got[sel], expect, rtol=1e-5, atol=1e-5)


def test_tile_major_fast_path_equals_general_path():
    cfg = ModelConfig(width=8, banks=(1, 2, 2, 1), pe_frequencies=2)
    model = TiledLoE.initialised(cfg, seeds=[1, 2, 3])
    per = 20
    tile = torch.arange(3).repeat_interleave(per)
    coords = torch.rand(3 * per, 2)
    with torch.no_grad():
        torch.testing.assert_close(model(tile, coords, tile_major=True), model(tile, coords, tile_major=False))


def test_linear_blend_equals_manual_blend_of_neighbouring_banks():
    n = 3
    cfg = ModelConfig(width=6, banks=(1, n, 1), blend="linear", pe_frequencies=2, activation="relu")
    model = _random_model(cfg, tiles=2)
    alpha = cfg.scales()[1]
    coords = torch.rand(50, 2, dtype=torch.float64)
    tile = torch.randint(0, 2, (50,))
    # Hand-made forward pass: layer 1 is sum over the 4 surrounding cells of weight * (x @ W[cell]).
    x = _manual_encoding(coords, cfg.pe_frequencies)
    w0, w1, w2 = (w.detach() for w in model.weights)
    b0, b1, b2 = (b.detach() for b in model.biases)
    h = torch.relu(torch.einsum("ni,nio->no", x, w0[tile, 0]) + b0[tile])
    u = coords * alpha - 0.5
    lo = torch.floor(u)
    frac = u - lo
    mixed = torch.zeros(50, cfg.width, dtype=torch.float64)
    total_weight = torch.zeros(50, dtype=torch.float64)
    for cx, cy in itertools.product((0, 1), repeat=2):
        ix = (lo[:, 0].long() + cx) % n
        iy = (lo[:, 1].long() + cy) % n
        wgt = (frac[:, 0] if cx else 1 - frac[:, 0]) * (frac[:, 1] if cy else 1 - frac[:, 1])
        total_weight += wgt
        bank = ix * n + iy
        mixed += wgt.unsqueeze(1) * torch.einsum("ni,nio->no", h, w1[tile, bank])
    torch.testing.assert_close(total_weight, torch.ones(50, dtype=torch.float64))
    h = torch.relu(mixed + b1[tile])
    expect = torch.einsum("ni,nio->no", h, w2[tile, 0]) + b2[tile]
    with torch.no_grad():
        torch.testing.assert_close(model(tile, coords), expect)


def test_linear_blend_is_continuous_and_matches_nearest_at_cell_centres():
    base = ModelConfig(width=8, banks=(1, 3, 1), pe_frequencies=2)
    near = TiledLoE.initialised(base, seeds=[7])
    lin = TiledLoE(dataclasses.replace(base, blend="linear"), [w.detach() for w in near.weights],
                   [b.detach() for b in near.biases])
    alpha = base.scales()[1]
    cells = torch.tensor([[0, 0], [1, 2], [2, 1]], dtype=torch.float32)
    centres = (cells + 0.5) / alpha
    zero = torch.zeros(3, dtype=torch.long)
    with torch.no_grad():
        # At a cell centre the linear blend gives that cell all the weight: same as nearest.
        torch.testing.assert_close(lin(zero, centres), near(zero, centres), rtol=1e-5, atol=1e-5)
        # Across a cell edge nearest jumps, linear does not.
        eps = 1e-4
        edge = torch.tensor([[1.0 / alpha, 0.3]])
        left, right = edge - torch.tensor([[eps, 0.0]]), edge + torch.tensor([[eps, 0.0]])
        one = torch.zeros(1, dtype=torch.long)
        jump_lin = float((lin(one, right) - lin(one, left)).abs().max())
        jump_near = float((near(one, right) - near(one, left)).abs().max())
        assert jump_near > 1e-3
        assert jump_lin < 0.05 * jump_near


@pytest.mark.parametrize("blend", ["nearest", "linear"])
def test_dims_3_forward_backward_and_fit(blend):
    cfg = ModelConfig(dims=3, width=12, banks=(1, 2, 2, 1), blend=blend, pe_frequencies=2, out_channels=2,
                      activation="relu")
    model = TiledLoE.initialised(cfg, seeds=[3, 4])
    assert cfg.in_features == 3 * 5
    assert [tuple(w.shape) for w in model.weights] == [(2, 1, 15, 12), (2, 8, 12, 12), (2, 8, 12, 12),
                                                       (2, 1, 12, 2)]
    coords = torch.rand(256, 3)
    tile = torch.arange(2).repeat_interleave(128)
    target = torch.stack([coords[:, 0] - coords[:, 2], coords[:, 1] * 0.5], 1) - 0.25
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = ((model(tile, coords, tile_major=True) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        losses.append(float(loss.detach()))
        opt.step()
    assert all(w.grad is not None and bool(torch.isfinite(w.grad).all()) for w in model.weights)
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("arrangement,expected", [
    ("coarse_to_fine", [1.0, 2.0, 4.0, 8.0, 1.0]),
    ("fine_to_coarse", [1.0, 8.0, 4.0, 2.0, 1.0]),
    ("uniform_coarse", [1.0, 2.0, 2.0, 2.0, 1.0]),
    ("uniform_fine", [1.0, 8.0, 8.0, 8.0, 1.0]),
])
def test_arrangement_scales(arrangement, expected):
    cfg = ModelConfig(banks=(1, 2, 2, 2, 1), arrangement=arrangement, subdivide=2)
    assert cfg.scales() == expected


def test_scales_follow_first_banked_layer_and_subdivide():
    cfg = ModelConfig(banks=(3, 1, 2, 2), subdivide=3)
    # Base is the first banked layer's n = 3; each later banked layer is 3x finer; unbanked layers 1.
    assert cfg.scales() == [3.0, 1.0, 9.0, 27.0]
    assert ModelConfig(banks=(1, 1, 1)).scales() == [1.0, 1.0, 1.0]


def test_coarse_to_fine_first_banked_layer_uses_each_bank_once_per_tile():
    for arrangement in ("coarse_to_fine", "fine_to_coarse", "uniform_coarse", "uniform_fine"):
        cfg = ModelConfig(banks=(1, 2, 2, 2, 1), arrangement=arrangement)
        scales = cfg.scales()
        line = torch.stack([(torch.arange(400) + 0.5) / 400, torch.full((400,), 0.5)], 1)
        for layer, n in enumerate(cfg.banks):
            if n == 1:
                continue
            ids = bank_index(line, n, scales[layer])
            cells_crossed = int((ids[1:] != ids[:-1]).sum()) + 1
            assert cells_crossed == scales[layer], (arrangement, layer)


def test_initialisation_is_deterministic_and_seed_dependent():
    cfg = ModelConfig(width=8, banks=(1, 2, 1))
    a, b, c = (init_tile_parameters(cfg, s) for s in (5, 5, 6))
    assert all(torch.equal(x, y) for x, y in zip(a[0] + a[1], b[0] + b[1]))
    assert not torch.equal(a[0][1], c[0][1])


def test_mismatched_parameter_shapes_are_refused():
    cfg = ModelConfig(width=8, banks=(1, 2, 1))
    w, b = init_tile_parameters(cfg, 0)
    with pytest.raises(ValueError):
        TiledLoE(cfg, [x.unsqueeze(0) for x in w[:2]], [x.unsqueeze(0) for x in b[:2]])
    bad = [x.unsqueeze(0) for x in w]
    bad[1] = bad[1][:, :2]  # 2 banks instead of 4
    with pytest.raises(ValueError):
        TiledLoE(cfg, bad, [x.unsqueeze(0) for x in b])


@pytest.mark.parametrize("arrangement", ["coarse_to_fine", "fine_to_coarse", "uniform_coarse", "uniform_fine"])
@pytest.mark.parametrize("dims,banks", [(2, (1, 2, 2, 2, 1)), (2, (2, 3, 1)), (3, (1, 2, 2, 1))])
def test_packed_inference_equals_per_layer_dispatch(arrangement, dims, banks):
    # Without gradients, nearest-bank models sort once for all layers (_forward_packed);
    # with gradients they dispatch layer by layer. Both must give the same outputs,
    # also for clustered samples whose (tile, bank) groups are very unequal.
    cfg = ModelConfig(dims=dims, width=8, banks=banks, arrangement=arrangement, pe_frequencies=2)
    model = TiledLoE.initialised(cfg, seeds=[5, 6, 7])
    clustered = torch.rand(300, dims) * 0.2 + 0.1
    spread = torch.rand(200, dims)
    coords = torch.cat([clustered, spread])
    tile = torch.cat([torch.zeros(300, dtype=torch.long), torch.randint(0, 3, (200,))])
    perm = torch.randperm(coords.shape[0])
    coords, tile = coords[perm], tile[perm]
    with torch.no_grad():
        packed = model(tile, coords)
    per_layer = model(tile, coords).detach()
    torch.testing.assert_close(packed, per_layer, rtol=1e-5, atol=1e-5)


def _rounded_copy(model: TiledLoE, steps: torch.Tensor) -> TiledLoE:
    """A plain model whose weights are the integers * steps a file would store."""
    weights = [quantize_to_step(w, steps[:, layer].view(-1, 1, 1, 1)).float() * steps[:, layer].view(-1, 1, 1, 1)
               for layer, w in enumerate(model.weights)]
    return TiledLoE(model.config, weights, [b.detach().clone() for b in model.biases])


@pytest.mark.parametrize("blend", ["nearest", "linear"])
@pytest.mark.parametrize("banks", [(1, 2, 2, 1), (2, 3, 1)])
def test_quantize_in_loop_equals_a_model_of_the_rounded_weights(blend, banks):
    cfg = ModelConfig(width=8, banks=banks, blend=blend, pe_frequencies=2)
    model = TiledLoE.initialised(cfg, seeds=[3, 4, 5])
    rms = torch.stack([w.detach().pow(2).mean(dim=(1, 2, 3)).sqrt() for w in model.weights], 1)  # [T, layers]
    steps = storable_steps(rms * torch.tensor([0.3, 0.6, 1.2]).view(3, 1))  # coarse, different per tile
    rounded = _rounded_copy(model, steps)
    tile = torch.arange(3).repeat_interleave(40)
    coords = torch.rand(120, 2)
    with torch.no_grad():
        plain = model(tile, coords)
    assert model.quant_steps is None
    model.quantize_in_loop(steps)
    assert torch.equal(model.quant_steps, steps)
    for layer in range(cfg.layers):
        assert torch.equal(model.weight(layer).detach(), rounded.weights[layer].detach())
    with torch.no_grad():
        expect = rounded(tile, coords)
        assert torch.equal(model(tile, coords), expect)  # packed inference path
        assert not torch.allclose(plain, expect, atol=1e-3)  # the steps are coarse enough to matter
    for tile_major in (False, True):  # the training paths, against the same paths of the rounded model
        got = model(tile, coords, tile_major=tile_major)
        assert got.requires_grad and torch.equal(got.detach(), rounded(tile, coords, tile_major=tile_major).detach())
    # Straight-through: the float weights get the gradient the rounded weights would get.
    model(tile, coords).square().sum().backward()
    rounded(tile, coords).square().sum().backward()
    for w, r in zip(model.weights, rounded.weights):
        torch.testing.assert_close(w.grad, r.grad, rtol=1e-5, atol=1e-7)
    model.quantize_in_loop(None)
    assert model.quant_steps is None and model.weight(0) is model.weights[0]
    with torch.no_grad():
        assert torch.equal(model(tile, coords), plain)


def test_quantize_in_loop_rounds_onto_grids_shifted_by_the_offsets():
    cfg = ModelConfig(width=8, banks=(1, 2, 1), pe_frequencies=2)
    model = TiledLoE.initialised(cfg, seeds=[1, 2])
    steps = torch.full((2, cfg.layers), 0.25)
    gen = torch.Generator().manual_seed(0)
    offsets = [torch.rand(w.shape, generator=gen) for w in model.weights]
    model.quantize_in_loop(steps, offsets)
    for layer, (w, o) in enumerate(zip(model.weights, offsets)):
        q = model.weight(layer).detach()
        k = (q - o) / 0.25
        assert torch.allclose(k, torch.round(k), atol=1e-4)  # on the shifted grid
        assert (q - w.detach()).abs().max() <= 0.125 + 1e-6  # the nearest point of it
    with pytest.raises(ValueError, match="offsets"):
        model.quantize_in_loop(steps, offsets[:-1])
    model.quantize_in_loop(None)
    assert model.quant_offsets is None


def test_quantize_in_loop_checks_the_steps_shape():
    cfg = ModelConfig(width=8, banks=(1, 2, 1), pe_frequencies=2)
    model = TiledLoE.initialised(cfg, seeds=[1, 2])
    for shape in [(2,), (1, 3), (2, 4), (3, 2)]:
        with pytest.raises(ValueError):
            model.quantize_in_loop(torch.full(shape, 0.1))
    assert model.quant_steps is None


@pytest.mark.parametrize("time_banks", [(1, 1, 1, 1), (1, 3, 2, 1)])
def test_time_banks_agree_across_dispatch_paths_and_ignore_time_where_one(time_banks):
    cfg = ModelConfig(dims=3, width=8, banks=(1, 2, 2, 1), time_banks=time_banks, pe_frequencies=0)
    assert cfg.bank_counts() == [1, 4 * time_banks[1], 4 * time_banks[2], 1]
    model = TiledLoE.initialised(cfg, seeds=[5, 6])
    per = 150
    tile = torch.arange(2).repeat_interleave(per)
    coords = torch.rand(2 * per, 3)
    with torch.no_grad():
        packed = model(tile, coords)
        expect = model(tile, coords, tile_major=True, dispatch="packed")
        for dispatch in ("grouped", "dense"):
            torch.testing.assert_close(model(tile, coords, tile_major=True, dispatch=dispatch), expect)
    torch.testing.assert_close(packed, expect, rtol=1e-5, atol=1e-5)
    if time_banks == (1, 1, 1, 1):
        # Banks over space only: the bank of every layer is that of the 2-D (x, y) grid.
        spatial = ModelConfig(dims=2, width=8, banks=(1, 2, 2, 1))
        for got, want in zip(model.nearest_banks(coords), TiledLoE.initialised(spatial, [5]).nearest_banks(
                coords[:, :2])):
            assert (got is None and want is None) or torch.equal(got, want)
