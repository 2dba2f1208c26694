"""Error-driven sampling for the fit: more samples where the network is still wrong.

Uniform random samples spend most of a step on what the networks already fit (a smooth sky), little
on what they do not (grass). :class:`CellSampler` splits every target (a tile, ``frames = 1``, or a
video block) into cells of a few pixels (and frames), keeps a running mean of the squared error the
fit's own samples saw in each cell, and draws cells with probability

    q = mix * p + (1 - mix) * p * e**power / sum(p * e**power)

(``p``: the cell's share of the target's samples, ``e``: its error), then a uniform sample inside the
cell. Each sample carries the weight ``p / q``, so the weighted loss has the uniform loss's
expectation (importance sampling: the same objective, less gradient noise); ``mix`` keeps every
weight at most ``1 / mix``. ``power`` 0.5 makes ``q`` follow the residual's magnitude, which is what
minimises the variance of the gradient estimate for a squared error.
"""

from __future__ import annotations

import math

import torch

CELL = (4, 16, 16)  # frames, rows, columns of a cell
MIX = 0.25
POWER = 0.5
DECAY = 0.1  # weight of a step's observations in a cell's running error


class CellSampler:
    """Cells of ``shapes`` (``(frames, rows, cols)`` per target) and their running errors.

    :meth:`draw` returns flat sample indices ``[B, S]`` (``frame * rows * cols + row * cols + col``)
    and their weights ``[B, S]``; :meth:`observe` takes the squared errors ``[B * S]`` of the last
    draw.
    """

    def __init__(self, shapes: list[tuple[int, int, int]], device: torch.device,
                 cell: tuple[int, int, int] = CELL, mix: float = MIX, power: float = POWER,
                 decay: float = DECAY):
        self.mix, self.power, self.decay = mix, power, decay
        grids = [tuple(math.ceil(n / c) for n, c in zip(shape, cell)) for shape in shapes]
        most = max(g[0] * g[1] * g[2] for g in grids)
        # Per target and cell (padded to the most cells; padding has size 0): its first voxel and size.
        first = torch.zeros(len(shapes), most, 3, dtype=torch.long)
        size = torch.zeros(len(shapes), most, 3, dtype=torch.long)
        for k, (shape, grid) in enumerate(zip(shapes, grids)):
            axes = [torch.arange(g) * c for g, c in zip(grid, cell)]
            start = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
            n = start.shape[0]
            first[k, :n] = start
            size[k, :n] = torch.minimum(torch.tensor(cell), torch.tensor(shape) - start)
        self.first, self.size = first.to(device), size.to(device)
        self.plane = torch.tensor([s[1] * s[2] for s in shapes], device=device).unsqueeze(1)
        self.cols = torch.tensor([s[2] for s in shapes], device=device).unsqueeze(1)
        voxels = size.prod(dim=2).float()
        self.share = (voxels / voxels.sum(dim=1, keepdim=True)).to(device)  # p: [B, cells]
        self.error = torch.ones_like(self.share)  # running mean squared error per cell
        self._last: torch.Tensor | None = None

    def probabilities(self) -> torch.Tensor:
        """q ``[B, cells]``: the draw's cell probabilities."""
        focus = self.share * self.error.clamp_min(1e-12) ** self.power
        return self.mix * self.share + (1 - self.mix) * focus / focus.sum(dim=1, keepdim=True)

    def draw(self, per_target: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat sample indices ``[B, S]`` and their importance weights ``p / q`` ``[B, S]``."""
        q = self.probabilities()
        cell = torch.multinomial(q, per_target, replacement=True, generator=gen)  # [B, S]
        self._last = cell
        weight = self.share.gather(1, cell) / q.gather(1, cell)
        index = cell.unsqueeze(2).expand(-1, -1, 3)
        first, size = self.first.gather(1, index), self.size.gather(1, index)  # [B, S, 3]
        u = torch.rand(first.shape, generator=gen, device=first.device)
        at = first + torch.minimum((u * size).long(), size - 1)
        return at[..., 0] * self.plane + at[..., 1] * self.cols + at[..., 2], weight

    def observe(self, err: torch.Tensor) -> None:
        """Fold the squared errors ``[B * S]`` of the last draw into the cells' running means."""
        cell = self._last
        err = err.detach().float().view(cell.shape)
        total = torch.zeros_like(self.error).scatter_add_(1, cell, err)
        count = torch.zeros_like(self.error).scatter_add_(1, cell, torch.ones_like(err))
        seen = count > 0
        mean = total / count.clamp_min(1)
        self.error = torch.where(seen, (1 - self.decay) * self.error + self.decay * mean, self.error)


class SampledPool:
    """Mixin of the fit's sample pools: uniform draws, or error-driven ones after :meth:`sample_by_error`.

    A pool sets ``count`` (``[B, 1]`` samples per target) and ``shapes`` (``(frames, rows, cols)`` per
    target); after a draw ``weights`` is None (uniform) or the draw's importance weights ``[B * S]``.
    """

    sampler: CellSampler | None = None
    weights: torch.Tensor | None = None

    def sample_by_error(self) -> None:
        self.sampler = CellSampler(self.shapes, self.count.device)

    def draw(self, per_target: int, gen: torch.Generator) -> torch.Tensor:
        """Flat sample indices ``[B, S]`` within each target."""
        if self.sampler is None:
            self.weights = None
            u = torch.rand(self.count.shape[0], per_target, generator=gen, device=self.count.device)
            return torch.minimum((u * self.count).long(), self.count - 1)
        local, weights = self.sampler.draw(per_target, gen)
        self.weights = weights.reshape(-1)
        return local

    def observe(self, err: torch.Tensor) -> None:
        """The squared errors ``[B * S]`` of the last draw (mean over channels)."""
        if self.sampler is not None:
            self.sampler.observe(err)
