"""T independent LoE tile networks evaluated together in one module."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ModelConfig
from .banks import bank_index, bank_neighbours
from .encoding import positional_encoding
from .grouped import blended_linear, grouped_linear


def init_tile_parameters(config: ModelConfig, seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Initial weights ``[banks, in, out]`` and biases ``[out]`` of one tile network.

    Deterministic in ``seed`` and independent of the device (drawn on the CPU).
    SIREN initialisation for sine activations, He-uniform otherwise.
    """
    gen = torch.Generator().manual_seed(int(seed) & 0x7FFFFFFFFFFFFFFF)
    weights, biases = [], []
    for layer, ((fan_in, fan_out), nb) in enumerate(zip(config.layer_shapes(), config.bank_counts())):
        if config.activation == "sine" and layer == 0:
            bound = 1.0 / fan_in
        else:
            bound = math.sqrt(6.0 / fan_in)
        w = (torch.rand(nb, fan_in, fan_out, generator=gen) * 2 - 1) * bound
        b = (torch.rand(fan_out, generator=gen) * 2 - 1) / math.sqrt(fan_in)
        weights.append(w)
        biases.append(b)
    return weights, biases


class TiledLoE(nn.Module):
    """``T`` LoE networks of one :class:`ModelConfig`, one per tile.

    Parameters: ``weights[i]`` is ``[T, banks_i, in_i, out_i]`` and ``biases[i]``
    is ``[T, out_i]`` (the bias is shared by the banks of a layer).
    ``forward(tile, coords)`` evaluates a mixed batch of samples of any tiles:
    per layer the samples are grouped by (tile, bank) and multiplied in one
    grouped matmul.
    """

    def __init__(self, config: ModelConfig, weights: list[torch.Tensor], biases: list[torch.Tensor]):
        super().__init__()
        shapes = config.layer_shapes()
        if len(weights) != config.layers or len(biases) != config.layers:
            raise ValueError("one weight and one bias tensor per layer are required")
        num_tiles = weights[0].shape[0]
        for w, b, (i, o), nb in zip(weights, biases, shapes, config.bank_counts()):
            if tuple(w.shape) != (num_tiles, nb, i, o) or tuple(b.shape) != (num_tiles, o):
                raise ValueError(f"weight {tuple(w.shape)} / bias {tuple(b.shape)} do not match the config")
        self.config = config
        self.num_tiles = num_tiles
        self.weights = nn.ParameterList([nn.Parameter(w) for w in weights])
        self.biases = nn.ParameterList([nn.Parameter(b) for b in biases])
        self.scales = config.scales()

    @classmethod
    def initialised(cls, config: ModelConfig, seeds: list[int]) -> "TiledLoE":
        """Fresh networks, tile ``k`` initialised from ``seeds[k]``."""
        per_tile = [init_tile_parameters(config, s) for s in seeds]
        weights = [torch.stack([t[0][i] for t in per_tile]) for i in range(config.layers)]
        biases = [torch.stack([t[1][i] for t in per_tile]) for i in range(config.layers)]
        return cls(config, weights, biases)

    def _linear(self, layer: int, x: torch.Tensor, tile: torch.Tensor, coords: torch.Tensor,
                tile_major: bool) -> torch.Tensor:
        cfg = self.config
        n = cfg.banks[layer]
        nb = n**cfg.dims
        w = self.weights[layer]
        flat = w.reshape(self.num_tiles * nb, w.shape[2], w.shape[3])
        if nb == 1:
            y = grouped_linear(x, flat, tile, equal_groups=tile_major)
        elif cfg.blend == "nearest":
            bank = bank_index(coords, n, self.scales[layer])
            y = grouped_linear(x, flat, tile * nb + bank)
        else:
            ids, blend = bank_neighbours(coords, n, self.scales[layer])
            y = blended_linear(x, flat, tile.unsqueeze(1) * nb + ids, blend)
        bias = self.biases[layer]
        if tile_major:
            return (y.view(self.num_tiles, -1, y.shape[1]) + bias.unsqueeze(1)).view(y.shape)
        return y + bias[tile]

    def forward(self, tile: torch.Tensor, coords: torch.Tensor, tile_major: bool = False) -> torch.Tensor:
        """Evaluate samples.

        Args:
            tile: ``[N]`` int64 tile index of every sample, in ``[0, T)``.
            coords: ``[N, d]`` tile-local coordinates in ``[0, 1]``.
            tile_major: promise that the samples come as ``T`` equal blocks, tile 0
                first (a training batch); it skips the grouping of unbanked layers.

        Returns:
            ``[N, out_channels]`` predictions (pixel values scaled to ``[-0.5, 0.5]``).
        """
        cfg = self.config
        x = positional_encoding(coords, cfg.pe_frequencies)
        last = cfg.layers - 1
        for layer in range(cfg.layers):
            x = self._linear(layer, x, tile, coords, tile_major)
            if layer == last:
                break
            if cfg.activation == "sine":
                x = torch.sin(x * cfg.sine_w0) if layer == 0 else torch.sin(x)
            elif cfg.activation == "relu":
                x = torch.relu(x)
            else:
                x = torch.nn.functional.gelu(x)
        return x
