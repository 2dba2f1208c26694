"""Grouped matrix products: each sample is multiplied by the matrix of its group.

This is the bank dispatch of an LoE layer: samples are ranked within their
group (one sort), packed into a padded ``[groups, max_count, in]`` block, run
through one batched matmul, and gathered back. There is no Python loop over
groups, so the cost is one GEMM plus two memory passes whatever the bank count.
"""

import torch


class _TakeRows(torch.autograd.Function):
    """``src[index]`` for an injective ``index``: its backward is a plain scatter, not a scatter-add."""

    @staticmethod
    def forward(ctx, src: torch.Tensor, index: torch.Tensor, src_rows: int) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.src_rows = src_rows
        return src.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (index,) = ctx.saved_tensors
        out = grad.new_zeros(ctx.src_rows, grad.shape[1]).index_copy_(0, index, grad)
        return out, None, None


def grouped_linear(x: torch.Tensor, weight: torch.Tensor, group: torch.Tensor,
                   equal_groups: bool = False) -> torch.Tensor:
    """``y[j] = x[j] @ weight[group[j]]``.

    Args:
        x: ``[N, in]`` inputs.
        weight: ``[G, in, out]`` one matrix per group.
        group: ``[N]`` int64 group of every sample, in ``[0, G)``.
        equal_groups: promise that ``group`` is sorted with ``N / G`` samples in
            every group (a tile-major training batch); then no sort is needed.

    Returns:
        ``[N, out]``.
    """
    num_groups, fan_in, fan_out = weight.shape
    if num_groups == 1:
        return x @ weight[0]
    n = x.shape[0]
    if n == 0:
        return x.new_zeros(0, fan_out)
    if equal_groups:
        return torch.bmm(x.view(num_groups, n // num_groups, fan_in), weight).view(n, fan_out)
    counts = torch.bincount(group, minlength=num_groups)
    used = counts > 0
    if not bool(used.all()):
        # Drop empty groups so the padded block is no larger than needed.
        group = (torch.cumsum(used.long(), 0) - 1)[group]
        weight = weight[used]
        counts = counts[used]
    # Slot of every sample in a padded [groups, max_count] block: its group's row,
    # then its rank among the samples of that group (found with one stable sort).
    order = torch.argsort(group, stable=True)
    width = int(counts.max())
    starts = torch.cumsum(counts, 0) - counts
    sorted_group = group[order]
    slot_sorted = sorted_group * width + torch.arange(n, device=x.device) - starts[sorted_group]
    slot = torch.empty_like(slot_sorted).index_copy_(0, order, slot_sorted)
    padded = x.new_zeros(weight.shape[0] * width, fan_in).index_copy(0, slot, x)
    out = torch.bmm(padded.view(weight.shape[0], width, fan_in), weight)
    return _TakeRows.apply(out.view(-1, fan_out), slot, out.shape[0] * width)


def blended_linear(x: torch.Tensor, weight: torch.Tensor, groups: torch.Tensor,
                   blend: torch.Tensor) -> torch.Tensor:
    """``y[j] = sum_k blend[j, k] * x[j] @ weight[groups[j, k]]``.

    Args:
        x: ``[N, in]``; weight: ``[G, in, out]``;
        groups: ``[N, K]`` int64; blend: ``[N, K]`` weights.

    Returns:
        ``[N, out]``.
    """
    n, k = groups.shape
    expanded = grouped_linear(x.repeat_interleave(k, dim=0), weight, groups.reshape(-1))
    return (expanded.view(n, k, -1) * blend.unsqueeze(-1)).sum(1)
