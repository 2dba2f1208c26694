"""Rate–distortion choices: per-layer step sizes from measured sensitivities, and the slope search.

Quantizing layer ``l`` of tile ``t`` with step ``Δ`` adds noise of variance
``Δ²/12`` to each of its ``n`` weights, which costs about ``n h Δ²/12`` of
squared error, where ``h`` (the layer's *sensitivity*) is the squared error one
unit of weight-noise variance adds, per weight; the integers then cost about
``n (c - log2 Δ)`` bits. Minimising ``error + slope * bits`` gives
``Δ² = 6 slope / (h ln 2)``: one slope for the whole image spends bits where
they buy the most quality, across layers and across tiles (flat tiles, whose
networks are insensitive, get coarse steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .fit import TileTarget, _PixelPool
from .model import TiledLoE

PROBE_SAMPLES = 4096
PROBE_NOISE = 0.05  # noise std relative to each layer's weight rms: small enough to stay quadratic


@dataclass
class Probe:
    """Random pixels of a batch's tiles: tile ``[N]``, coords ``[N, 2]``, targets ``[N, C]`` in
    ``[-0.5, 0.5]``, tile-major (``N = T * per_tile``), and the pixels each tile stands for ``[T]``."""

    tile: torch.Tensor
    coords: torch.Tensor
    target: torch.Tensor
    pixels: torch.Tensor

    @classmethod
    def of(cls, targets: list[TileTarget], pixels: list[int], per_tile: int = PROBE_SAMPLES,
           pool_type: type = _PixelPool) -> "Probe":
        """``per_tile`` random pixels of each target's window; ``pixels[k]``: the image pixels tile ``k``
        is responsible for (its core rectangle: the cores partition the image, the windows overlap).
        ``pool_type`` samples the targets (video blocks bring their own)."""
        pool = pool_type(targets, torch.device("cpu"))
        tile, coords, target = pool.sample(per_tile, torch.Generator().manual_seed(targets[0].seed + 2))
        return cls(tile, coords, target, torch.tensor(pixels, dtype=torch.float64))

    def subset(self, per_tile: int) -> "Probe":
        """The first ``per_tile`` samples of every tile (a smaller probe to keep)."""
        keep = lambda x: x.view(len(self.pixels), -1, *x.shape[1:])[:, :per_tile].reshape(-1, *x.shape[1:])  # noqa: E731
        return Probe(keep(self.tile), keep(self.coords), keep(self.target), self.pixels)

    @torch.no_grad()
    def squared_error(self, model: TiledLoE) -> torch.Tensor:
        """Estimated squared error of every tile over the pixels it stands for: float64 ``[T]``.

        Predictions are rounded to 8 bits like a decoded image's.
        """
        out = model(self.tile, self.coords)
        out = torch.round((out + 0.5) * 255).clamp(0, 255) / 255 - 0.5
        mse = (out - self.target).pow(2).view(len(self.pixels), -1).mean(dim=1).double()
        return mse * self.pixels


@torch.no_grad()
def layer_sensitivity(model: TiledLoE, probe: Probe) -> torch.Tensor:
    """Squared error added per unit of weight-noise variance, per weight: ``[T, layers]``.

    Measured on the probe's pixels as the mean squared change of the output when one
    layer's weights get Gaussian noise (no residual term: quantization noise is
    independent of the fit's error), scaled to the pixels each tile stands for.
    """
    gen = torch.Generator().manual_seed(int(probe.tile.numel()) + 3)
    tile, coords, pixels = probe.tile, probe.coords, probe.pixels
    base = model(tile, coords)
    out = torch.zeros(model.num_tiles, model.config.layers, dtype=torch.float64)
    for layer, w in enumerate(model.weights):
        original = w.detach().clone()
        rms = original.pow(2).mean(dim=(1, 2, 3)).sqrt().clamp_min(1e-12)  # [T]
        sigma = (PROBE_NOISE * rms).view(-1, 1, 1, 1)
        try:
            w.data.add_(sigma * torch.randn(original.shape, generator=gen))
            change = (model(tile, coords) - base).pow(2).view(model.num_tiles, -1).mean(dim=1)
        finally:
            w.data.copy_(original)
        per_weight = original[0].numel()  # the noise hit every weight of the layer at once
        out[:, layer] = change.double() * pixels / (sigma.view(-1).double() ** 2 * per_weight)
    return out.float()


def estimated_bits(ints: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Bits ``[T]`` an ideal coder spends on integer weights ``[T, ...]`` under each tile's fitted
    discrete Laplace (the closed form of :meth:`~loe_codec.entropy.LaplaceModel.ideal_bits`), counting
    only the weights ``keep`` (bool, broadcastable to ``ints``; None: all) marks as stored."""
    if keep is None:
        count = torch.full((ints.shape[0],), float(ints[0].numel()), dtype=torch.float64)
        total_abs = ints.abs().flatten(1).double().sum(dim=1)
    else:
        keep = keep.expand_as(ints)
        count = keep.flatten(1).double().sum(dim=1)
        total_abs = (ints.abs() * keep).flatten(1).double().sum(dim=1)
    mean_abs = total_abs / count.clamp_min(1)
    r = torch.where(mean_abs > 0, (torch.sqrt(1 + mean_abs**2) - 1) / mean_abs.clamp_min(1e-12),
                    torch.zeros_like(mean_abs)).clamp(1 / 65536, 1 - 1 / 65536)
    bits = -count * torch.log2((1 - r) / (1 + r)) - count * mean_abs * torch.log2(r)
    return torch.where(mean_abs > 0, bits, torch.zeros_like(bits))


def steps_for_slope(sensitivity: torch.Tensor, slope: float) -> torch.Tensor:
    """Optimal uniform steps ``[T, layers]`` for a rate–distortion ``slope`` (see the module doc)."""
    return torch.sqrt(6.0 * slope / (math.log(2.0) * sensitivity.clamp_min(1e-30)))


SLOPE_RANGE = (1e-7, 10.0)  # from finer than any use to coarser than any use


def solve_slope(measure: Callable[[float], float], target: float, low: float = SLOPE_RANGE[0],
                high: float = SLOPE_RANGE[1], iterations: int = 40) -> float:
    """The slope where ``measure(slope)`` (decreasing in the slope: a size, or a quality) meets
    ``target``, by bisection in log-slope within ``[low, high]``.

    Returns the largest slope tried whose measure is still ``>= target`` (so a quality target is
    met), or ``low`` if none is.
    """
    lo, hi = math.log(low), math.log(high)
    best = low
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if measure(math.exp(mid)) >= target:
            best = max(best, math.exp(mid))
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-3:
            break
    return best
