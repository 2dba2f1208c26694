"""A network size per video block: more parameters where a short pilot fit leaves more error.

The rate rule gives every block of a video the same network, yet blocks differ by several dB
(Big Buck Bunny's first 60 frames at 0.1 bpp: the grass 33 dB, the sky 39). If every block gains about
``s`` dB per doubling of its bits (measured 1.76-2.26 on that clip's quadrants near 0.1 bpp:
benchmarks/README.md, "A network size per block at 0.1 bpp"), its squared error goes as
``bits ** -a`` with ``a = s ln 10 / (10 ln 2)``, and the video's squared error for its bits is least
where block ``i`` gets bits in proportion to ``MSE_i ** (1 / (1 + a))``. ``MSE_i`` comes from a pilot:
every block fitted for a small fraction of the steps at the rate's width. The pilot ranks the blocks as
the full fit does, but sees their errors closer together (in dB, the full fit's spread is 1.4-2.2 times
the pilot's on that clip), so the pilot's errors are spread by :data:`PILOT_SPREAD` (as powers of the
squared error) before they set the shares. A block's bits follow its parameters at one quantization
slope, so each block gets the width whose parameter count is its share.

Sized blocks are stored as the images' unit ladder stores pruned tiles (:mod:`loe_codec.model.units`):
the file's network is the widest block's, and every block keeps the first ``w_i`` units of each hidden
layer (its unit masks). A block is fitted at its own width (its compute, not the widest's), starting
from the first ``w_i`` units of the wide network's seeded reference (rescaled to its fan-in), so that
once widened it is coded against that reference as a decoder regenerates it: files need nothing new.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from .config import CodecConfig, ModelConfig
from .model import TiledLoE
from .reference import initial_biases, reference_weights, weight_bound

BLOCK_SIZES = ("equal", "pilot")
SLOPE_DB = 2.0  # dB per doubling of a block's bits (Big Buck Bunny near 0.1 bpp: 1.76 / 2.05 / 2.26)
PILOT_DIVISOR = 32  # the pilot fits every block for steps // 32 (2000 of video-best's 64 000)
# The full fit's spread of the blocks' PSNRs over the 1/32 pilot's (Big Buck Bunny's first 60 frames,
# 8 blocks, a 2 000-step pilot: a slope of 1.37 in dB against dB; the top half's 1 000-step pilot: 1.5
# and 2.2 in its two chunks); the model of benchmarks/video_bit_allocation.py gives +0.28 dB there at
# 1.5 against +0.24 unspread (the best shares: +0.31).
PILOT_SPREAD = 1.5
RATIO_RANGE = (0.5, 2.0)  # a block's bits stay within these multiples of the equal share
NARROWEST = 8


def pilot_steps(steps: int) -> int:
    """The pilot fit's steps for a fit of ``steps``."""
    return max(1, steps // PILOT_DIVISOR)


def bit_ratios(mse: list[float], voxels: list[int], slope_db: float = SLOPE_DB,
               limits: tuple[float, float] = RATIO_RANGE, spread: float = PILOT_SPREAD) -> list[float]:
    """Every block's bits as a multiple of its equal share: in proportion to ``MSE_i ** (spread / (1 + a))``
    (``MSE_i ** spread``: the error the full fit is expected to leave, relative to the others'), each within
    ``limits``, the voxel-weighted mean 1 (the video's bits kept)."""
    if len(mse) != len(voxels) or not mse:
        raise ValueError("one error and one voxel count per block are needed")
    a = slope_db * math.log(10) / (10 * math.log(2))
    raw = [max(m, 1e-12) ** (spread / (1 + a)) for m in mse]
    total = float(sum(voxels))
    lo, hi = limits

    def ratios_at(scale: float) -> list[float]:
        return [min(hi, max(lo, scale * r)) for r in raw]

    low, high = lo / max(raw), hi / min(raw)  # every block at the low / the high limit
    for _ in range(200):  # the spent bits grow with the scale: bisect for the video's bits
        mid = math.sqrt(low * high)
        if sum(v * r for v, r in zip(voxels, ratios_at(mid))) > total:
            high = mid
        else:
            low = mid
    return ratios_at(low)


def block_widths(model: ModelConfig, ratios: list[float], narrowest: int = NARROWEST) -> list[int]:
    """The width of every block: the widest whose parameter count is within its ratio of ``model``'s."""
    count = model.parameter_count()
    return [model.widest_within(r * count, min(narrowest, model.width)).width for r in ratios]


def sized_config(config: CodecConfig, widths: list[int]) -> CodecConfig:
    """The file's config for blocks of ``widths``: the widest block's network, and a unit ladder listing
    the fractions of it the blocks keep (so that every block's bytes carry its unit masks); ``config``
    itself where every block has the same width (then at that width)."""
    widest = max(widths)
    model = dataclasses.replace(config.model, width=widest)
    fractions = sorted({w / widest for w in widths}, reverse=True)
    quant = config.quant if len(fractions) == 1 else dataclasses.replace(config.quant, unit_ladder=tuple(fractions))
    return dataclasses.replace(config, model=model, quant=quant)


def narrow_initial(narrow: ModelConfig, wide: ModelConfig, seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """A ``narrow`` network's initial weights ``[banks, in, out]`` per layer: the first units of ``wide``'s
    seeded reference (rescaled from the wide fan-in's bound to the narrow one's), and its own biases."""
    out = []
    for layer, ((i, o), w) in enumerate(zip(narrow.layer_shapes(), reference_weights(wide, seed))):
        gain = weight_bound(narrow, layer, i) / weight_bound(wide, layer, w.shape[1])
        out.append((w[:, :i, :o] * gain).contiguous())
    return out, initial_biases(narrow, seed)


def initialised_within(narrow: ModelConfig, wide: ModelConfig, seeds: list[int]) -> TiledLoE:
    """Fresh ``narrow`` networks, block ``k`` from ``seeds[k]`` as :func:`narrow_initial` says."""
    return TiledLoE.from_tiles(narrow, [narrow_initial(narrow, wide, s) for s in seeds])


def widened(blocks: list[tuple[TiledLoE, int]], wide: ModelConfig) -> tuple[TiledLoE, list[torch.Tensor]]:
    """Networks of any widths up to ``wide.width`` (network ``t`` of each batch model, in block order) as
    one batch of ``wide`` networks, each keeping its first units (the rest zero); and the kept units
    (bool ``[T, width]`` per hidden layer)."""
    tiles, keeps = [], []
    for model, t in blocks:
        narrow = model.config.width
        if narrow > wide.width:
            raise ValueError(f"a width-{narrow} network does not fit in width {wide.width}")
        weights, biases = [], []
        for (i, o), w, b in zip(wide.layer_shapes(), model.weights, model.biases):
            full = torch.zeros(w.shape[1], i, o, dtype=w.dtype)
            full[:, :w.shape[2], :w.shape[3]] = w[t].detach()
            bias = torch.zeros(o, dtype=b.dtype)
            bias[:b.shape[1]] = b[t].detach()
            weights.append(full)
            biases.append(bias)
        tiles.append((weights, biases))
        keeps.append(torch.arange(wide.width) < narrow)
    units = [torch.stack(keeps) for _ in range(wide.layers - 1)]
    return TiledLoE.from_tiles(wide, tiles), units
