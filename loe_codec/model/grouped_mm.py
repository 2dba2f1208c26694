"""Grouped products of rows already sorted by group, through ``torch._grouped_mm``.

The rows come tile-major: tile ``t`` owns rows ``[t*S, (t+1)*S)`` and, within them,
its ``banks`` groups lie back to back; ``ends`` ``[T*banks]`` (int64, on the device)
are the cumulative group ends. ``torch._grouped_mm`` takes at most
:data:`MAX_GROUPS` groups per call, so the calls are split on tile boundaries,
which are static (``S`` rows a tile): no group size is read back to the host.

The kernel wants every operand's row stride to be a multiple of 16 bytes, so the
operands are cast into zero-padded buffers (a ``[N, 22]`` bfloat16 matrix becomes
``[N, 24]``, a ``[G, 22, 22]`` weight ``[G, 24, 24]``): the padding adds zeros to
every product, and the results are viewed at their true width.
On CUDA the fast kernel exists for compute capability 9.0 and 10.0 and only in
bfloat16 (inputs and outputs; it accumulates in float32); elsewhere torch falls
back to a loop over groups that reads ``offs`` on the host.
"""

from __future__ import annotations

from typing import Callable

import torch

MAX_GROUPS = 1024  # torch._grouped_mm refuses more groups per call
GroupedKernel = Callable[..., torch.Tensor]
"""``kernel(a, b, offs=...)`` with the semantics of ``torch._grouped_mm`` (2-D x 3-D and 2-D x 2-D forms)."""


def fast_kernel_available(device: torch.device) -> bool:
    """Whether ``torch._grouped_mm`` runs its sync-free bfloat16 kernel on ``device``."""
    if device.type != "cuda" or not hasattr(torch, "_grouped_mm"):
        return False
    return torch.cuda.get_device_capability(device) in ((9, 0), (10, 0))


def default_kernel(device: torch.device) -> tuple[GroupedKernel, torch.dtype]:
    """The kernel and operand dtype used on ``device``: ``torch._grouped_mm`` in bfloat16 on CUDA, in
    float32 on the CPU (exact, for checking), a pure-torch emulation where torch has no ``_grouped_mm``."""
    if not hasattr(torch, "_grouped_mm"):
        return emulated_grouped_mm, torch.float32
    return torch._grouped_mm, torch.bfloat16 if device.type == "cuda" else torch.float32


