"""Which weight bank a coordinate lands in.

Layer ``i`` tiles its ``n**d`` banks periodically over the tile domain:
``bank = floor(alpha_i * p + beta_i) mod n`` per dimension, and the
per-dimension indices are combined row-major into one bank id. The count
``n`` may differ per dimension (``ModelConfig.time_banks``): then the
combination is mixed-radix, ``n_k`` banks along dimension ``k``.
"""

import functools
import math

import torch

AxisBanks = int | tuple[int, ...]
"""Banks per dimension: one count for every dimension, or one per dimension (x first)."""


def _counts(n: AxisBanks, d: int) -> tuple[int, ...]:
    return (n,) * d if isinstance(n, int) else tuple(n)


def _modulus(counts: tuple[int, ...], device: torch.device) -> int | torch.Tensor:
    """What ``remainder`` takes for ``counts``: one int where they are equal (no tensor to copy to a GPU
    in every step), else a ``[d]`` tensor."""
    return counts[0] if len(set(counts)) == 1 else torch.tensor(counts, device=device)


def place_values(n: AxisBanks, d: int) -> list[int]:
    """Row-major (mixed-radix) place value of every dimension's index: ``[d]``, the last 1."""
    counts = _counts(n, d)
    return [math.prod(counts[k + 1:]) for k in range(d)]


def _combine(per_dim: torch.Tensor, n: AxisBanks) -> torch.Tensor:
    """``[..., d]`` per-dimension indices in ``[0, n_k)`` -> ``[...]`` row-major ids in ``[0, prod n_k)``."""
    d = per_dim.shape[-1]
    counts = _counts(n, d)
    if len(set(counts)) == 1:  # made on the device: no copy from the host in every step
        place = counts[0] ** torch.arange(d - 1, -1, -1, device=per_dim.device, dtype=per_dim.dtype)
    else:
        place = torch.tensor(place_values(counts, d), device=per_dim.device, dtype=per_dim.dtype)
    return (per_dim * place).sum(-1)


def bank_index(coords: torch.Tensor, n: AxisBanks, alpha: float, beta: float = 0.0) -> torch.Tensor:
    """Nearest bank of every coordinate.

    Args:
        coords: ``[N, d]`` tile-local coordinates in ``[0, 1]``.
        n: banks per dimension (one count, or one per dimension); alpha, beta: the layer's grid
            scale and offset.

    Returns:
        ``[N]`` int64 bank ids in ``[0, prod n_k)``.
    """
    counts = _counts(n, coords.shape[1])
    if math.prod(counts) == 1:
        return torch.zeros(coords.shape[0], dtype=torch.long, device=coords.device)
    cell = torch.floor(coords * alpha + beta).long()
    return _combine(torch.remainder(cell, _modulus(counts, coords.device)), counts)


def bank_indices(coords: torch.Tensor, banks: list[AxisBanks], alphas: list[float]) -> torch.Tensor:
    """:func:`bank_index` of several layers at once (``beta = 0``), with the same arithmetic.

    Args:
        coords: ``[N, d]`` tile-local coordinates; banks: ``n`` of every layer; alphas: their scales.

    Returns:
        ``[N, layers]`` int64 bank ids.
    """
    d = coords.shape[1]
    n, alpha, place = _layer_constants(tuple(_counts(b, d) for b in banks), tuple(alphas), d, coords.device,
                                       coords.dtype)
    cell = torch.floor(coords.unsqueeze(1) * alpha + 0.0).long()  # [N, L, d]
    return (torch.remainder(cell, n) * place).sum(-1)


@functools.lru_cache(maxsize=64)
def _layer_constants(banks: tuple[tuple[int, ...], ...], alphas: tuple[float, ...], d: int, device: torch.device,
                     dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` ``[L, d]``, ``alpha`` ``[L, 1]`` and place values ``[L, d]`` of :func:`bank_indices`, made once per
    device: a copy to a GPU in every training step would wait for the GPU."""
    n = torch.tensor(banks, device=device).view(-1, d)
    alpha = torch.tensor(alphas, dtype=dtype, device=device).view(-1, 1)
    place = torch.tensor([place_values(b, d) for b in banks], device=device).view(-1, d)
    return n, alpha, place


def bank_neighbours(coords: torch.Tensor, n: AxisBanks, alpha: float, beta: float = 0.0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``2**d`` banks around each coordinate and their multilinear weights.

    Bank cells are centred at ``(c + 0.5 - beta) / alpha``; a coordinate blends the
    cells whose centres surround it, periodically wrapped like the banks.

    Returns:
        ids ``[N, 2**d]`` int64 and weights ``[N, 2**d]`` (summing to 1 per row).
    """
    num, d = coords.shape
    u = coords * alpha + beta - 0.5
    lo = torch.floor(u)
    frac = u - lo
    lo = lo.long()
    corners = torch.tensor([[(k >> (d - 1 - j)) & 1 for j in range(d)] for k in range(2**d)],
                           device=coords.device)  # [K, d]
    cells = lo.unsqueeze(1) + corners  # [N, K, d]
    w = torch.where(corners.bool(), frac.unsqueeze(1), 1.0 - frac.unsqueeze(1)).prod(-1)  # [N, K]
    counts = _counts(n, d)
    if math.prod(counts) == 1:
        return torch.zeros(num, 2**d, dtype=torch.long, device=coords.device), w
    return _combine(torch.remainder(cells, _modulus(counts, coords.device)), counts), w
