"""The cell-batched grid inference (loe_codec/model/cells.py) against the generic sorted forward."""

import math

import pytest
import torch

from loe_codec.config import ModelConfig
from loe_codec.model import TiledLoE
from loe_codec.model.cells import AxisChunks, chunk_size


def _random_model(cfg: ModelConfig, tiles: int, dtype=torch.float32) -> TiledLoE:
    gen = torch.Generator().manual_seed(7)
    weights = [torch.randn(tiles, nb, i, o, generator=gen, dtype=dtype) / math.sqrt(i)
               for (i, o), nb in zip(cfg.layer_shapes(), cfg.bank_counts())]
    biases = [torch.randn(tiles, o, generator=gen, dtype=dtype) * 0.1 for _, o in cfg.layer_shapes()]
    return TiledLoE(cfg, weights, biases).eval()


def _grid_coords(axes: list[torch.Tensor]) -> torch.Tensor:
    """The row-major grid of ``axes`` (axis 0 fastest) as ``[N, d]`` coordinates."""
    mesh = torch.meshgrid(*reversed(axes), indexing="ij")
    return torch.stack([m.reshape(-1) for m in reversed(mesh)], 1)


def _decode_axis(length: int, start: float, gen: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """Evenly spaced sample positions like a decode's, a little past the tile domain on both sides."""
    step = (1.0 + 0.1 * float(torch.rand(1, generator=gen))) / length
    return (start + (torch.arange(length, dtype=torch.float64) + 0.5) * step).to(dtype)


@pytest.mark.parametrize("blend", ["nearest", "linear"])
@pytest.mark.parametrize("activation", ["sine", "relu", "gelu"])
@pytest.mark.parametrize("dims,banks,lengths", [
    (2, (1, 2, 2, 2, 1), (37, 29)),  # the balanced shape, odd sizes
    (2, (2, 3, 2, 1), (53, 1)),  # banked first layer, a one-sample axis
    (2, (1, 1, 1), (8, 5)),  # a plain MLP: one cell
    (3, (1, 2, 2, 1), (23, 17, 6)),  # video
    (3, (2, 2, 1), (9, 1, 3)),
])
def test_grid_forward_equals_sorted_forward(blend, activation, dims, banks, lengths):
    cfg = ModelConfig(dims=dims, width=12, banks=banks, blend=blend, activation=activation, pe_frequencies=3)
    model = _random_model(cfg, tiles=3)
    gen = torch.Generator().manual_seed(sum(lengths))
    axes = [_decode_axis(n, -0.05, gen) for n in lengths]
    got = model.forward_grid(1, axes)
    coords = _grid_coords(axes)
    with torch.inference_mode():
        expect = model(torch.full((coords.shape[0],), 1), coords)
    assert got.shape == tuple(reversed(lengths)) + (cfg.out_channels,)
    torch.testing.assert_close(got.reshape(-1, cfg.out_channels), expect, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("blend", ["nearest", "linear"])
@pytest.mark.parametrize("arrangement", ["coarse_to_fine", "fine_to_coarse", "uniform_fine"])
def test_grid_forward_on_partial_cells_in_float64(blend, arrangement):
    # Axes that start and stop inside cells (as a decode block cuts a tile), and random unsorted
    # positions: every cell is cut, and runs may repeat a bank.
    cfg = ModelConfig(width=8, banks=(1, 3, 2, 1), blend=blend, arrangement=arrangement, subdivide=3,
                      pe_frequencies=2)
    model = _random_model(cfg, tiles=2, dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    f64 = torch.float64
    for axes in ([torch.linspace(0.13, 0.71, 41, dtype=f64), torch.linspace(0.52, 0.97, 19, dtype=f64)],
                 [torch.rand(30, generator=gen, dtype=f64), torch.rand(7, generator=gen, dtype=f64)]):
        got = model.forward_grid(0, axes)
        coords = _grid_coords(axes)
        with torch.inference_mode():
            expect = model(torch.zeros(coords.shape[0], dtype=torch.long), coords)
        torch.testing.assert_close(got.reshape(-1, 3), expect, rtol=1e-10, atol=1e-10)


def test_grid_forward_of_an_empty_axis_is_empty():
    model = _random_model(ModelConfig(dims=3), tiles=1)
    got = model.forward_grid(0, [torch.rand(4), torch.zeros(0), torch.rand(2)])
    assert got.shape == (2, 0, 4, 3)


def test_grid_forward_checks_the_axis_count():
    model = _random_model(ModelConfig(), tiles=1)
    with pytest.raises(ValueError):
        model.forward_grid(0, [torch.rand(4)])


def test_axis_chunks_cover_every_sample_once_and_never_straddle_a_cell():
    floors = torch.tensor([[0] * 5 + [1] * 33 + [2] * 33 + [3] * 2,
                           [0] * 20 + [1] * 18 + [2] * 35])
    chunks = AxisChunks.of(floors)
    flat = chunks.index.reshape(-1)
    assert torch.equal(flat[chunks.valid], torch.arange(floors.shape[1]))
    for row in chunks.index:  # one cell per chunk (padding repeats the last sample)
        assert (floors[:, row] == floors[:, row[:1]]).all()
    assert torch.equal(chunks.first, chunks.index[:, 0])


def test_chunk_size_trades_padding_for_chunks():
    assert chunk_size([33] * 8) == 33
    assert chunk_size([1]) == 1
    # Two short runs and one long: halving the long run's chunks pads less.
    size = chunk_size([3, 64, 2])
    assert size < 64 and 64 % size == 0


@pytest.mark.parametrize("blend", ["nearest", "linear"])
@pytest.mark.parametrize("time_banks", [(1, 1, 1, 1), (1, 2, 1, 1), (1, 1, 3, 1)])
def test_grid_forward_with_time_banks_equals_sorted_forward(blend, time_banks):
    cfg = ModelConfig(dims=3, width=10, banks=(1, 2, 2, 1), time_banks=time_banks, blend=blend, pe_frequencies=2)
    model = _random_model(cfg, tiles=2)
    gen = torch.Generator().manual_seed(3)
    axes = [_decode_axis(n, -0.05, gen) for n in (19, 13, 11)]
    got = model.forward_grid(1, axes)
    coords = _grid_coords(axes)
    with torch.inference_mode():
        expect = model(torch.full((coords.shape[0],), 1), coords)
    torch.testing.assert_close(got.reshape(-1, cfg.out_channels), expect, rtol=1e-5, atol=1e-5)
