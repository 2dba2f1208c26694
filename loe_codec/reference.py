"""The seeded reference weights every tile network starts from, and codes its weights against.

A fitted network's weights stay close to their random initialisation (on Kodak
at ``balanced`` the hidden layers' fitted weights correlate 0.83-0.93 with it),
so a file codes ``w - gain * reference`` rather than ``w``: the residual is
about half as wide, which saves roughly a bit per weight. The decoder
regenerates the reference from the tile's seed, so it costs nothing to store
but one ``gain`` per (tile, layer).

The numbers must be identical on every machine and in every later version, so
they come from a counter-based generator (SplitMix64 in integer arithmetic)
rather than torch's generator, whose algorithms may change: a file names the
reference it was coded against (``QuantConfig.reference``) and a decoder
refuses one it does not know.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .config import REFERENCES, SEEDED_REFERENCE, ModelConfig

__all__ = ["REFERENCES", "SEEDED_REFERENCE", "reference_weights", "initial_biases", "fitted_gains",
           "batch_references", "uniform", "tile_seed"]

_MASK = (1 << 64) - 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 output function of ``uint64`` counters (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniform(seed: int, stream: int, count: int) -> np.ndarray:
    """``count`` float32 values in ``[-1, 1)``, a function of ``(seed, stream)`` only.

    24 random bits per value, so ``2 u - 1`` is exact in float32.
    """
    key = _splitmix64(np.array([(int(seed) * 0x100000001B3 + int(stream) * 0x9E3779B1) & _MASK],
                               dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        counters = np.arange(count, dtype=np.uint64) + key
    bits = (_splitmix64(counters) >> np.uint64(40)).astype(np.float32)
    return bits * np.float32(2.0**-23) - np.float32(1.0)


def tile_seed(seed: int, tile_index: int) -> int:
    """Seed of one tile's (or video block's) initialisation and reference: depends only on the run
    seed and the tile."""
    return (int(seed) * 1_000_003 + int(tile_index) * 7919 + 17) & 0x7FFFFFFF


def weight_bound(config: ModelConfig, layer: int, fan_in: int) -> float:
    """Half-width of layer ``layer``'s uniform initialisation."""
    if config.activation == "sine" and layer == 0:
        return 1.0 / fan_in
    return math.sqrt(6.0 / fan_in)


def reference_weights(config: ModelConfig, seed: int) -> list[torch.Tensor]:
    """Float32 ``[banks, in, out]`` per layer: the tile's initial weights, and the reference it is
    coded against."""
    weights = []
    for layer, ((fan_in, fan_out), nb) in enumerate(zip(config.layer_shapes(), config.bank_counts())):
        u = uniform(seed, 2 * layer, nb * fan_in * fan_out).reshape(nb, fan_in, fan_out)
        weights.append(torch.from_numpy(u * np.float32(weight_bound(config, layer, fan_in))))
    return weights


def initial_biases(config: ModelConfig, seed: int) -> list[torch.Tensor]:
    """Float32 ``[out]`` per layer, uniform in ``±1/sqrt(fan_in)`` (not coded against: biases are few)."""
    return [torch.from_numpy(uniform(seed, 2 * layer + 1, fan_out) * np.float32(1.0 / math.sqrt(fan_in)))
            for layer, (fan_in, fan_out) in enumerate(config.layer_shapes())]


def fitted_gains(weights: list[torch.Tensor], references: list[torch.Tensor]) -> torch.Tensor:
    """Least-squares gains ``[T, layers]`` (float16-exact) of ``weights[l]`` ``[T, banks, in, out]``
    against ``references[l]`` (same shapes): ``w ≈ gain * reference``, the residual's energy is least."""
    gains = []
    for w, ref in zip(weights, references):
        num = (w.detach() * ref).flatten(1).sum(dim=1)
        den = (ref * ref).flatten(1).sum(dim=1).clamp_min(1e-30)
        gains.append((num / den).clamp(-2.0, 2.0))
    return torch.stack(gains, dim=1).to(torch.float16).float()


def batch_references(config: ModelConfig, seeds: list[int]) -> list[torch.Tensor]:
    """References of a batch of tiles: ``[T, banks, in, out]`` per layer, tile ``k`` from ``seeds[k]``."""
    per_tile = [reference_weights(config, s) for s in seeds]
    return [torch.stack([t[layer] for t in per_tile]) for layer in range(config.layers)]
