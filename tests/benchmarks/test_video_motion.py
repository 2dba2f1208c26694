"""The global-motion measure of benchmarks/video_motion.py."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from support import load_script


def _smooth_frame(size: int = 64) -> torch.Tensor:
    torch.manual_seed(0)
    coarse = torch.rand(1, 1, size // 8, size // 8) * 255
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)


def test_a_global_zoom_and_shift_is_explained_and_local_change_is_not():
    motion = load_script("benchmarks/video_motion.py")
    earlier = _smooth_frame()
    known = torch.tensor([0.03, 0.0, 0.04, 0.0, 0.03, -0.02])  # 3% zoom, a shift of ~1 pixel each way
    later = motion.warp(earlier, known)
    before = float(motion.mad(earlier, later, border=8))
    _, left = motion.global_motion(earlier, later, steps=300, lr=3e-3, border=8)
    assert left < 0.25 * before, (before, left)
    # a change no single warp explains: a patch of the frame replaced
    local = earlier.clone()
    local[..., 20:44, 20:44] = 255 - local[..., 20:44, 20:44]
    before = float(motion.mad(earlier, local, border=8))
    _, left = motion.global_motion(earlier, local, steps=300, lr=3e-3, border=8)
    assert left > 0.7 * before, (before, left)
