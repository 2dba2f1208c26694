import pytest
import torch

from loe_codec.config import ModelConfig
from loe_codec.hostreads import HostReads
from loe_codec.model import TiledLoE, tile_major
from loe_codec.model.tile_major import dense_bank_linear, permute_rows, resolve_dispatch, sort_by_bank

CONFIGS = {
    "balanced": ModelConfig(),
    "video": ModelConfig(dims=3, width=12, banks=(1, 2, 2, 1), pe_frequencies=2),
    "relu, banked first and last": ModelConfig(width=8, banks=(2, 1, 3), activation="relu"),
}


def _batch(tiles: int, per_tile: int, dims: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.arange(tiles).repeat_interleave(per_tile), torch.rand(tiles * per_tile, dims, generator=g)


def _forward_backward(model: TiledLoE, tile, coords, dispatch: str):
    model.zero_grad(set_to_none=True)
    y = model(tile, coords, tile_major=True, dispatch=dispatch)
    cot = torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
    (y * cot).sum().backward()
    return y.detach(), [p.grad.clone() for p in model.parameters()]


def test_auto_is_packed_on_the_cpu_and_sync_free_on_cuda(monkeypatch):
    assert resolve_dispatch("auto", torch.device("cpu")) == "packed"
    assert resolve_dispatch("dense", torch.device("cpu")) == "dense"
    monkeypatch.setattr(tile_major, "fast_kernel_available", lambda device: True)
    assert resolve_dispatch("auto", torch.device("cuda")) == "grouped"
    monkeypatch.setattr(tile_major, "fast_kernel_available", lambda device: False)
    assert resolve_dispatch("auto", torch.device("cuda")) == "dense"
    with pytest.raises(ValueError, match="dispatch must be one of"):
        resolve_dispatch("fast", torch.device("cpu"))


def test_sort_by_bank_groups_each_tile_by_bank_in_place():
    tiles, rows, banks = 3, 10, 4
    bank = torch.randint(0, banks - 1, (tiles * rows,))  # bank 3 stays empty
    order, ends = sort_by_bank(bank, tiles, banks)
    assert sorted(order.tolist()) == list(range(tiles * rows))
    assert torch.equal(order // rows, torch.arange(tiles * rows) // rows)  # rows stay in their tile
    key = (order // rows) * banks + bank[order]
    assert torch.equal(key, key.sort().values)
    counts = torch.bincount(torch.arange(tiles).repeat_interleave(rows) * banks + bank, minlength=tiles * banks)
    assert torch.equal(ends, counts.cumsum(0))


def test_sort_is_stable_within_a_bank():
    order, _ = sort_by_bank(torch.tensor([1, 0, 1, 0, 1, 0]), 2, 2)
    assert order.tolist() == [1, 0, 2, 3, 5, 4]


def test_permute_rows_and_its_inverse_with_gradients():
    x = torch.randn(6, 3, requires_grad=True)
    perm = torch.tensor([2, 0, 5, 1, 4, 3])
    y = permute_rows(x, perm)
    assert torch.equal(y, x[perm])
    assert torch.equal(permute_rows(y, perm, inverse=True), x)
    cot = torch.randn(6, 3)
    (y * cot).sum().backward()
    assert torch.equal(x.grad, torch.zeros(6, 3).index_copy_(0, perm, cot))


def test_dense_bank_linear_matches_a_loop():
    tiles, rows, banks = 3, 5, 4
    x, w = torch.randn(tiles * rows, 6), torch.randn(tiles, banks, 6, 2)
    bank = torch.randint(0, banks, (tiles * rows,))
    want = torch.stack([x[j] @ w[j // rows, bank[j]] for j in range(tiles * rows)])
    torch.testing.assert_close(dense_bank_linear(x, w, bank), want)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dispatch", ["dense", "grouped"])
def test_sync_free_dispatch_matches_the_packed_path(name, dispatch):
    cfg = CONFIGS[name]
    model = TiledLoE.initialised(cfg, [11, 12, 13])
    tile, coords = _batch(3, 96, cfg.dims)
    y_ref, g_ref = _forward_backward(model, tile, coords, "packed")
    y, g = _forward_backward(model, tile, coords, dispatch)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(g, g_ref):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dispatch", ["dense", "grouped"])
def test_sync_free_dispatch_with_quantization_in_the_loop(dispatch):
    cfg = CONFIGS["balanced"]
    model = TiledLoE.initialised(cfg, [1, 2])
    model.quantize_in_loop(torch.full((2, cfg.layers), 0.01))
    tile, coords = _batch(2, 64)
    y_ref, g_ref = _forward_backward(model, tile, coords, "packed")
    y, g = _forward_backward(model, tile, coords, dispatch)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(g, g_ref):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_only_the_packed_path_reads_group_sizes_on_the_host():
    model = TiledLoE.initialised(CONFIGS["balanced"], [1, 2])
    tile, coords = _batch(2, 64)
    reads = {}
    for dispatch in ("packed", "dense", "grouped"):
        with HostReads() as mode:
            _forward_backward(model, tile, coords, dispatch)
        reads[dispatch] = mode.ops
    assert "_local_scalar_dense" in reads["packed"]  # the detector sees host reads
    assert reads["dense"] == [] and reads["grouped"] == []
