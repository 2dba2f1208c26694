"""Fitted tile networks on their way into a file: quantization steps at a slope, size and error
estimates, and packing (images and video blocks alike)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from . import entropy
from .config import CodecConfig
from .model import TiledLoE
from .model.units import drop_units, layer_keep
from .quantize import dequantize_steps, quantize_bias, quantize_to_step, step_integers, storable_steps
from .rate import Probe, estimated_bits, steps_for_slope
from .reference import batch_references, fitted_gains, tile_seed
from .tileblob import laplace_fixed_bytes, pack_laplace
from .tiling import Tile


PSNR_PROBE_SAMPLES = 1024  # pixels per tile kept to estimate the PSNR of a candidate slope


@dataclass
class FittedBatch:
    """A batch of fitted float tile networks, their layers' sensitivities ``[T, layers]``, a small
    probe of their pixels (to estimate the error of a quantization) and, when the config codes
    against a reference, the offsets ``gain * reference`` the integers are counted from (per
    layer ``[T, banks, in, out]``) with their float16-exact ``gains`` ``[T, layers]``.

    The gains are fitted once, to the float networks: fine-tuning then rounds onto the grids
    they shift, and the file stores the same gains.

    ``units``: the hidden units every tile keeps (bool ``[T, width]`` per hidden layer), once
    chosen; None: all. ``rungs``: while they are being chosen, the candidate sizes
    (:func:`loe_codec.pruning.tune_rungs`: one batch per rung of the unit ladder, its networks
    fine-tuned with that rung's units): at a slope, each tile is coded from the rung of least
    cost (:meth:`selected`), so size and error estimates at any slope count the choice.
    """

    tiles: list[Tile]
    model: TiledLoE
    sensitivity: torch.Tensor
    probe: Probe
    gains: torch.Tensor | None = None
    offsets: list[torch.Tensor] | None = None
    units: list[torch.Tensor] | None = None
    rungs: list["FittedBatch"] | None = None

    @classmethod
    def of(cls, tiles: list[Tile], model: TiledLoE, sensitivity: torch.Tensor, probe: Probe,
           config: CodecConfig, units: list[torch.Tensor] | None = None) -> "FittedBatch":
        """A batch of ``tiles`` (or video blocks: anything with an ``index``) coded as ``config`` says;
        ``units``: the units its networks keep from the start (None: all), whose weights alone the gains
        are fitted to (a dropped weight is not coded: counting it would shrink the gains)."""
        if config.quant.reference == "none":
            return cls(tiles, model, sensitivity, probe, units=units)
        refs = drop_units(batch_references(config.model, [tile_seed(config.fit.seed, t.index) for t in tiles]), units)
        gains = fitted_gains(list(model.weights), refs)
        offsets = [gains[:, layer].view(-1, 1, 1, 1) * ref for layer, ref in enumerate(refs)]
        return cls(tiles, model, sensitivity, probe, gains, offsets, units)

    def offset(self, layer: int) -> torch.Tensor | None:
        """Offsets ``[T, banks, in, out]`` of ``layer`` (None without a reference)."""
        return None if self.offsets is None else self.offsets[layer]

    def integers(self, steps: torch.Tensor) -> list[torch.Tensor]:
        """Float integers ``[T, banks, in, out]`` per layer of the weights quantized with ``steps`` ``[T, layers]``."""
        return [step_integers(w.detach(), steps[:, i].view(-1, 1, 1, 1), self.offset(i))
                for i, w in enumerate(self.model.weights)]

    def selected(self, slope: float, config: CodecConfig) -> "FittedBatch":
        """The batch as coded at ``slope``: without rungs itself; with rungs, every tile's network and
        units from the rung of least ``squared error + slope * bits`` at that slope."""
        if self.rungs is None:
            return self
        costs = []
        for rung in self.rungs:
            steps = batch_steps(rung, slope)
            costs.append(rung.squared_error_at(steps) + slope * 8 * rung.bytes_at(steps, config))
        pick = torch.stack(costs).argmin(dim=0).tolist()  # [T]: the rung of every tile
        rungs = [self.rungs[r] for r in pick]

        def per_tile(part: Callable[["FittedBatch"], torch.Tensor]) -> torch.Tensor:
            return torch.stack([part(rung)[t].detach() for t, rung in enumerate(rungs)])
        layers = self.model.config.layers
        model = TiledLoE(self.model.config, [per_tile(lambda b, i=i: b.model.weights[i]) for i in range(layers)],
                         [per_tile(lambda b, i=i: b.model.biases[i]) for i in range(layers)])
        units = [per_tile(lambda b, i=i: b.units[i]) for i in range(layers - 1)]
        return FittedBatch(self.tiles, model, self.sensitivity, self.probe, self.gains, self.offsets, units)

    def squared_error(self, slope: float, config: CodecConfig) -> torch.Tensor:
        """Estimated squared error ``[T]`` of the batch quantized at ``slope`` (no more fine-tuning)."""
        chosen = self.selected(slope, config)
        return chosen.squared_error_at(batch_steps(chosen, slope))

    def squared_error_at(self, steps: torch.Tensor) -> torch.Tensor:
        """Estimated squared error ``[T]`` of the batch quantized with ``steps`` ``[T, layers]``."""
        weights = [dequantize_steps(q, steps[:, i].view(-1, 1, 1, 1), self.offset(i))
                   for i, q in enumerate(self.integers(steps))]
        biases = [b.detach().half().float() for b in self.model.biases]
        return self.probe.squared_error(TiledLoE(self.model.config, drop_units(weights, self.units), biases))

    def bytes_at(self, steps: torch.Tensor, config: CodecConfig) -> torch.Tensor:
        """Estimated bytes ``[T]`` of every tile's blob quantized with ``steps`` (ideal code lengths; the
        coder adds a few bytes) and its 4-byte table entry."""
        ints = self.integers(steps)
        keeps = [None if self.units is None else layer_keep(self.units, layer) for layer in range(len(ints))]
        bits = sum(estimated_bits(q, keep) for q, keep in zip(ints, keeps))
        if self.units is None:
            fixed = torch.full_like(bits, float(laplace_fixed_bytes(config)))
        else:
            kept_biases = sum(u.sum(dim=1) for u in self.units) + self.model.config.out_channels
            fixed = torch.tensor([float(laplace_fixed_bytes(config, int(k))) for k in kept_biases],
                                 dtype=torch.float64)
        return bits / 8 + fixed + 4

    def pack(self, index: int, steps: torch.Tensor, config: CodecConfig) -> np.ndarray:
        """The blob of tile ``index`` (position in the batch) quantized with float16-exact ``steps`` ``[layers]``."""
        model = self.model
        ints = [quantize_to_step(w[index], steps[layer],
                                 None if self.offsets is None else self.offsets[layer][index]).numpy()
                for layer, w in enumerate(model.weights)]
        biases = [quantize_bias(b[index], config.quant) for b in model.biases]
        gains = None if self.gains is None else self.gains[index].tolist()
        units = None
        if config.quant.prunes_units:
            units = [np.ones(model.config.width, dtype=bool) for _ in range(model.config.layers - 1)] \
                if self.units is None else [u[index].numpy() for u in self.units]
        return pack_laplace(config, ints, steps.tolist(), biases, gains, units)


def batch_steps(batch: FittedBatch, slope: float) -> torch.Tensor:
    """Float16-exact steps ``[T, layers]`` of a batch at a rate–distortion slope.

    Never so fine that an integer would leave the entropy coder's range.
    """
    peak = torch.stack([(w.detach() if batch.offsets is None else w.detach() - batch.offsets[i])
                        .abs().flatten(1).amax(dim=1) for i, w in enumerate(batch.model.weights)], dim=1)
    finest = peak * 1.01 / entropy.MAX_MAGNITUDE
    return storable_steps(torch.maximum(steps_for_slope(batch.sensitivity, slope), finest))


def batch_size_estimate(batch: FittedBatch, slope: float, config: CodecConfig) -> float:
    """Estimated bytes of a batch's blobs at ``slope`` (ideal code lengths; the coder adds a few bytes)."""
    chosen = batch.selected(slope, config)
    return float(chosen.bytes_at(batch_steps(chosen, slope), config).sum())


def pack_batch(batch: FittedBatch, slope: float, config: CodecConfig) -> list[np.ndarray]:
    """Blobs of every tile of a batch quantized at ``slope`` (no more fine-tuning)."""
    chosen = batch.selected(slope, config)
    steps = batch_steps(chosen, slope)
    return [chosen.pack(k, steps[k], config) for k in range(len(batch.tiles))]
