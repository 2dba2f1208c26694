"""Space-time blocks of a video: spatial tiles (a :class:`~loe_codec.tiling.TileGrid`) times chunks of frames.

Frame ``f`` sits at time position ``f + 0.5`` (frame units), as pixel ``x`` sits
at ``x + 0.5``. Chunk cores partition the frames; each block is fitted on its
core plus ``margin`` frames on every side that has a neighbour, and the decoder
cross-fades neighbouring chunks over ``[edge - margin, edge + margin]`` with
the same ramps as the spatial tiles, so weights sum to one in space and time
and there is no jump (flicker) at chunk borders.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from .tiling import Tile, TileGrid, _edges, _ramp


@dataclass(frozen=True)
class Chunk:
    """One chunk of frames: core ``[f0, f1)``."""

    index: int
    f0: int
    f1: int


@dataclass(frozen=True)
class Block:
    """A space-time block: spatial tile x chunk. ``index = chunk.index * tiles_per_frame + tile.index``."""

    index: int
    tile: Tile
    chunk: Chunk


@dataclass(frozen=True)
class TimeGrid:
    """Near-equal chunks of at most ``size`` frames over ``frames`` frames, blended over ``margin`` frames."""

    frames: int
    size: int
    margin: int

    @cached_property
    def edges(self) -> list[int]:
        return _edges(self.frames, self.size)

    def __len__(self) -> int:
        return len(self.edges) - 1

    def chunk(self, index: int) -> Chunk:
        return Chunk(index, self.edges[index], self.edges[index + 1])

    def chunks(self) -> list[Chunk]:
        return [self.chunk(k) for k in range(len(self))]

    def domain(self, c: Chunk) -> tuple[float, float]:
        """Time domain ``(start, extent)`` in frames: the core grown by the margin."""
        return (c.f0 - self.margin, c.f1 - c.f0 + 2 * self.margin)

    def window(self, c: Chunk) -> tuple[int, int]:
        """Frames ``[start, stop)`` a chunk is fitted on: the domain clipped to the video."""
        return max(0, c.f0 - self.margin), min(self.frames, c.f1 + self.margin)

    def touching(self, t0: float, t1: float) -> list[Chunk]:
        """Chunks whose blend support meets ``[t0, t1)`` (time positions)."""
        m, e = self.margin, self.edges
        return [self.chunk(k) for k in range(len(self)) if e[k] - m < t1 and e[k + 1] + m > t0]

    def weight(self, c: Chunk, t: torch.Tensor) -> torch.Tensor:
        """Cross-fade weight of chunk ``c`` at time positions ``t``; the chunks' weights sum to one."""
        return _ramp(t, c.f0, c.f1, c.index > 0, c.index < len(self) - 1, self.margin)

    def near_border(self, frame: int) -> bool:
        """Whether frame ``frame`` is blended across an interior chunk border (for flicker measures)."""
        t = frame + 0.5
        return any(abs(t - e) < max(self.margin, 1) for e in self.edges[1:-1])


@dataclass(frozen=True)
class SpaceTimeGrid:
    """The blocks of a ``width x height x frames`` video."""

    space: TileGrid
    time: TimeGrid

    @classmethod
    def of(cls, width: int, height: int, frames: int, tile: int, margin: int, chunk: int,
           time_margin: int) -> "SpaceTimeGrid":
        return cls(TileGrid(width, height, tile, margin), TimeGrid(frames, chunk, time_margin))

    def __len__(self) -> int:
        return len(self.space) * len(self.time)

    def block(self, tile: Tile, chunk: Chunk) -> Block:
        return Block(chunk.index * len(self.space) + tile.index, tile, chunk)

    def blocks_of_chunk(self, chunk: Chunk) -> list[Block]:
        return [self.block(t, chunk) for t in self.space.tiles()]
