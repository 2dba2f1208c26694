"""Geometry of the tile grid: tile cores, fit windows, coordinate domains and seam blending.

Tile cores partition the image. Each tile network is fitted on its core plus a
``margin`` on every side that has a neighbour; on decode, neighbouring tiles
are cross-faded over ``[edge - margin, edge + margin]`` with weights that sum to
one, so tiles join without seams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch


@dataclass(frozen=True)
class Tile:
    """One tile: grid position and core rectangle ``[x0, x1) x [y0, y1)`` in image pixels."""

    index: int
    col: int
    row: int
    x0: int
    y0: int
    x1: int
    y1: int


def _edges(length: int, size: int) -> list[int]:
    count = max(1, math.ceil(length / size))
    return [round(k * length / count) for k in range(count + 1)]


@dataclass(frozen=True)
class TileGrid:
    """Near-equal tiles of at most ``size`` pixels a side over a ``width x height`` image."""

    width: int
    height: int
    size: int
    margin: int

    @cached_property
    def x_edges(self) -> list[int]:
        return _edges(self.width, self.size)

    @cached_property
    def y_edges(self) -> list[int]:
        return _edges(self.height, self.size)

    @property
    def cols(self) -> int:
        return len(self.x_edges) - 1

    @property
    def rows(self) -> int:
        return len(self.y_edges) - 1

    def __len__(self) -> int:
        return self.cols * self.rows

    def tile(self, index: int) -> Tile:
        row, col = divmod(index, self.cols)
        xe, ye = self.x_edges, self.y_edges
        return Tile(index, col, row, xe[col], ye[row], xe[col + 1], ye[row + 1])

    def tiles(self) -> list[Tile]:
        return [self.tile(k) for k in range(len(self))]

    def domain(self, t: Tile) -> tuple[float, float, float, float]:
        """Coordinate domain ``(x, y, extent_x, extent_y)``: the core grown by the margin."""
        m = self.margin
        return (t.x0 - m, t.y0 - m, t.x1 - t.x0 + 2 * m, t.y1 - t.y0 + 2 * m)

    def window(self, t: Tile) -> tuple[int, int, int, int]:
        """Fit window ``(x, y, w, h)``: the domain clipped to the image."""
        m = self.margin
        x0, y0 = max(0, t.x0 - m), max(0, t.y0 - m)
        x1, y1 = min(self.width, t.x1 + m), min(self.height, t.y1 + m)
        return (x0, y0, x1 - x0, y1 - y0)

    def tiles_touching(self, x0: float, y0: float, x1: float, y1: float) -> list[Tile]:
        """Tiles whose blend support meets the rectangle ``[x0, x1) x [y0, y1)``."""
        m = self.margin
        xe, ye = self.x_edges, self.y_edges
        cols = [c for c in range(self.cols) if xe[c] - m < x1 and xe[c + 1] + m > x0]
        rows = [r for r in range(self.rows) if ye[r] - m < y1 and ye[r + 1] + m > y0]
        return [self.tile(r * self.cols + c) for r in rows for c in cols]

    def blend_weight(self, t: Tile, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-fade weight of tile ``t`` at image positions ``x``, ``y`` (same shapes).

        Weights of all tiles sum to one everywhere in the image. The weight is
        separable: ``weight_x(t, x) * weight_y(t, y)``.
        """
        return self.weight_x(t, x) * self.weight_y(t, y)

    def weight_x(self, t: Tile, x: torch.Tensor) -> torch.Tensor:
        """The x factor of :meth:`blend_weight`."""
        return _ramp(x, t.x0, t.x1, t.col > 0, t.col < self.cols - 1, self.margin)

    def weight_y(self, t: Tile, y: torch.Tensor) -> torch.Tensor:
        """The y factor of :meth:`blend_weight`."""
        return _ramp(y, t.y0, t.y1, t.row > 0, t.row < self.rows - 1, self.margin)


def _ramp(v: torch.Tensor, lo: int, hi: int, has_lo: bool, has_hi: bool, margin: int) -> torch.Tensor:
    """One axis of a tile's weight: ``up - down``, where ``up`` rises over ``[lo - m, lo + m]`` and
    ``down`` over ``[hi - m, hi + m]``. A tile's ``down`` is its right neighbour's ``up``, so the
    weights telescope to exactly one even where a narrow tile's two ramps overlap."""
    if margin == 0:
        up = (v >= lo).to(v.dtype) if has_lo else torch.ones_like(v)
        down = (v >= hi).to(v.dtype) if has_hi else torch.zeros_like(v)
    else:
        up = ((v - (lo - margin)) / (2 * margin)).clamp(0, 1) if has_lo else torch.ones_like(v)
        down = ((v - (hi - margin)) / (2 * margin)).clamp(0, 1) if has_hi else torch.zeros_like(v)
    return up - down
