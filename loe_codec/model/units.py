"""Kept hidden units: which units of each hidden layer a tile network keeps.

``units`` is a list of ``layers - 1`` bool tensors ``[T, width]``, one per hidden layer:
``units[l][t, j]`` says whether tile ``t`` keeps unit ``j`` of the output of linear layer
``l``. A dropped unit's incoming weights (column ``j`` of layer ``l``) and outgoing weights
(row ``j`` of layer ``l + 1``) are zero; with its outgoing weights zero its bias and
activation do not matter, so a decoder that zeroes them computes the same function.
"""

from __future__ import annotations

import torch


def layer_keep(units: list[torch.Tensor], layer: int) -> torch.Tensor | None:
    """Bool ``[T, 1, in, out]`` (broadcastable) of the weights of ``layer`` that the kept units
    use: rows of kept inputs, columns of kept outputs; None where every weight is kept (a layer
    whose inputs and outputs are not hidden units)."""
    keep = None
    if layer > 0:
        keep = units[layer - 1][:, None, :, None]
    if layer < len(units):
        out = units[layer][:, None, None, :]
        keep = out if keep is None else keep & out
    return keep


def drop_units(weights: list[torch.Tensor], units: list[torch.Tensor] | None) -> list[torch.Tensor]:
    """Weights ``[T, banks, in, out]`` per layer with the weights of dropped units set to zero."""
    if units is None:
        return weights
    out = []
    for layer, w in enumerate(weights):
        keep = layer_keep(units, layer)
        out.append(w if keep is None else w * keep)
    return out


def all_units(num_tiles: int, layers: int, width: int) -> list[torch.Tensor]:
    """Every unit kept: ``layers - 1`` all-True ``[T, width]``."""
    return [torch.ones(num_tiles, width, dtype=torch.bool) for _ in range(layers - 1)]
