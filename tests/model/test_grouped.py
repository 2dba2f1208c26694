import pytest
import torch

from loe_codec.model import grouped_linear
from loe_codec.model.grouped import ChunkLayout, blended_linear


def _loop_reference(x, weight, group):
    if x.shape[0] == 0:
        return x.new_zeros(0, weight.shape[2])
    return torch.stack([x[j] @ weight[int(group[j])] for j in range(x.shape[0])])


@pytest.mark.parametrize("groups_used", [
    "all",  # every group has samples
    "some_empty",  # several groups without any sample (first, middle and last among them)
    "single",  # every sample in one group of many
])
def test_grouped_linear_matches_loop(groups_used):
    g, n, fin, fout = 7, 90, 5, 4
    x = torch.randn(n, fin, dtype=torch.float64)
    weight = torch.randn(g, fin, fout, dtype=torch.float64)
    if groups_used == "all":
        group = torch.randint(0, g, (n,))
        group[:g] = torch.arange(g)  # make sure none is empty
        group = group[torch.randperm(n)]
    elif groups_used == "some_empty":
        allowed = torch.tensor([1, 2, 4])
        group = allowed[torch.randint(0, 3, (n,))]
    else:
        group = torch.full((n,), 3)
    got = grouped_linear(x, weight, group)
    torch.testing.assert_close(got, _loop_reference(x, weight, group))


def test_grouped_linear_gradients_match_loop():
    g, n, fin, fout = 5, 40, 3, 6
    x = torch.randn(n, fin, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(g, fin, fout, dtype=torch.float64, requires_grad=True)
    group = torch.tensor([0, 3, 4])[torch.randint(0, 3, (n,))]
    upstream = torch.randn(n, fout, dtype=torch.float64)
    (grouped_linear(x, weight, group) * upstream).sum().backward()
    gx, gw = x.grad.clone(), weight.grad.clone()
    x.grad = None
    weight.grad = None
    (_loop_reference(x, weight, group) * upstream).sum().backward()
    torch.testing.assert_close(gx, x.grad)
    torch.testing.assert_close(gw, weight.grad)
    # Groups without samples get exactly zero gradient.
    assert float(gw[[1, 2]].abs().sum()) == 0.0


def test_grouped_linear_equal_groups_path():
    g, per, fin, fout = 4, 6, 3, 5
    x = torch.randn(g * per, fin, dtype=torch.float64)
    weight = torch.randn(g, fin, fout, dtype=torch.float64)
    group = torch.arange(g).repeat_interleave(per)  # sorted, equal blocks
    fast = grouped_linear(x, weight, group, equal_groups=True)
    torch.testing.assert_close(fast, _loop_reference(x, weight, group))
    torch.testing.assert_close(fast, grouped_linear(x, weight, group, equal_groups=False))


def test_grouped_linear_single_group_and_empty_input():
    x = torch.randn(9, 3)
    w = torch.randn(1, 3, 2)
    torch.testing.assert_close(grouped_linear(x, w, torch.zeros(9, dtype=torch.long)), x @ w[0])
    out = grouped_linear(torch.zeros(0, 3), torch.randn(4, 3, 2), torch.zeros(0, dtype=torch.long))
    assert out.shape == (0, 2)


def test_blended_linear_matches_loop():
    g, n, k, fin, fout = 6, 30, 4, 3, 2
    x = torch.randn(n, fin, dtype=torch.float64)
    weight = torch.randn(g, fin, fout, dtype=torch.float64)
    groups = torch.randint(0, g, (n, k))
    blend = torch.rand(n, k, dtype=torch.float64)
    expect = torch.stack([sum(blend[j, i] * (x[j] @ weight[int(groups[j, i])]) for i in range(k))
                          for j in range(n)])
    torch.testing.assert_close(blended_linear(x, weight, groups, blend), expect)


def test_grouped_linear_unequal_groups_use_chunks_and_match_loop():
    # One huge group and several tiny ones (largest > 2x the mean): the chunked layout.
    g, fin, fout = 6, 4, 3
    group = torch.cat([torch.zeros(500, dtype=torch.long), torch.tensor([1, 2, 2, 3, 5, 5, 5])])
    group = group[torch.randperm(group.numel())]
    x = torch.randn(group.numel(), fin, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(g, fin, fout, dtype=torch.float64, requires_grad=True)
    got = grouped_linear(x, weight, group)
    ref = _loop_reference(x, weight, group)
    torch.testing.assert_close(got, ref)
    gy = torch.randn_like(got)
    torch.testing.assert_close(torch.autograd.grad(got, (x, weight), gy), torch.autograd.grad(ref, (x, weight), gy))


def test_grouped_linear_one_chunk_per_group_gradients_match_loop():
    # A training batch: every group non-empty and near-equal, so each group is one chunk and the
    # weights are used without gathering; values and both gradients must match the loop.
    g, per, fin, fout = 6, 40, 5, 4
    group = torch.arange(g).repeat_interleave(per)
    group[::7] = (group[::7] + 1) % g  # near-equal, not equal
    group = group[torch.randperm(group.numel())]
    x = torch.randn(group.numel(), fin, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(g, fin, fout, dtype=torch.float64, requires_grad=True)
    assert ChunkLayout.of(group, g).one_chunk_per_group
    got = grouped_linear(x, weight, group)
    ref = _loop_reference(x, weight, group)
    torch.testing.assert_close(got, ref)
    gy = torch.randn_like(got)
    torch.testing.assert_close(torch.autograd.grad(got, (x, weight), gy), torch.autograd.grad(ref, (x, weight), gy))
    # Only the weight needs a gradient (the first layer's input is the encoding).
    (gw,) = torch.autograd.grad(grouped_linear(x.detach(), weight, group), (weight,), gy)
    torch.testing.assert_close(gw, torch.autograd.grad(_loop_reference(x, weight, group), (weight,), gy)[0])