def padded(t: torch.Tensor, dtype: torch.dtype, dims: int = 1) -> torch.Tensor:
    """``t`` cast to ``dtype`` with its last ``dims`` dimensions zero-padded to multiples of 16 bytes."""
    step = max(1, 16 // torch.empty((), dtype=dtype).element_size())
    shape = list(t.shape)
    for axis in range(len(shape) - dims, len(shape)):
        shape[axis] = -(-shape[axis] // step) * step
    if shape == list(t.shape):
        return t.to(dtype).contiguous()
    out = torch.zeros(shape, dtype=dtype, device=t.device)
    out[tuple(slice(0, n) for n in t.shape)] = t
    return out


def emulated_grouped_mm(a: torch.Tensor, b: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """Pure-torch ``torch._grouped_mm`` for checking: ``offs`` ``[G]`` int32 cumulative group ends.

    2-D ``a`` ``[M, K]`` x 3-D ``b`` ``[G, K, N]`` -> ``[M, N]``: rows of group ``g`` times ``b[g]``.
    2-D ``a`` ``[M, K]`` x 2-D ``b`` ``[K, N]`` -> ``[G, M, N]``: ``a[:, group g] @ b[group g]``.
    """
    ends = offs.long()
    if b.dim() == 3:
        group = torch.searchsorted(ends, torch.arange(a.shape[0], device=a.device), right=True)
        return torch.bmm(a.unsqueeze(1).float(), b.float()[group]).squeeze(1).to(a.dtype)
    group = torch.searchsorted(ends, torch.arange(a.shape[1], device=a.device), right=True)
    outer = a.t().float().unsqueeze(2) * b.float().unsqueeze(1)  # [K, M, N]
    out = torch.zeros(ends.numel(), a.shape[0], b.shape[1], device=a.device)
    return out.index_add_(0, group, outer).to(a.dtype)


def _call_spans(num_tiles: int, banks: int) -> list[tuple[int, int]]:
    """Tile ranges ``[t0, t1)`` of the kernel calls (at most :data:`MAX_GROUPS` groups each)."""
    if banks > MAX_GROUPS:
        raise ValueError(f"{banks} banks per tile exceed the {MAX_GROUPS} groups of one grouped matmul")
    per_call = MAX_GROUPS // banks
    return [(t0, min(t0 + per_call, num_tiles)) for t0 in range(0, num_tiles, per_call)]


def _call_offsets(ends: torch.Tensor, rows_per_tile: int, banks: int) -> torch.Tensor:
    """``ends`` ``[G]`` made relative to the first row of each group's call, as int32."""
    per_call = MAX_GROUPS // banks
    group = torch.arange(ends.numel(), device=ends.device)
    return (ends - group // (banks * per_call) * (per_call * rows_per_tile)).to(torch.int32)


class _GroupedMatmul(torch.autograd.Function):
    """``y[rows of group g] = x[rows of group g] @ weight[g]``, forward and backward by grouped GEMMs."""

    @staticmethod
    def forward(ctx, x, weight, ends, rows_per_tile, banks, dtype, kernel):
        spans = _call_spans(weight.shape[0] // banks, banks)
        offs = _call_offsets(ends, rows_per_tile, banks)
        xp, wp = padded(x, dtype), padded(weight, dtype, dims=2)
        y = _per_call(kernel, spans, rows_per_tile, banks, offs, lambda r, g: (xp[r], wp[g]))
        ctx.save_for_backward(xp, wp, offs)
        ctx.spans, ctx.rows, ctx.banks, ctx.kernel, ctx.weight_dtype = spans, rows_per_tile, banks, kernel, weight.dtype
        ctx.shape = weight.shape
        return y[:, :weight.shape[2]]

    @staticmethod
    def backward(ctx, grad):
        xp, wp, offs = ctx.saved_tensors
        gp = padded(grad, xp.dtype)
        _, fan_in, fan_out = ctx.shape
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = _per_call(ctx.kernel, ctx.spans, ctx.rows, ctx.banks, offs,
                               lambda r, g: (gp[r], wp[g].transpose(1, 2)))[:, :fan_in]
        if ctx.needs_input_grad[1]:
            grad_w = _per_call(ctx.kernel, ctx.spans, ctx.rows, ctx.banks, offs,
                               lambda r, g: (xp[r].t(), gp[r]))  # [groups, in, out]
            grad_w = grad_w[:, :fan_in, :fan_out].to(ctx.weight_dtype)
        return grad_x, grad_w, None, None, None, None, None


def _per_call(kernel: GroupedKernel, spans: list[tuple[int, int]], rows: int, banks: int, offs: torch.Tensor,
              operands) -> torch.Tensor:
    """The kernel over every call's span, concatenated; ``operands(row_slice, group_slice)`` gives ``(a, b)``."""
    parts = []
    for t0, t1 in spans:
        a, b = operands(slice(t0 * rows, t1 * rows), slice(t0 * banks, t1 * banks))
        parts.append(kernel(a, b, offs=offs[t0 * banks:t1 * banks]))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def grouped_matmul(x: torch.Tensor, weight: torch.Tensor, ends: torch.Tensor, banks: int,
                   kernel: GroupedKernel | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Rows of ``x`` times the matrix of their group, with gradients for ``x`` and ``weight``.

    Args:
        x: ``[T*S, in]`` rows sorted tile-major and by group within a tile.
        weight: ``[T*banks, in, out]``, group ``t*banks + b`` = bank ``b`` of tile ``t``.
        ends: ``[T*banks]`` int64 cumulative group ends (row indices of ``x``).
        banks: groups per tile.
        kernel, dtype: the grouped GEMM and its operand dtype (default: :func:`default_kernel`).

    Returns:
        ``[T*S, out]`` in ``dtype`` (rows may be padded in memory).
    """
    default, default_dtype = default_kernel(x.device)
    kernel, dtype = kernel or default, dtype or default_dtype
    rows_per_tile = x.shape[0] * banks // weight.shape[0]
    return _GroupedMatmul.apply(x, weight, ends, rows_per_tile, banks, dtype, kernel)
