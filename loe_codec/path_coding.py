"""The camera path as a file stores it (video format 7): offsets on a grid of :data:`PATH_STEP` pixels,
each frame's move from the one before range-coded.

Format 6 stored the path as float32, 8 bytes a frame: on a small clip at a low rate that is a real share of
the bits (carphone, 176x144, 120 frames, at 0.03 bpp: 960 of 11 400 bytes). A frame's move is small and
repeats (a pan) or jitters around zero (a shaking hand), so a discrete Laplace per axis codes it in a few
bits. The grid's rounding (at most 1/32 pixel) is far below the estimate's own error; the encoder fits
the blocks along the rounded path (:meth:`loe_codec.video_container.VideoHeader.with_motion`), so the
decoder's path is the encoder's bit for bit.

Blob layout (``uint8``): four little-endian ``uint16`` (the x moves' ``ratio_code`` and ``magnitude``, then
the y moves'; :class:`loe_codec.entropy.LaplaceModel`), then the range coder's little-endian ``uint32``
words (x moves of every frame, then y moves). Frame 0's "move" is its offset from the origin.
"""

from __future__ import annotations

import numpy as np
import torch

from . import entropy
from .errors import FormatError
from .motion import CameraPath

PATH_STEP = 1 / 16  # pixels: the stored path's grid
MAX_MOVE = entropy.MAX_MAGNITUDE  # grid steps a frame may move along an axis (2047 px): larger moves are clipped
_PREFIX = np.dtype("<u2")


def grid_moves(path: CameraPath) -> np.ndarray:
    """Each frame's move ``int32 [frames, 2]`` in grid steps: the path rounded onto the grid, each move
    clipped to ``±MAX_MOVE`` (the rounding of later frames catches up what a clip loses)."""
    target = np.rint(path.offsets.double().numpy() / PATH_STEP).astype(np.int64)
    moves = np.zeros_like(target)
    position = np.zeros(2, dtype=np.int64)
    for f in range(len(target)):
        moves[f] = np.clip(target[f] - position, -MAX_MOVE, MAX_MOVE)
        position += moves[f]
    return moves.astype(np.int32)


def path_of_moves(moves: np.ndarray) -> CameraPath:
    """The path ``moves`` ``[frames, 2]`` (grid steps) walk: offsets ``cumsum * PATH_STEP`` (float32, exact)."""
    offsets = np.cumsum(moves.astype(np.int64), axis=0).astype(np.float64) * PATH_STEP
    return CameraPath(torch.from_numpy(offsets.astype(np.float32)))


def on_grid(path: CameraPath) -> CameraPath:
    """``path`` as the file stores it: rounded onto the grid (see :func:`grid_moves`)."""
    return path_of_moves(grid_moves(path))


def pack_path(path: CameraPath) -> np.ndarray:
    """The coded blob ``uint8 [n]`` of ``path`` (rounded onto the grid first)."""
    moves = grid_moves(path)
    columns = [np.ascontiguousarray(moves[:, axis]) for axis in range(2)]
    models = [entropy.model_for(c) for c in columns]
    prefix = np.array([v for m in models for v in (m.ratio_code, m.magnitude)], dtype=_PREFIX)
    words = entropy.encode(columns, models).astype("<u4")
    return np.concatenate([prefix.view(np.uint8), words.view(np.uint8)])


def unpack_path(blob: np.ndarray, frames: int) -> CameraPath:
    """The path of ``frames`` frames a blob from :func:`pack_path` holds; :class:`FormatError` if it is not one."""
    raw = np.ascontiguousarray(blob, dtype=np.uint8)
    head = 4 * _PREFIX.itemsize
    if raw.ndim != 1 or raw.size < head or (raw.size - head) % 4:
        raise FormatError(f"a coded camera path is {head} bytes and whole 32-bit words, got {raw.size} bytes")
    codes = raw[:head].view(_PREFIX).astype(np.int64)
    models = [entropy.LaplaceModel(int(codes[2 * a]), int(codes[2 * a + 1])) for a in range(2)]
    if any(not 0 < m.ratio_code < entropy.RATIO_ONE or m.magnitude > MAX_MOVE for m in models):
        raise FormatError("the coded camera path's models are out of range")
    try:
        columns = entropy.decode(raw[head:].view("<u4").astype(np.uint32), [(frames,), (frames,)], models)
    except Exception as exc:  # the coder's own error types: a truncated or damaged stream
        raise FormatError(f"the coded camera path cannot be decoded ({exc})") from None
    return path_of_moves(np.stack(columns, axis=1))
