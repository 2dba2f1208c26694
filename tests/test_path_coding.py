"""The camera path as video format 7 stores it: on a 1/16-pixel grid, each frame's move range-coded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loe_codec.errors import FormatError
from loe_codec.motion import CameraPath
from loe_codec.path_coding import MAX_MOVE, PATH_STEP, grid_moves, on_grid, pack_path, unpack_path


def shaky_path(frames: int = 120, seed: int = 0) -> CameraPath:
    """A hand-held camera: a slow drift plus a quarter-pixel jitter a frame."""
    rng = np.random.default_rng(seed)
    moves = rng.normal(0, 0.25, (frames, 2)) + np.array([0.05, -0.03])
    moves[0] = 0
    return CameraPath(torch.tensor(np.cumsum(moves, axis=0), dtype=torch.float32))


def test_round_trip_is_the_path_on_the_grid():
    path = shaky_path()
    blob = pack_path(path)
    back = unpack_path(blob, path.frames)
    assert torch.equal(back.offsets, on_grid(path).offsets)
    assert float((back.offsets - path.offsets).abs().max()) <= PATH_STEP / 2 + 1e-6
    assert torch.equal(on_grid(back).offsets, back.offsets)  # a path on the grid stays put
    assert blob.dtype == np.uint8 and blob.size < path.frames * 8 / 4  # float32 would take 8 bytes a frame


@pytest.mark.parametrize("offsets", [np.zeros((1, 2)), np.zeros((5, 2)), np.array([[0.0, 0.0], [3.5, 0.0], [7.0, 0.0]])])
def test_still_and_one_axis_paths(offsets):
    path = CameraPath(torch.tensor(offsets, dtype=torch.float32))
    assert torch.equal(unpack_path(pack_path(path), len(offsets)).offsets, path.offsets)


def test_a_move_past_the_coders_range_is_clipped_and_caught_up():
    jump = (MAX_MOVE + 40) * PATH_STEP
    path = CameraPath(torch.tensor([[0.0, 0.0], [jump, 0.0], [jump, 0.0]], dtype=torch.float32))
    moves = grid_moves(path)
    assert moves[1, 0] == MAX_MOVE and moves[2, 0] == 40
    back = unpack_path(pack_path(path), 3)
    assert float(back.offsets[2, 0]) == pytest.approx(jump)


def test_damaged_blobs_are_refused():
    blob = pack_path(shaky_path())
    for bad in (blob[:5], blob[:-1], np.concatenate([np.zeros(8, np.uint8), blob[8:]])):
        with pytest.raises(FormatError, match="camera path"):
            unpack_path(bad, 120)
