"""Grouped matrix products: each sample is multiplied by the matrix of its group.

This is the bank dispatch of an LoE layer: samples are ranked within their
group (one sort), packed into chunks of one group each (:class:`ChunkLayout`),
run through one batched matmul, and gathered back. There is no Python loop over
groups, so the cost is one GEMM plus two memory passes whatever the bank count.
"""

from dataclasses import dataclass

import torch


class _PackedMatmul(torch.autograd.Function):
    """``unpack(bmm(pack(x), weight[chunk_group]))`` of a :class:`ChunkLayout`, with a hand-written
    backward: the same products as autograd would take through pack, gather, bmm and unpack, without
    its graph of five nodes, the copies of the zero-padded buffers and, when every group is one chunk
    (a training batch), without gathering the weights at all."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, layout: "ChunkLayout") -> torch.Tensor:
        padded = layout.pack(x)  # [chunks, size, in]
        w = weight if layout.one_chunk_per_group else weight[layout.chunk_group]
        out = layout.unpack(torch.bmm(padded, w))
        ctx.save_for_backward(padded, w)
        ctx.layout, ctx.num_groups = layout, weight.shape[0]
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        padded, w = ctx.saved_tensors
        layout = ctx.layout
        grad_padded = layout.pack(grad.to(padded.dtype))  # [chunks, size, out] (bfloat16 under autocast)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = layout.unpack(torch.bmm(grad_padded, w.transpose(1, 2)))
        if ctx.needs_input_grad[1]:
            grad_w = torch.bmm(padded.transpose(1, 2), grad_padded)  # [chunks, in, out]
            if not layout.one_chunk_per_group:
                grad_w = grad_w.new_zeros(ctx.num_groups, *grad_w.shape[1:]).index_put_(
                    (layout.chunk_group,), grad_w, accumulate=True)
        return grad_x, grad_w, None


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
    return _PackedMatmul.apply(x, weight, ChunkLayout.of(group, num_groups))


@dataclass
class ChunkLayout:
    """Samples packed group by group into chunks of ``size`` rows, one group per chunk.

    A group's samples fill its chunks in order and its last chunk is zero-padded,
    so all chunks go through one batched matmul with their group's matrix and the
    padding is at most one chunk per group, however unequal the group sizes are.
    ``slot[j]`` is the padded row of sample ``j``; ``chunk_group`` ``[num_chunks]``
    the group of every chunk; ``first`` ``[G]`` one sample of every non-empty group.
    ``one_chunk_per_group``: every group has exactly one chunk (then ``chunk_group`` is ``arange(G)``).
    """

    slot: torch.Tensor
    chunk_group: torch.Tensor
    first: torch.Tensor
    num_chunks: int
    size: int
    one_chunk_per_group: bool = False

    @classmethod
    def of(cls, group: torch.Tensor, num_groups: int) -> "ChunkLayout":
        n = group.numel()
        counts = torch.bincount(group, minlength=num_groups)
        largest = int(counts.max())
        size = _chunk_rows(n, int((counts > 0).sum()), largest)
        chunks = (counts + size - 1) // size  # [G]
        first_chunk = torch.cumsum(chunks, 0) - chunks
        num_chunks = int(chunks.sum())
        sorted_group, order = torch.sort(group, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        # The sample of rank r in group g sits at row first_chunk[g] * size + r (its chunks are consecutive).
        slot_sorted = (first_chunk * size - starts)[sorted_group] + torch.arange(n, device=group.device)
        slot = torch.empty_like(slot_sorted).index_copy_(0, order, slot_sorted)
        chunk_group = torch.repeat_interleave(torch.arange(num_groups, device=group.device), chunks,
                                              output_size=num_chunks)
        first = order[starts.clamp(max=max(n - 1, 0))]
        return cls(slot, chunk_group, first, num_chunks, size, num_chunks == num_groups and size >= largest)

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, F]`` samples -> ``[num_chunks, size, F]`` (padding rows are zero); no gradient."""
        rows = x.new_zeros(self.num_chunks * self.size, x.shape[1]).index_copy_(0, self.slot, x)
        return rows.view(self.num_chunks, self.size, x.shape[1])

    def unpack(self, padded: torch.Tensor) -> torch.Tensor:
        """``[num_chunks, size, F]`` -> ``[N, F]`` in sample order; no gradient."""
        return padded.reshape(-1, padded.shape[2]).index_select(0, self.slot)


def _chunk_rows(samples: int, groups: int, largest: int) -> int:
    """Rows per chunk.

    Near-equal groups (a random training batch) get one chunk each, of the largest
    group's size: no matrix is gathered twice. Unequal groups (a decode block) get
    chunks of about a quarter of the mean group size (a power of two in [16, 1024]).
    """
    mean = max(1, samples // max(1, groups))
    if largest <= 2 * mean:
        return largest
    target = max(1, mean // 4)
    return min(1024, max(16, 1 << (target.bit_length() - 1)))


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
