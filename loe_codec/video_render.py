"""Rendering video blocks at any pixels and times, and measuring a decode against its source.

:class:`VideoRenderer` evaluates a :class:`~loe_codec.video_tiling.SpaceTimeGrid`'s networks over a
:class:`VideoRequest` (a region, an output size and time positions), blending the blocks where they
overlap; :class:`VideoErrors` accumulates per-frame, chunk-border and seam errors (:func:`compare`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterator

import numpy as np
import torch

from .decode import BLOCK, DecodeRequest, TileCache, _axis_positions, support
from .metrics import ErrorAccumulator, psnr_from_mse
from .motion import CameraPath
from .video_tiling import SpaceTimeGrid
from .videoio import VideoSource

MAX_SAMPLES_PER_GROUP = 1 << 18  # samples rendered in one pass (bounds the decode's memory)


@dataclass(frozen=True)
class VideoRequest:
    """A spatial request, rendered at time positions ``times`` (source frame units, frame ``f`` at ``f + 0.5``);
    ``start`` / ``stop``: the time span it shows, in seconds."""

    space: DecodeRequest
    times: tuple[float, ...]
    fps: Fraction
    start: Fraction = Fraction(0)
    stop: Fraction | None = None


class VideoRenderer:
    """Evaluates the blocks of a :class:`SpaceTimeGrid` at any output pixels and times (along the camera
    ``motion`` the blocks were fitted with, if any: :mod:`loe_codec.motion`)."""

    def __init__(self, cache: TileCache, grid: SpaceTimeGrid, motion: CameraPath | None = None):
        self.cache = cache
        self.grid = grid
        self.motion = motion

    def frame_groups(self, req: VideoRequest) -> int:
        """Output frames rendered together (bounded sample count per pass)."""
        kx, ky = req.space.supersample
        per_frame = min(BLOCK, req.space.out_width) * kx * min(BLOCK, req.space.out_height) * ky
        return max(1, MAX_SAMPLES_PER_GROUP // per_frame)

    def iter_frames(self, req: VideoRequest, device: str | torch.device = "cpu",
                    progress: Callable[[int, int], None] | None = None) -> Iterator[np.ndarray]:
        """Yield the output frames in order, uint8 ``[out_height, out_width, C]``."""
        device = torch.device(device)
        sp = req.space
        group = self.frame_groups(req)
        channels = self.cache.config.model.out_channels
        n = len(req.times)
        for start in range(0, n, group):
            times = torch.tensor(req.times[start:start + group], dtype=torch.float64)
            out = np.zeros((times.numel(), sp.out_height, sp.out_width, channels), dtype=np.uint8)
            for oy in range(0, sp.out_height, BLOCK):
                for ox in range(0, sp.out_width, BLOCK):
                    bw, bh = min(BLOCK, sp.out_width - ox), min(BLOCK, sp.out_height - oy)
                    out[:, oy:oy + bh, ox:ox + bw] = self.render(sp, times, ox, oy, bw, bh, device)
            yield from out
            if progress is not None:
                progress(min(n, start + group), n)

    def render(self, req: DecodeRequest, times: torch.Tensor, ox: int, oy: int, bw: int, bh: int,
               device: torch.device) -> np.ndarray:
        """Output pixels ``[oy, oy+bh) x [ox, ox+bw)`` of ``req`` at time positions ``times``: uint8 ``[nt, bh, bw, C]``."""
        grid = self.grid
        kx, ky = req.supersample
        xs = _axis_positions(req.x, req.width, req.out_width, ox, bw, kx)
        ys = _axis_positions(req.y, req.height, req.out_height, oy, bh, ky)
        tiles = grid.space.tiles_touching(float(xs[0]), float(ys[0]), float(xs[-1]) + 1e-6, float(ys[-1]) + 1e-6)
        chunks = grid.time.touching(float(times.min()), float(times.max()) + 1e-6)
        blocks, parts = [], []
        for chunk in chunks:
            wt = grid.time.weight(chunk, times)
            frames = support(wt)
            t0, te = grid.time.domain(chunk)
            # Without a camera path a block is one grid of samples; with one, a grid per frame, its x and y
            # axes shifted by that frame's offset.
            spans = [(frames, None)]
            fitted = grid.time.window(chunk)
            if self.motion is not None and frames.stop > frames.start:
                shifts = self.motion.shifts(*fitted, times[frames])
                spans = [(slice(f, f + 1), shifts[f - frames.start]) for f in range(frames.start, frames.stop)]
            for t in tiles:
                wx, wy = grid.space.weight_x(t, xs), grid.space.weight_y(t, ys)
                cols, rows = support(wx), support(wy)
                dx, dy, ex, ey = grid.space.domain(t) if self.motion is None else self.motion.block_domain(
                    grid.space.domain(t), grid.space.window(t), *fitted)
                local = len(blocks)
                for span, shift in spans:
                    sx, sy = (0.0, 0.0) if shift is None else (float(shift[0]), float(shift[1]))
                    axes = [(xs[cols] + sx - dx) / ex, (ys[rows] + sy - dy) / ey, (times[span] - t0) / te]
                    if any(a.numel() == 0 for a in axes):
                        continue
                    weight = wt[span].view(-1, 1, 1) * wy[rows].view(1, -1, 1) * wx[cols].view(1, 1, -1)
                    parts.append((local, (span, rows, cols), [a.float().to(device) for a in axes],
                                  weight.float().to(device)))
                if parts and parts[-1][0] == local:
                    blocks.append(grid.block(t, chunk).index)
        channels = self.cache.config.model.out_channels
        acc = torch.zeros(times.numel(), ys.numel(), xs.numel(), channels, dtype=torch.float32, device=device)
        if parts:
            model = self.cache.model(blocks, device)
            for local, spans, axes, weight in parts:
                acc[spans] += model.forward_grid(local, axes) * weight.unsqueeze(-1)
        acc = acc.view(times.numel(), bh, ky, bw, kx, channels).mean(dim=(2, 4))
        return torch.round((acc + 0.5).clamp(0.0, 1.0) * 255.0).to(torch.uint8).cpu().numpy()


class VideoErrors:
    """Per-frame squared error of a decode against its source, with flicker and seam measures.

    * per-frame PSNR (the mean is the usual video quality figure);
    * frames near an interior chunk border (within the time margin) vs the other frames;
    * the temporal-difference error ``(d[f+1]-d[f]) - (r[f+1]-r[f])`` on frame pairs that straddle a chunk
      border vs all other pairs (a jump at a border shows here as a larger error);
    * spatial tile seams vs tile interiors, over all frames (:class:`~loe_codec.metrics.ErrorAccumulator`).
    """

    def __init__(self, grid: SpaceTimeGrid):
        self.grid = grid
        self.frame_mse: list[float] = []
        self.spatial = ErrorAccumulator(grid.space)
        self.pair_sse = [0.0, 0.0]  # [interior pairs, pairs straddling a chunk border]
        self.pair_count = [0, 0]
        self._prev: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, decoded: np.ndarray, reference: np.ndarray) -> None:
        """Add the next full frame (both uint8 ``[H, W, C]``)."""
        d, r = decoded.astype(np.float64), reference.astype(np.float64)
        self.frame_mse.append(float(np.mean((d - r) ** 2)))
        self.spatial.add(0, 0, decoded, reference)
        f = len(self.frame_mse) - 1
        if self._prev is not None:
            dd = (d - self._prev[0]) - (r - self._prev[1])
            k = 1 if f in self.grid.time.edges[1:-1] else 0
            self.pair_sse[k] += float(np.sum(dd ** 2))
            self.pair_count[k] += dd.size
        self._prev = (d, r)

    def psnr(self) -> float:
        """Mean per-frame PSNR (dB)."""
        return float(np.mean([psnr_from_mse(m) for m in self.frame_mse]))

    def _mean_psnr(self, border: bool) -> float | None:
        vals = [psnr_from_mse(m) for f, m in enumerate(self.frame_mse) if self.grid.time.near_border(f) == border]
        return float(np.mean(vals)) if vals else None

    def summary(self) -> dict:
        rms = [math.sqrt(s / c) if c else None for s, c in zip(self.pair_sse, self.pair_count)]
        per_frame = [psnr_from_mse(m) for m in self.frame_mse]
        return {
            "psnr": self.psnr(),
            "psnr_min_frame": float(min(per_frame)),
            "psnr_chunk_borders": self._mean_psnr(True),
            "psnr_chunk_interiors": self._mean_psnr(False),
            "temporal_diff_rmse_chunk_borders": rms[1],
            "temporal_diff_rmse_interiors": rms[0],
            "psnr_seams": self.spatial.psnr_seams(),
            "psnr_interior": self.spatial.psnr_interior(),
            "psnr_per_frame": per_frame,
        }


def compare(renderer: VideoRenderer, grid: SpaceTimeGrid, reference: VideoSource, device: str,
            progress: Callable[[int, int], None] | None = None) -> VideoErrors:
    """Decode every frame at scale 1 and accumulate its error against ``reference`` (both streamed)."""
    s = grid.space
    req = VideoRequest(DecodeRequest(0, 0, s.width, s.height, s.width, s.height),
                       tuple(f + 0.5 for f in range(grid.time.frames)), Fraction(1))
    errors = VideoErrors(grid)
    for decoded, ref in zip(renderer.iter_frames(req, device, progress), reference.iter_frames()):
        errors.add(decoded, ref)
    return errors
