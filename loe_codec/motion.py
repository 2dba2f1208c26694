"""Global camera motion: one translation per frame, so that the networks see the scene, not the pan.

A coordinate network pays for every pixel that moves through its block: a slow pan turns a still,
sharp texture into a function of ``(x, y, t)`` that is sharp along time too. Fed the *scene*
coordinate of each pixel instead (``q + path[f]`` for pixel ``q`` of frame ``f``), the network sees
the panned texture hold still. On Big Buck Bunny's top-left 640x360 block at 0.05 bpp the float fit
gained 1.66 dB so, the whole first 60 frames at 0.03 bpp 1.67 dB (benchmarks/README.md,
"Motion-compensated coordinates").

:func:`camera_path` estimates the path from the frames (phase correlation, then a robust sub-pixel
refinement, between consecutive frames); :class:`CameraPath` holds it and gives each block its
per-frame shift. A block's shift is the path minus its mean over the block's frames, so that a
long pan does not carry a block's coordinates far from its domain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch

MOTIONS = ("none", "global")  # what a file's header may say its blocks follow
MOTION_CHOICES = ("none", "global", "auto")  # what an encode may ask for (VideoConfig.motion)
PAN_PIXELS = 8.0  # "auto" follows the path where a block's frames shift this far from their mean, or farther
MAX_SIDE = 1024  # frames are box-downscaled to at most this many pixels a side for the estimate
REFINE_STEPS = 8  # robust Gauss-Newton steps after the phase correlation
ROBUST_SCALE = 2.0  # luma levels: residuals beyond this count as outliers (moving objects), weighted down
BORDER = 0.05  # fraction of each side left out of the refinement (pixels that enter or leave the frame)


@dataclass(frozen=True)
class CameraPath:
    """Per-frame scene offsets: pixel ``q`` of frame ``f`` shows the scene point ``q + offsets[f]``.

    ``offsets``: float32 ``[frames, 2]`` (x, y) in pixels; frame ``f`` sits at time position ``f + 0.5``.
    ``widens``: every block's domain grows to hold its pixels at their shifts (:meth:`block_domain`);
    False for video format 6, whose blocks kept the tile's domain.
    """

    offsets: torch.Tensor
    widens: bool = True

    def __post_init__(self) -> None:
        if self.offsets.dim() != 2 or self.offsets.shape[1] != 2 or self.offsets.shape[0] < 1:
            raise ValueError(f"a camera path is [frames, 2], got {tuple(self.offsets.shape)}")
        if not bool(torch.isfinite(self.offsets).all()):
            raise ValueError("a camera path must be finite")

    @property
    def frames(self) -> int:
        return self.offsets.shape[0]

    def at(self, times: torch.Tensor) -> torch.Tensor:
        """Offsets ``[n, 2]`` (float64) at time positions ``times`` ``[n]``, linear between frames, held
        past the ends."""
        u = (times.double() - 0.5).clamp(0, self.frames - 1)
        lo = u.floor().long().clamp(max=self.frames - 1)
        hi = (lo + 1).clamp(max=self.frames - 1)
        w = (u - lo).unsqueeze(1)
        path = self.offsets.double()
        return path[lo] * (1 - w) + path[hi] * w

    def reference(self, f0: int, f1: int) -> torch.Tensor:
        """A block's reference offset ``[2]`` (float64): the mean over its fitted frames ``[f0, f1)``."""
        return self.offsets[f0:f1].double().mean(dim=0)

    def shifts(self, f0: int, f1: int, times: torch.Tensor) -> torch.Tensor:
        """Pixel shifts ``[n, 2]`` (float64) of the block fitted on frames ``[f0, f1)`` at ``times``."""
        return self.at(times) - self.reference(f0, f1)

    def largest_shift(self, windows: Iterable[tuple[int, int]]) -> float:
        """The farthest (pixels, along either axis) any frame of the blocks fitted on ``windows`` (frame
        ranges ``[f0, f1)``) shifts from the block's reference: how far the camera pans within a block."""
        largest = 0.0
        for f0, f1 in windows:
            s = self.shifts(f0, f1, torch.arange(f0, f1, dtype=torch.float64) + 0.5)
            largest = max(largest, float(s.abs().max()))
        return largest

    def block_domain(self, domain: tuple[float, float, float, float], window: tuple[int, int, int, int],
                     f0: int, f1: int) -> tuple[float, float, float, float]:
        """The spatial domain ``(x, y, extent_x, extent_y)`` of the block fitted on frames ``[f0, f1)`` whose
        tile has the domain ``domain`` and the fit window ``window`` ``(x, y, w, h)``: grown where the
        window's pixels, shifted over those frames, leave it.

        A coordinate past the domain's edge would alias: the positional encoding and the bank grid are
        periodic over the domain, so a pixel shifted out on the left would share its features with the
        right edge's (Big Buck Bunny's first 60 frames shift up to 21 pixels around their mean; inside
        the frame a tile's window fills its domain, at the frame's edges the margin leaves some room)."""
        if not self.widens:
            return domain
        s = self.shifts(f0, f1, torch.arange(f0, f1, dtype=torch.float64) + 0.5)
        low, high = s.min(dim=0).values.tolist(), s.max(dim=0).values.tolist()
        dx, dy, ex, ey = domain
        x0, y0 = min(dx, window[0] + low[0]), min(dy, window[1] + low[1])
        x1 = max(dx + ex, window[0] + window[2] + high[0])
        y1 = max(dy + ey, window[1] + window[3] + high[1])
        return (x0, y0, x1 - x0, y1 - y0)


