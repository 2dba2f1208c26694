"""Distortion and rate measures: PSNR (8-bit, peak 255), bits per pixel, seam bands."""

from __future__ import annotations

import math

import numpy as np

from .tiling import TileGrid


def bits_per_pixel(size_bytes: int, width: int, height: int) -> float:
    """Bits of a file per source pixel."""
    return size_bytes * 8.0 / (width * height)


def psnr_from_mse(mse: float, peak: float = 255.0) -> float:
    """PSNR in dB; ``inf`` for a perfect match."""
    return math.inf if mse <= 0 else 10.0 * math.log10(peak * peak / mse)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR between two uint8 arrays of the same shape, over all pixels and channels."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    return psnr_from_mse(float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def seam_mask(grid: TileGrid, x0: int, y0: int, w: int, h: int, half_width: int) -> np.ndarray:
    """``[h, w]`` bool: pixels within ``half_width`` of an interior tile edge."""
    xc = np.arange(x0, x0 + w) + 0.5
    yc = np.arange(y0, y0 + h) + 0.5
    near_x = np.zeros(w, dtype=bool)
    for e in grid.x_edges[1:-1]:
        near_x |= np.abs(xc - e) < half_width
    near_y = np.zeros(h, dtype=bool)
    for e in grid.y_edges[1:-1]:
        near_y |= np.abs(yc - e) < half_width
    return near_y[:, None] | near_x[None, :]


class ErrorAccumulator:
    """Squared error summed block by block, overall and split into seam band vs tile interiors."""

    def __init__(self, grid: TileGrid, half_width: int | None = None):
        self.grid = grid
        self.half_width = half_width if half_width is not None else max(grid.margin, 4)
        self.sse = [0.0, 0.0]  # [interior, seam band]
        self.count = [0, 0]

    def add(self, x0: int, y0: int, decoded: np.ndarray, reference: np.ndarray) -> None:
        """Add a decoded block at source position ``(x0, y0)`` (both uint8 ``[h, w, C]``)."""
        if decoded.shape != reference.shape:
            raise ValueError(f"shape mismatch {decoded.shape} vs {reference.shape}")
        h, w, c = decoded.shape
        err = ((decoded.astype(np.float64) - reference.astype(np.float64)) ** 2).sum(axis=2)
        band = seam_mask(self.grid, x0, y0, w, h, self.half_width)
        for k, m in enumerate((~band, band)):
            self.sse[k] += float(err[m].sum())
            self.count[k] += int(m.sum()) * c

    def psnr(self) -> float:
        return psnr_from_mse(sum(self.sse) / max(1, sum(self.count)))

    def psnr_seams(self) -> float | None:
        return psnr_from_mse(self.sse[1] / self.count[1]) if self.count[1] else None

    def psnr_interior(self) -> float | None:
        return psnr_from_mse(self.sse[0] / self.count[0]) if self.count[0] else None
