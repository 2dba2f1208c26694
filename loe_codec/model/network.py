"""T independent LoE tile networks evaluated together in one module."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .banks import bank_indices, bank_neighbours
from .cells import grid_forward
from .encoding import positional_encoding
from .grouped import ChunkLayout, blended_linear, grouped_linear
from .tile_major import resolve_dispatch, tile_major_forward
from ..quantize import fake_quantize
from .units import layer_keep
from ..reference import initial_biases, reference_weights


def init_tile_parameters(config: ModelConfig, seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Initial weights ``[banks, in, out]`` and biases ``[out]`` of one tile network.

    Deterministic in ``seed``, identical on every machine: the weights are the tile's coding
    reference (:func:`loe_codec.reference.reference_weights`). SIREN initialisation for sine
    activations, He-uniform otherwise.
    """
    return reference_weights(config, seed), initial_biases(config, seed)


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
        self.bank_counts = config.bank_counts()
        self.quant_steps: torch.Tensor | None = None
        self.quant_offsets: list[torch.Tensor] | None = None
        self.quant_units: list[torch.Tensor] | None = None

    def quantize_in_loop(self, steps: torch.Tensor | None, offsets: list[torch.Tensor] | None = None,
                         units: list[torch.Tensor] | None = None) -> None:
        """Evaluate with weights rounded to ``steps`` ``[T, layers]`` (straight-through gradients) on grids
        shifted by ``offsets`` (per layer, shaped like its weights; None: unshifted), the weights of the
        units not kept in ``units`` (bool ``[T, width]`` per hidden layer, see :mod:`.units`; None: all
        kept) set to zero; ``steps`` None: off."""
        if steps is not None and tuple(steps.shape) != (self.num_tiles, self.config.layers):
            raise ValueError(f"steps must be [{self.num_tiles}, {self.config.layers}], got {tuple(steps.shape)}")
        if offsets is not None and [tuple(o.shape) for o in offsets] != [tuple(w.shape) for w in self.weights]:
            raise ValueError("offsets must be shaped like the weights, one per layer")
        if units is not None and [tuple(u.shape) for u in units] != \
                [(self.num_tiles, self.config.width)] * (self.config.layers - 1):
            raise ValueError(f"units must be {self.config.layers - 1} bool tensors [{self.num_tiles}, "
                             f"{self.config.width}]")
        device = self.weights[0].device
        self.quant_steps = None if steps is None else steps.to(device, torch.float32)
        self.quant_offsets = None if steps is None or offsets is None else [o.to(device) for o in offsets]
        self.quant_units = None if steps is None or units is None else [u.to(device, torch.bool) for u in units]

    def weight(self, layer: int) -> torch.Tensor:
        """Weights ``[T, banks, in, out]`` of ``layer`` as the forward pass uses them."""
        w = self.weights[layer]
        if self.quant_steps is None:
            return w
        offset = None if self.quant_offsets is None else self.quant_offsets[layer]
        w = fake_quantize(w, self.quant_steps[:, layer].view(-1, 1, 1, 1), offset)
        keep = None if self.quant_units is None else layer_keep(self.quant_units, layer)
        return w if keep is None else w * keep

    @classmethod
    def initialised(cls, config: ModelConfig, seeds: list[int]) -> "TiledLoE":
        """Fresh networks, tile ``k`` initialised from ``seeds[k]``."""
        return cls.from_tiles(config, [init_tile_parameters(config, s) for s in seeds])

    @classmethod
    def from_tiles(cls, config: ModelConfig,
                   tiles: list[tuple[list[torch.Tensor], list[torch.Tensor]]]) -> "TiledLoE":
        """Stack per-tile ``(weights [banks, in, out] per layer, biases [out] per layer)``."""
        weights = [torch.stack([t[0][i] for t in tiles]) for i in range(config.layers)]
        biases = [torch.stack([t[1][i] for t in tiles]) for i in range(config.layers)]
        return cls(config, weights, biases)

    def nearest_banks(self, coords: torch.Tensor) -> list[torch.Tensor | None]:
        """Nearest bank ``[N]`` of every layer at ``coords`` ``[N, d]`` (None for unbanked layers), in one call."""
        banked = self.config.banked_layers()
        if not banked:
            return [None] * self.config.layers
        ids = bank_indices(coords, [self.config.axis_banks(i) for i in banked], [self.scales[i] for i in banked])
        out: list[torch.Tensor | None] = [None] * self.config.layers
        for column, layer in enumerate(banked):
            out[layer] = ids[:, column]
        return out

    def _linear(self, layer: int, x: torch.Tensor, tile: torch.Tensor, coords: torch.Tensor,
                tile_major: bool, bank: torch.Tensor | None) -> torch.Tensor:
        cfg = self.config
        nb = self.bank_counts[layer]
        w = self.weight(layer)
        flat = w.reshape(self.num_tiles * nb, w.shape[2], w.shape[3])
        if nb == 1:
            y = grouped_linear(x, flat, tile, equal_groups=tile_major)
        elif cfg.blend == "nearest":
            y = grouped_linear(x, flat, tile * nb + bank)
        else:
            ids, blend = bank_neighbours(coords, cfg.axis_banks(layer), self.scales[layer])
            y = blended_linear(x, flat, tile.unsqueeze(1) * nb + ids, blend)
        bias = self.biases[layer]
        if tile_major:
            return (y.view(self.num_tiles, -1, y.shape[1]) + bias.unsqueeze(1)).view(y.shape)
        return y + bias[tile]

    def forward(self, tile: torch.Tensor, coords: torch.Tensor, tile_major: bool = False,
                dispatch: str = "auto") -> torch.Tensor:
        """Evaluate samples.

        Args:
            tile: ``[N]`` int64 tile index of every sample, in ``[0, T)``.
            coords: ``[N, d]`` tile-local coordinates in ``[0, 1]``.
            tile_major: promise that the samples come as ``T`` equal blocks, tile 0
                first (a training batch); it skips the grouping of unbanked layers.
            dispatch: bank dispatch of a tile-major batch with nearest banks
                (:mod:`~loe_codec.model.tile_major`): ``auto`` (``packed`` on the CPU,
                sync-free on CUDA), ``packed``, ``grouped`` or ``dense``.

        Returns:
            ``[N, out_channels]`` predictions (pixel values scaled to ``[-0.5, 0.5]``).
        """
        cfg = self.config
        x = positional_encoding(coords, cfg.pe_frequencies)
        if tile_major and cfg.blend == "nearest":
            mode = resolve_dispatch(dispatch, coords.device)
            if mode != "packed":
                return tile_major_forward(self, x, coords, mode)
        if cfg.blend == "nearest" and not torch.is_grad_enabled() and not tile_major:
            return self._forward_packed(x, tile, coords)
        banks = self.nearest_banks(coords) if cfg.blend == "nearest" else [None] * cfg.layers
        for layer in range(cfg.layers):
            x = self._activate(layer, self._linear(layer, x, tile, coords, tile_major, banks[layer]))
        return x

    def forward_grid(self, tile: int, axes: list[torch.Tensor]) -> torch.Tensor:
        """Inference of tile ``tile`` on the grid of samples spanned by 1-D coordinate axes.

        Args:
            tile: the tile, in ``[0, T)``.
            axes: ``d`` float32 tensors, ``axes[k]`` ``[L_k]``: the tile-local coordinates of dimension ``k``.

        Returns:
            ``[L_{d-1}, ..., L_0, out_channels]`` (dimension 0, x, fastest): ``forward`` at the
            row-major grid of those coordinates up to float rounding, batched by bank cell
            (:mod:`~loe_codec.model.cells`) instead of sorted.
        """
        with torch.no_grad():
            return grid_forward(self, tile, axes)

    def _activate(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if layer == cfg.layers - 1:
            return x
        if cfg.activation == "sine":
            return torch.sin(x * cfg.sine_w0) if layer == 0 else torch.sin(x)
        if cfg.activation == "relu":
            return torch.relu(x)
        return torch.nn.functional.gelu(x)

    def _forward_packed(self, x: torch.Tensor, tile: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Inference with nearest banks: one sort for all layers.

        Samples are grouped by their tile and the banks of *all* layers at once, so a
        group uses one matrix per layer; packed once into chunks of one group each,
        they stay packed through every layer (one batched matmul per layer with the
        chunks' matrices) and are unpacked at the end.
        """
        cfg = self.config
        key = tile.clone()
        bank_ids = [torch.zeros_like(tile) if b is None else b for b in self.nearest_banks(coords)]
        for nb, bank in zip(self.bank_counts, bank_ids):
            key = key * nb + bank
        groups, group = torch.unique(key, return_inverse=True)
        layout = ChunkLayout.of(group, groups.numel())
        chunk_sample = layout.first[layout.chunk_group]  # one sample of every chunk
        chunk_tile = tile[chunk_sample]
        h = layout.pack(x)
        for layer, bank in enumerate(bank_ids):
            nb = self.bank_counts[layer]
            w = self.weight(layer)
            weight = w.reshape(self.num_tiles * nb, w.shape[2], w.shape[3])[chunk_tile * nb + bank[chunk_sample]]
            bias = self.biases[layer][chunk_tile].unsqueeze(1)
            if layer == 0 and cfg.activation == "sine":  # fold w0 into the (gathered) parameters
                weight, bias = weight * cfg.sine_w0, bias * cfg.sine_w0
                h = torch.sin(torch.baddbmm(bias, h, weight))
            else:
                h = self._activate(layer, torch.baddbmm(bias, h, weight))
        return layout.unpack(h)
