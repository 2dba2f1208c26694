"""Fitting a batch of 3-D (x, y, t) block networks to their voxels.

The same recipe as the image tiles (:mod:`loe_codec.fit`: Adam with warm-up and
cosine decay, random samples, all blocks of a batch in one :class:`TiledLoE`,
block ``k`` seeded from ``(seed, k)``), with samples drawn from frames x rows x
columns instead of rows x columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .block_sizes import initialised_within
from .config import FitConfig, ModelConfig
from .fit import ProgressFn, Snapshots, train
from .model import TiledLoE
from .sampling import SampledPool


@dataclass
class BlockTarget:
    """Voxels one block network is fitted to.

    ``voxels`` is uint8 ``[frames, h, w, C]``: the block's fit window, whose first
    voxel is frame ``window[2]``, pixel ``(window[0], window[1])``. The block's
    domain starts at ``origin`` (x, y, t) and spans ``extent``; block-local
    ``p = (pos - origin) / extent`` with pixel and frame centres at ``+0.5``.
    With a camera path (:mod:`loe_codec.motion`), ``shift`` float ``[frames, 2]`` holds each window
    frame's pixel shift (x, y): that frame's pixel ``q`` is fitted at ``q + shift``.
    """

    voxels: torch.Tensor
    window: tuple[int, int, int]
    origin: tuple[float, float, float]
    extent: tuple[float, float, float]
    seed: int
    shift: torch.Tensor | None = None


class _VoxelPool(SampledPool):
    """All blocks' voxels flattened on the device, with per-block geometry, for sampling."""

    def __init__(self, targets: list[BlockTarget], device: torch.device):
        shapes = [t.voxels.shape for t in targets]
        sizes = [s[0] * s[1] * s[2] for s in shapes]
        self.voxels = torch.cat([t.voxels.reshape(-1, t.voxels.shape[3]) for t in targets]).to(device)

        def column(values, dtype):
            return torch.tensor(values, dtype=dtype, device=device).unsqueeze(1)

        self.offset = column([sum(sizes[:k]) for k in range(len(sizes))], torch.long)
        self.count = column(sizes, torch.long)
        self.width = column([s[2] for s in shapes], torch.long)
        self.plane = column([s[1] * s[2] for s in shapes], torch.long)
        # start[k, d] = (window + 0.5 - origin) / extent and step[k, d] = 1 / extent, per axis (x, y, t).
        start = [[(t.window[d] + 0.5 - t.origin[d]) / t.extent[d] for d in range(3)] for t in targets]
        self.start = torch.tensor(start, dtype=torch.float32, device=device).unsqueeze(1)  # [B, 1, 3]
        self.step = torch.tensor([[1.0 / e for e in t.extent] for t in targets], dtype=torch.float32,
                                 device=device).unsqueeze(1)
        self.num_blocks = len(targets)
        self.shapes = [tuple(s[:3]) for s in shapes]
        self.block = torch.arange(self.num_blocks, device=device).unsqueeze(1)
        self.shift = None  # [B, frames, 2]: each window frame's shift, in block units
        if any(t.shift is not None for t in targets):
            table = torch.zeros(len(targets), max(s[0] for s in shapes), 2)
            for k, t in enumerate(targets):
                if t.shift is not None:
                    if t.shift.shape != (shapes[k][0], 2):
                        raise ValueError(f"block {k}'s shift is {tuple(t.shift.shape)}, its window has "
                                         f"{shapes[k][0]} frames")
                    table[k, :shapes[k][0]] = t.shift.float() / torch.tensor(t.extent[:2], dtype=torch.float32)
            self.shift = table.to(device)

    def sample(self, per_block: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Random voxels: block ``[N]``, coords ``[N, 3]`` (x, y, t), targets ``[N, C]`` in ``[-0.5, 0.5]``."""
        local = self.draw(per_block, gen)
        frame, rest = local // self.plane, local % self.plane
        index = torch.stack([rest % self.width, rest // self.width, frame], dim=2).float()  # [B, S, 3]
        coords = self.start + index * self.step
        if self.shift is not None:
            moved = self.shift[self.block, frame]  # [B, S, 2]
            coords = torch.cat([coords[:, :, :2] + moved, coords[:, :, 2:]], dim=2)
        coords = coords.reshape(-1, 3)
        target = self.voxels[(self.offset + local).reshape(-1)].float() / 255.0 - 0.5
        return self.block.expand(-1, per_block).reshape(-1), coords, target


def fit_blocks(model_cfg: ModelConfig, fit_cfg: FitConfig, targets: list[BlockTarget],
               device: str | torch.device = "cpu", progress: ProgressFn | None = None,
               snapshots: Snapshots | None = None, within: ModelConfig | None = None) -> TiledLoE:
    """Fit one 3-D network per target, all in one batched model (returned on the CPU, in eval mode;
    ``snapshots``: see :func:`loe_codec.fit.train`); ``within``: the networks start from the first units
    of that wider network's references (a block sized to its content: :mod:`loe_codec.block_sizes`)."""
    if not targets:
        raise ValueError("fit_blocks needs at least one block")
    if model_cfg.dims != 3:
        raise ValueError("video blocks need a 3-D model (dims=3)")
    seeds = [t.seed for t in targets]
    model = TiledLoE.initialised(model_cfg, seeds) if within is None else initialised_within(model_cfg, within, seeds)
    return train(model, fit_cfg, targets, torch.device(device), targets[0].seed, progress, _VoxelPool,
                 snapshots=snapshots)
