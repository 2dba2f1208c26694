"""Sine/cosine positional encoding of tile coordinates."""

import math

import torch


def positional_encoding(coords: torch.Tensor, frequencies: int) -> torch.Tensor:
    """Encode coordinates in ``[0, 1]``.

    Args:
        coords: ``[N, d]`` tile-local coordinates in ``[0, 1]``.
        frequencies: number of octaves ``F``; frequency ``k`` is ``2**k * pi``.

    Returns:
        ``[N, d * (1 + 2F)]``: the centred coordinate ``2p - 1`` followed by
        ``sin`` and ``cos`` of ``2**k * pi * (2p - 1)`` for ``k < F``.
    """
    centred = coords * 2.0 - 1.0
    if frequencies == 0:
        return centred
    freqs = (2.0 ** torch.arange(frequencies, device=coords.device, dtype=coords.dtype)) * math.pi
    angles = (centred.unsqueeze(-1) * freqs).flatten(1)  # [N, d*F]
    return torch.cat([centred, torch.sin(angles), torch.cos(angles)], dim=1)
