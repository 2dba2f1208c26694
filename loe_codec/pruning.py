"""A Lagrangian choice per tile over a ladder of model sizes: how many hidden units each tile keeps.

Every rung of ``quant.unit_ladder`` keeps a fraction of each hidden layer's units: those whose
removal changes the tile's output least (measured on its probe pixels). All rungs of all tiles
are fine-tuned with the quantizer in the loop for a short while, together in one batched model
(:func:`tune_rungs`); at a slope each tile then keeps the rung of least ``squared error + slope *
bits`` (:meth:`loe_codec.fitted.FittedBatch.selected`: the same Lagrangian that sets the steps,
so flat tiles, whose error barely grows, end up with small networks).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from .config import CodecConfig
from .fit import _PixelPool, finetune_quantized
from .fitted import FittedBatch
from .model import TiledLoE
from .rate import Probe

SHORT_QAT_FRACTION = 4  # the rungs compete after this fraction of the fine-tuning steps


@torch.no_grad()
def unit_importance(model: TiledLoE, probe: Probe) -> list[torch.Tensor]:
    """How much each hidden unit matters: ``[T, width]`` per hidden layer, the mean squared change of
    every tile's output on the probe pixels when that one unit's outgoing weights are zeroed."""
    base = model(probe.tile, probe.coords)
    out = []
    for layer in range(model.config.layers - 1):
        following = model.weights[layer + 1]
        scores = torch.zeros(model.num_tiles, model.config.width)
        for unit in range(model.config.width):
            row = following.data[:, :, unit, :].clone()
            try:
                following.data[:, :, unit, :] = 0
                change = (model(probe.tile, probe.coords) - base).pow(2)
            finally:
                following.data[:, :, unit, :] = row
            scores[:, unit] = change.view(model.num_tiles, -1).mean(dim=1)
        out.append(scores)
    return out


def rung_units(importance: list[torch.Tensor], fraction: float) -> list[torch.Tensor]:
    """Kept units (bool ``[T, width]`` per hidden layer) of a rung: the ``round(fraction * width)``
    (at least one) most important units of every hidden layer of every tile."""
    out = []
    for scores in importance:
        keep = max(1, round(fraction * scores.shape[1]))
        order = scores.argsort(dim=1, descending=True, stable=True)
        out.append(torch.zeros_like(scores, dtype=torch.bool).scatter_(1, order[:, :keep], True))
    return out


def tune_rungs(batch: FittedBatch, steps: torch.Tensor, config: CodecConfig, targets: list, device: str,
               progress: Callable[[int, int, float], None] | None = None,
               pool_type: type = _PixelPool) -> list[FittedBatch]:
    """The candidate sizes of every tile of ``batch``: one batch per rung of ``config.quant.unit_ladder``,
    its tiles keeping that rung's most important units, all rungs fine-tuned together with the quantizer
    in the loop at ``steps`` ``[T, layers]`` for a fraction of the fine-tuning steps. A tile's choice
    among them at a slope is :meth:`FittedBatch.selected`."""
    ladder = config.quant.unit_ladder
    rungs, tiles = len(ladder), len(batch.tiles)
    importance = unit_importance(batch.model, batch.probe)
    candidates = [rung_units(importance, f) for f in ladder]
    repeat = lambda t: t.detach().repeat(rungs, *([1] * (t.dim() - 1)))  # noqa: E731 - rung-major
    model = TiledLoE(batch.model.config, [repeat(w) for w in batch.model.weights],
                     [repeat(b) for b in batch.model.biases])
    short = dataclasses.replace(config.quant, qat_steps=config.quant.qat_steps // SHORT_QAT_FRACTION)
    offsets = None if batch.offsets is None else [repeat(o) for o in batch.offsets]
    units = [torch.cat([c[layer] for c in candidates]) for layer in range(len(importance))]
    tuned = finetune_quantized(model, steps.repeat(rungs, 1), config.fit, short, list(targets) * rungs, device,
                               progress, pool_type, offsets, units)
    out = []
    for r in range(rungs):
        part = slice(r * tiles, (r + 1) * tiles)
        rung = TiledLoE(batch.model.config, [w.detach()[part] for w in tuned.weights],
                        [b.detach()[part] for b in tuned.biases])
        out.append(FittedBatch(batch.tiles, rung, batch.sensitivity, batch.probe, batch.gains, batch.offsets,
                               candidates[r]))
    return out
