"""Decoding: evaluate the tile networks at the output pixels of any region and scale.

Output pixel ``(i, j)`` of a ``W_out x H_out`` decode of the source window
``(x, y, w, h)`` is the average of the networks at ``k x k`` points spread
evenly over its footprint ``[x + i*w/W_out, x + (i+1)*w/W_out)`` (and likewise
in y), with ``k = ceil(w / W_out)`` capped at :data:`MAX_SUPERSAMPLE`: a box
filter when downscaling, one sample at the pixel centre otherwise. Each point
is the blend-weighted sum of the tiles whose support holds it, so tiles join
without seams and a region decode equals the same window of a full decode at
the same scale (when the region's edges fall on output pixel edges).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import numpy as np
import torch

from .config import CodecConfig
from .model import TiledLoE
from .tiling import TileGrid

MAX_SUPERSAMPLE = 4  # 16 samples per output pixel at most: a 1024-wide thumbnail of 100 MP in seconds
BLOCK = 512  # output pixels a side: fewer, larger tile rectangles per block (0.21 vs 0.25 CPU-s a 1024x768 decode)

DecodeProgressFn = Callable[[int, int], None]
"""``progress(blocks_done, total_blocks)``."""


class TileSource(Protocol):
    """Anything that yields dequantized tile parameters (a file reader, or blobs in memory)."""

    config: CodecConfig

    def read_tile(self, index: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]: ...


@dataclass(frozen=True)
class DecodeRequest:
    """A source window ``(x, y, width, height)`` rendered at ``out_width x out_height``."""

    x: int
    y: int
    width: int
    height: int
    out_width: int
    out_height: int

    @property
    def supersample(self) -> tuple[int, int]:
        kx = min(MAX_SUPERSAMPLE, max(1, math.ceil(self.width / self.out_width - 1e-9)))
        ky = min(MAX_SUPERSAMPLE, max(1, math.ceil(self.height / self.out_height - 1e-9)))
        return kx, ky


class TileCache:
    """Least-recently-used cache of dequantized tiles read from a :class:`TileSource`."""

    def __init__(self, source: TileSource, capacity: int = 64):
        self.source = source
        self.capacity = capacity
        self._tiles: OrderedDict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = OrderedDict()

    @property
    def config(self) -> CodecConfig:
        return self.source.config

    def get(self, index: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if index in self._tiles:
            self._tiles.move_to_end(index)
            return self._tiles[index]
        params = self.source.read_tile(index)
        self._tiles[index] = params
        if len(self._tiles) > self.capacity:
            self._tiles.popitem(last=False)
        return params

    def model(self, indices: list[int], device: torch.device) -> TiledLoE:
        """A :class:`TiledLoE` holding tiles ``indices`` (local tile ``k`` = ``indices[k]``)."""
        return TiledLoE.from_tiles(self.config.model, [self.get(i) for i in indices]).to(device).eval()


def cache_capacity(grid: TileGrid) -> int:
    """Tiles to keep: a row of output blocks at scale 1 touches up to ``ceil(BLOCK / size) + 2`` rows of tiles."""
    return max(64, (math.ceil(BLOCK / grid.size) + 2) * grid.cols + 3)


def _axis_positions(start: int, length: int, out_length: int, first: int, count: int, k: int) -> torch.Tensor:
    """Source positions of ``k`` samples for output pixels ``first .. first+count``: ``[count * k]``."""
    step = length / out_length
    idx = torch.arange(first, first + count, dtype=torch.float64).unsqueeze(1)
    sub = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    return (start + (idx + sub) * step).reshape(-1)


def support(weight: torch.Tensor) -> slice:
    """The span of a blend weight ``[L]`` where it is non-zero (a ramp's support is one interval)."""
    inside = torch.nonzero(weight > 0).squeeze(1)
    if inside.numel() == 0:
        return slice(0, 0)
    lo, hi = int(inside[0]), int(inside[-1]) + 1
    if hi - lo != inside.numel():
        raise AssertionError("a blend weight's support is not one interval")
    return slice(lo, hi)


def render_block(cache: TileCache, grid: TileGrid, req: DecodeRequest, ox: int, oy: int, bw: int, bh: int,
                 device: torch.device) -> np.ndarray:
    """Output pixels ``[oy, oy+bh) x [ox, ox+bw)`` of ``req``: uint8 ``[bh, bw, C]``."""
    kx, ky = req.supersample
    xs = _axis_positions(req.x, req.width, req.out_width, ox, bw, kx)  # [bw*kx]
    ys = _axis_positions(req.y, req.height, req.out_height, oy, bh, ky)  # [bh*ky]
    tiles = grid.tiles_touching(float(xs[0]), float(ys[0]), float(xs[-1]) + 1e-6, float(ys[-1]) + 1e-6)
    channels = cache.config.model.out_channels
    acc = torch.zeros(ys.numel(), xs.numel(), channels, dtype=torch.float32, device=device)
    model = cache.model([t.index for t in tiles], device)
    for local, t in enumerate(tiles):
        # The blend weight is separable and the tile's samples are a grid: evaluate the tile on the
        # sub-rectangle of samples where its weight is non-zero.
        wx, wy = grid.weight_x(t, xs), grid.weight_y(t, ys)
        cols, rows = support(wx), support(wy)
        dx, dy, ex, ey = grid.domain(t)
        axes = [((xs[cols] - dx) / ex).float().to(device), ((ys[rows] - dy) / ey).float().to(device)]
        weight = (wy[rows].unsqueeze(1) * wx[cols].unsqueeze(0)).float().to(device)
        acc[rows, cols] += model.forward_grid(local, axes) * weight.unsqueeze(-1)
    # Average the k x k samples of every output pixel (box filter), then quantize to 8 bits.
    acc = acc.view(bh, ky, bw, kx, channels).mean(dim=(1, 3))
    out = torch.round((acc + 0.5).clamp(0.0, 1.0) * 255.0).to(torch.uint8)
    return out.cpu().numpy()


def iter_blocks(source: TileSource | TileCache, grid: TileGrid, req: DecodeRequest, device: str | torch.device = "cpu",
                block: int = BLOCK, progress: DecodeProgressFn | None = None
                ) -> Iterator[tuple[int, int, np.ndarray]]:
    """Render ``req`` block by block, row by row: yields ``(out_x, out_y, uint8 [bh, bw, C])``.

    Blocks are ``block`` output pixels a side, divided by the supersampling factor
    (so a block is about ``block**2`` samples and its working memory stays bounded
    for thumbnails too). ``source`` may be a :class:`TileCache` to keep tiles
    across requests.
    """
    device = torch.device(device)
    cache = source if isinstance(source, TileCache) else TileCache(source, cache_capacity(grid))
    kx, ky = req.supersample
    bx, by = max(1, block // kx), max(1, block // ky)
    starts = [(ox, oy) for oy in range(0, req.out_height, by) for ox in range(0, req.out_width, bx)]
    for n, (ox, oy) in enumerate(starts):
        bw, bh = min(bx, req.out_width - ox), min(by, req.out_height - oy)
        yield ox, oy, render_block(cache, grid, req, ox, oy, bw, bh, device)
        if progress is not None:
            progress(n + 1, len(starts))


def iter_strips(source: TileSource | TileCache, grid: TileGrid, req: DecodeRequest,
                device: str | torch.device = "cpu", block: int = BLOCK, progress: DecodeProgressFn | None = None
                ) -> Iterator[tuple[int, np.ndarray]]:
    """Render ``req`` in full-width strips (one row of :func:`iter_blocks` blocks), top to bottom:
    yields ``(out_y, uint8 [rows, out_width, C])``. Only one strip is held at a time."""
    channels = source.config.model.out_channels
    strip, strip_y = None, 0
    for ox, oy, pixels in iter_blocks(source, grid, req, device, block, progress):
        if ox == 0:
            if strip is not None:
                yield strip_y, strip
            strip_y = oy
            strip = np.empty((pixels.shape[0], req.out_width, channels), dtype=np.uint8)
        strip[:, ox:ox + pixels.shape[1]] = pixels
    if strip is not None:
        yield strip_y, strip


def render(source: TileSource | TileCache, grid: TileGrid, req: DecodeRequest, device: str | torch.device = "cpu",
           progress: DecodeProgressFn | None = None) -> np.ndarray:
    """The whole request as one uint8 ``[out_height, out_width, C]`` array (the strips of
    :func:`iter_strips`, so a streamed decode of the same request has the same pixels)."""
    out = np.empty((req.out_height, req.out_width, source.config.model.out_channels), dtype=np.uint8)
    for oy, pixels in iter_strips(source, grid, req, device, progress=progress):
        out[oy:oy + pixels.shape[0]] = pixels
    return out
