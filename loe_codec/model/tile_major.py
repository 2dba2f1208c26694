"""Bank dispatch of a tile-major training batch without host-device syncs.

In a training batch every tile has the same number ``S`` of samples, tile ``t``
owning rows ``[t*S, (t+1)*S)``, so the tile boundaries are static. With nearest
banks a layer's samples are then grouped by (tile, bank) without reading any
count back to the host:

* ``grouped``: the rows are sorted by bank within each tile (one segmented sort;
  the group ends come from ``searchsorted``), multiplied by one grouped GEMM
  (:mod:`.grouped_mm`) and stay in that order for the next layers (each banked
  layer re-sorts the rows it gets; the last layer's few channels are put back in
  sample order at the end).
* ``dense``: every row is multiplied by all its tile's banks in one ``bmm`` and
  its own bank's product is kept: ``banks`` times the multiply-adds, but plain
  float32 kernels and no reordering.
* ``packed``: the general dispatch of :func:`~.grouped.grouped_linear` (exact,
  reads group sizes on the host each layer): the CPU's path.
"""

from __future__ import annotations

import torch

from .grouped_mm import fast_kernel_available, grouped_matmul

DISPATCHES = ("auto", "packed", "grouped", "dense")


def resolve_dispatch(dispatch: str, device: torch.device) -> str:
    """The dispatch ``auto`` stands for on ``device``: on CUDA ``grouped`` where the fast grouped GEMM
    exists (compute capability 9.0 / 10.0), else ``dense``; ``packed`` on the CPU."""
    if dispatch not in DISPATCHES:
        raise ValueError(f"dispatch must be one of {DISPATCHES}, got {dispatch!r}")
    if dispatch != "auto":
        return dispatch
    if device.type != "cuda":
        return "packed"
    return "grouped" if fast_kernel_available(device) else "dense"


def sort_by_bank(bank: torch.Tensor, num_tiles: int, banks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tile-major rows sorted by bank within each tile.

    Args:
        bank: ``[T*S]`` int64 bank of every row, in ``[0, banks)``.

    Returns:
        ``order`` ``[T*S]``: row ``i`` of the sorted batch is row ``order[i]`` (tiles stay in place);
        ``ends`` ``[T*banks]`` int64: cumulative end row of group ``t*banks + b``.
    """
    per_tile = bank.reshape(num_tiles, -1)  # [T, S]
    rows = per_tile.shape[1]
    sorted_bank, order = torch.sort(per_tile, dim=1, stable=True)
    first = torch.arange(num_tiles, device=bank.device).unsqueeze(1) * rows  # [T, 1]
    ids = torch.arange(banks, device=bank.device).expand(num_tiles, banks).contiguous()
    ends = torch.searchsorted(sorted_bank, ids, right=True) + first  # [T, banks]
    return (order + first).reshape(-1), ends.reshape(-1)


class _RowPermutation(torch.autograd.Function):
    """``x[perm]`` (``inverse`` False) or ``y`` with ``y[perm] = x`` (True); the backward is the other."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, perm: torch.Tensor, inverse: bool) -> torch.Tensor:
        ctx.save_for_backward(perm)
        ctx.inverse = inverse
        return _permute(x, perm, inverse)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (perm,) = ctx.saved_tensors
        return _permute(grad, perm, not ctx.inverse), None, None


def _permute(x: torch.Tensor, perm: torch.Tensor, inverse: bool) -> torch.Tensor:
    if inverse:
        return torch.empty(x.shape, dtype=x.dtype, device=x.device).index_copy_(0, perm, x)
    return x.index_select(0, perm)


def permute_rows(x: torch.Tensor, perm: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """``x[perm]`` (or its inverse) with a gradient that gathers instead of accumulating."""
    return _RowPermutation.apply(x, perm, inverse)


def dense_bank_linear(x: torch.Tensor, weight: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """``y[j] = x[j] @ weight[tile(j), bank[j]]`` of a tile-major batch, via the products with all banks.

    Args:
        x: ``[T*S, in]``; weight: ``[T, banks, in, out]``; bank: ``[T*S]`` int64.

    Returns:
        ``[T*S, out]``.
    """
    tiles, banks, fan_in, fan_out = weight.shape
    stacked = weight.permute(0, 2, 1, 3).reshape(tiles, fan_in, banks * fan_out)
    every = torch.bmm(x.reshape(tiles, -1, fan_in), stacked).view(-1, banks, fan_out)  # [T*S, banks, out]
    return every.gather(1, bank.view(-1, 1, 1).expand(-1, 1, fan_out)).squeeze(1)


def tile_major_forward(model, x: torch.Tensor, coords: torch.Tensor, dispatch: str) -> torch.Tensor:
    """:meth:`TiledLoE.forward` of a tile-major batch with nearest banks, dispatched as ``dispatch``
    (``grouped`` or ``dense``).

    Args:
        model: the :class:`~.network.TiledLoE`; x: ``[T*S, in]`` encoded coordinates; coords: ``[T*S, d]``.

    Returns:
        ``[T*S, out_channels]`` in sample order.
    """
    cfg, tiles = model.config, model.num_tiles
    banks = model.nearest_banks(coords)
    order = None  # row i of h is sample order[i] (None: sample order)
    h = x
    for layer in range(cfg.layers):
        w = model.weight(layer)  # [T, banks, in, out]
        count = w.shape[1]
        if count == 1:
            y = torch.bmm(h.reshape(tiles, -1, w.shape[2]), w[:, 0])
        elif dispatch == "dense":
            y = dense_bank_linear(h, w, banks[layer])
        else:
            bank = banks[layer] if order is None else banks[layer][order]
            rel, ends = sort_by_bank(bank, tiles, count)
            h = permute_rows(h, rel)
            order = rel if order is None else order[rel]
            y = grouped_matmul(h, w.reshape(tiles * count, w.shape[2], w.shape[3]), ends, count)
        y = y.reshape(tiles, -1, w.shape[3]) + model.biases[layer].unsqueeze(1)
        h = model._activate(layer, y).view(-1, w.shape[3])
    return h if order is None else permute_rows(h, order, inverse=True)
