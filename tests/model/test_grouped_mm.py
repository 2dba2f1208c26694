import pytest
import torch

from loe_codec.model import grouped_mm
from loe_codec.model.grouped_mm import emulated_grouped_mm, grouped_matmul, padded

HAS_GROUPED_MM = hasattr(torch, "_grouped_mm")


def _per_group(sizes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``ends`` ``[G]`` int64 and the group ``[N]`` of every row, for groups of ``sizes`` rows."""
    ends = torch.tensor(sizes).cumsum(0)
    return ends, torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))


def _loop_reference(x, weight, group):
    """Forward and gradients (of a fixed random cotangent) by one matmul per row."""
    x, weight = x.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    y = torch.stack([x[j] @ weight[group[j]] for j in range(x.shape[0])])
    cot = torch.randn(y.shape, generator=torch.Generator().manual_seed(5))
    (y * cot).sum().backward()
    return y.detach(), x.grad, weight.grad, cot


def _tile_major_groups(tiles: int, rows: int, banks: int, seed: int = 0) -> list[int]:
    """Group sizes of ``tiles`` tiles of ``rows`` rows split at random among ``banks`` banks (some empty)."""
    g = torch.Generator().manual_seed(seed)
    sizes = []
    for _ in range(tiles):
        bank = torch.randint(0, banks - 1, (rows,), generator=g)  # the last bank stays empty
        sizes += torch.bincount(bank, minlength=banks).tolist()
    return sizes


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_padded_operands_have_16_byte_rows_and_zero_padding(dtype):
    t = torch.randn(5, 3, 22)
    p = padded(t, dtype, dims=2)
    step = 16 // p.element_size()
    assert p.dtype == dtype and p.is_contiguous()
    assert p.shape[0] == 5 and p.shape[1] % step == 0 and p.shape[2] % step == 0
    torch.testing.assert_close(p[:, :3, :22].float(), t.to(dtype).float())
    assert p[:, 3:].abs().max() == 0 and p[:, :, 22:].abs().max() == 0
    assert padded(torch.randn(4, 16), dtype).shape == (4, 16)  # already aligned: no padding


def test_emulation_matches_a_loop_including_empty_groups():
    sizes = [3, 0, 5, 2, 0]
    ends, group = _per_group(sizes)
    x, w, g = torch.randn(10, 6), torch.randn(5, 6, 4), torch.randn(10, 4)
    offs = ends.to(torch.int32)
    torch.testing.assert_close(emulated_grouped_mm(x, w, offs), torch.stack([x[j] @ w[group[j]] for j in range(10)]))
    want = torch.stack([x[group == k].t() @ g[group == k] for k in range(5)])
    torch.testing.assert_close(emulated_grouped_mm(x.t(), g, offs), want)
    assert emulated_grouped_mm(x.t(), g, offs)[1].abs().max() == 0  # an empty group's product is zero


KERNELS = [pytest.param(emulated_grouped_mm, id="emulated"),
           pytest.param(getattr(torch, "_grouped_mm", None), id="torch", marks=pytest.mark.skipif(
               not HAS_GROUPED_MM, reason="torch has no _grouped_mm"))]


@pytest.mark.parametrize("kernel", KERNELS)
def test_grouped_matmul_forward_and_gradients_in_float32(kernel, monkeypatch):
    # 5 tiles of 4 banks with 8 groups a call: 3 calls, split on tile boundaries.
    monkeypatch.setattr(grouped_mm, "MAX_GROUPS", 8)
    tiles, rows, banks = 5, 12, 4
    sizes = _tile_major_groups(tiles, rows, banks)
    ends, group = _per_group(sizes)
    x, w = torch.randn(tiles * rows, 22), torch.randn(tiles * banks, 22, 7)
    y_ref, gx_ref, gw_ref, cot = _loop_reference(x, w, group)
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    y = grouped_matmul(x, w, ends, banks, kernel, torch.float32)
    (y * cot).sum().backward()
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, gx_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w.grad, gw_ref, rtol=1e-5, atol=1e-5)
    assert w.grad.dtype == torch.float32
    assert w.grad.view(tiles, banks, 22, 7)[:, -1].abs().max() == 0  # empty banks get no gradient


@pytest.mark.skipif(not HAS_GROUPED_MM, reason="torch has no _grouped_mm")
def test_grouped_matmul_in_bfloat16_is_close_and_keeps_float32_weight_gradients():
    tiles, rows, banks = 3, 64, 4
    ends, group = _per_group(_tile_major_groups(tiles, rows, banks, seed=1))
    x, w = torch.randn(tiles * rows, 22), torch.randn(tiles * banks, 22, 22) * 0.2
    y_ref, gx_ref, gw_ref, cot = _loop_reference(x, w, group)
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    y = grouped_matmul(x, w, ends, banks, torch._grouped_mm, torch.bfloat16)
    assert y.dtype == torch.bfloat16
    (y.float() * cot).sum().backward()
    assert w.grad.dtype == torch.float32 and x.grad.dtype == torch.float32
    for got, want in ((y.float(), y_ref), (x.grad, gx_ref), (w.grad, gw_ref)):
        assert (got - want).norm() / want.norm() < 1e-2


def test_a_tile_with_more_banks_than_a_call_holds_is_refused():
    with pytest.raises(ValueError, match="groups of one grouped matmul"):
        grouped_matmul(torch.randn(4, 2), torch.randn(2048, 2, 2), torch.arange(1, 2049), 2048)


def test_cpu_defaults_to_an_exact_kernel():
    kernel, dtype = grouped_mm.default_kernel(torch.device("cpu"))
    assert dtype == torch.float32
    assert not grouped_mm.fast_kernel_available(torch.device("cpu"))