def followed_path(motion: str, path: CameraPath, windows: Iterable[tuple[int, int]]) -> CameraPath | None:
    """The path the blocks fitted on ``windows`` (frame ranges) follow when an encode asks for ``motion``
    (:data:`MOTION_CHOICES`): ``path`` for ``"global"``, and for ``"auto"`` where some block pans
    :data:`PAN_PIXELS` or farther (:meth:`CameraPath.largest_shift`); else None."""
    if motion == "global" or (motion == "auto" and path.largest_shift(windows) >= PAN_PIXELS):
        return path
    return None


def luma(frame: np.ndarray) -> np.ndarray:
    """Float32 luma ``[H, W]`` of a uint8 frame ``[H, W, C]`` (BT.601 weights; one channel as is)."""
    f = frame.astype(np.float32)
    if f.shape[2] < 3:
        return f[:, :, 0]
    return 0.299 * f[:, :, 0] + 0.587 * f[:, :, 1] + 0.114 * f[:, :, 2]


def downscale(image: np.ndarray) -> tuple[np.ndarray, int]:
    """``image`` box-averaged by the smallest integer factor that brings it to :data:`MAX_SIDE`, and the factor."""
    k = max(1, -(-max(image.shape) // MAX_SIDE))
    if k == 1:
        return image, 1
    h, w = image.shape[0] // k * k, image.shape[1] // k * k
    return image[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3)), k


def _phase_peak(prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """Whole-pixel shift ``s`` (x, y) with ``cur(q) ~ prev(q + s)`` by phase correlation."""
    h, w = prev.shape
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    a = np.fft.rfft2((prev - prev.mean()) * window)
    b = np.fft.rfft2((cur - cur.mean()) * window)
    cross = a * np.conj(b)
    corr = np.fft.irfft2(cross / np.maximum(np.abs(cross), 1e-9), s=(h, w))
    y, x = np.unravel_index(int(np.argmax(corr)), corr.shape)
    return np.array([x - w if x > w // 2 else x, y - h if y > h // 2 else y], dtype=np.float64)


def _sample(image: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``image`` ``[H, W]`` sampled at ``q + shift`` (bilinear, edges repeated)."""
    h, w = image.shape
    ys = (torch.arange(h, dtype=torch.float64) + 0.5 + shift[1]) / h * 2 - 1
    xs = (torch.arange(w, dtype=torch.float64) + 0.5 + shift[0]) / w * 2 - 1
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1).float()[None]
    return torch.nn.functional.grid_sample(image[None, None], grid, align_corners=False,
                                           padding_mode="border")[0, 0]


def frame_shift(prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """The translation ``s`` (x, y, pixels, float64 ``[2]``) with ``cur(q) ~ prev(q + s)``: the dominant
    (background) motion between two luma frames ``[H, W]``; moving objects are outliers to it."""
    small_prev, k = downscale(prev)
    return _small_shift(small_prev, downscale(cur)[0], k)


def _small_shift(small_prev: np.ndarray, small_cur: np.ndarray, k: int) -> np.ndarray:
    """:func:`frame_shift` of two frames already downscaled by ``k`` (:func:`downscale`), in full-size pixels."""
    shift = _phase_peak(small_prev, small_cur)
    h, w = small_prev.shape
    if abs(shift[0]) > w / 4 or abs(shift[1]) > h / 4:  # a cut or no common content: no motion to follow
        return np.zeros(2)
    p = torch.from_numpy(np.ascontiguousarray(small_prev, dtype=np.float32))
    c = torch.from_numpy(np.ascontiguousarray(small_cur, dtype=np.float32))
    by, bx = max(1, int(h * BORDER)), max(1, int(w * BORDER))
    inner = (slice(by, h - by), slice(bx, w - bx))
    gy, gx = torch.gradient(p)
    s = torch.tensor(shift, dtype=torch.float64)
    for _ in range(REFINE_STEPS):  # Gauss-Newton on sum w (prev(q + s) - cur(q))^2, reweighted (L1-like)
        moved = _sample(p, s)[inner]
        jx, jy = _sample(gx, s)[inner].double(), _sample(gy, s)[inner].double()
        r = (moved - c[inner]).double()
        wgt = 1.0 / torch.clamp(r.abs(), min=ROBUST_SCALE)
        a = torch.tensor([[(wgt * jx * jx).sum(), (wgt * jx * jy).sum()],
                          [(wgt * jx * jy).sum(), (wgt * jy * jy).sum()]], dtype=torch.float64)
        g = torch.stack([(wgt * jx * r).sum(), (wgt * jy * r).sum()])
        if torch.linalg.det(a).abs() < 1e-9:
            break
        step = torch.linalg.solve(a, g)
        s = s - step.clamp(-1.0, 1.0)
        if float(step.abs().max()) < 1e-3:
            break
    if abs(float(s[0])) > w / 4 or abs(float(s[1])) > h / 4:
        return np.zeros(2)
    return s.numpy() * k


def camera_path(frames: Iterable[np.ndarray], total: int | None = None,
                progress: Callable[[int, int], None] | None = None) -> CameraPath:
    """The camera path of a clip's frames (uint8 ``[H, W, C]`` each, streamed): offsets accumulate each
    frame's :func:`frame_shift` from the one before; the first frame's offset is 0. ``progress(done,
    total)`` after each frame (``total``: the frame count, for it)."""
    offsets, prev = [], None
    for frame in frames:
        if progress is not None:
            progress(len(offsets), total or 0)
        small, k = downscale(luma(frame))  # once per frame: it is the previous frame of the next pair
        if prev is None:
            offsets.append(np.zeros(2))
        else:
            offsets.append(offsets[-1] + _small_shift(prev, small, k))
        prev = small
    if not offsets:
        raise ValueError("no frames to estimate a camera path from")
    if progress is not None:
        progress(len(offsets), total or len(offsets))
    return CameraPath(torch.tensor(np.array(offsets), dtype=torch.float32))
