"""How much of a clip's frame-to-frame change a global motion (one affine warp per frame) explains.

A coordinate network stores each space-time block as a function of (x, y, t); content that moves
through a block costs it capacity, where a motion-compensated codec (x264) sends a few vectors. If
one affine warp per frame pair explained most of the change, a coordinate network could be fed
motion-compensated coordinates; this measures whether it does. For every pair of consecutive frames
(luma, 8-bit): the mean absolute difference as is, and after the best affine warp of the earlier frame
onto the later (fitted by gradient descent on the mean absolute difference, borders excluded)::

    python benchmarks/video_motion.py clip.mp4 --frames 60 --out benchmarks/results/video_motion.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BORDER = 30  # pixels left out at every edge: a warp brings in border-padded pixels there


def warp(frame: torch.Tensor, affine: torch.Tensor) -> torch.Tensor:
    """``frame`` (1, 1, H, W) warped by the identity plus ``affine`` (6,: a 2x3 matrix in normalized
    coordinates, row major), bilinear, borders repeated."""
    theta = (torch.eye(2, 3, dtype=frame.dtype) + affine.view(2, 3))[None]
    grid = F.affine_grid(theta, list(frame.shape), align_corners=False)
    return F.grid_sample(frame, grid, align_corners=False, padding_mode="border")


def mad(a: torch.Tensor, b: torch.Tensor, border: int = BORDER) -> torch.Tensor:
    """Mean absolute difference of two (1, 1, H, W) frames inside ``border``."""
    return (a - b)[..., border:-border, border:-border].abs().mean()


def global_motion(earlier: torch.Tensor, later: torch.Tensor, steps: int = 150, lr: float = 1e-3,
                  border: int = BORDER) -> tuple[torch.Tensor, float]:
    """The affine (6,) that best warps ``earlier`` onto ``later`` (both (1, 1, H, W)), and the mean
    absolute difference left: the best of the descent's steps (the identity included), as Adam may
    overshoot on a pair that barely moves."""
    affine = torch.zeros(6, dtype=earlier.dtype, requires_grad=True)
    opt = torch.optim.Adam([affine], lr=lr)
    best, best_loss = affine.detach().clone(), float("inf")
    for _ in range(steps + 1):
        opt.zero_grad()
        loss = mad(warp(earlier, affine), later, border)
        if loss.item() < best_loss:
            best, best_loss = affine.detach().clone(), loss.detach().item()
        loss.backward()
        opt.step()
    return best, best_loss


def luma_frames(path: Path, frames: int) -> torch.Tensor:
    """The first ``frames`` frames' luma as (T, 1, H, W) float32 in 0..255."""
    import av

    out = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= frames:
                break
            out.append(frame.to_ndarray(format="gray").astype(np.float32))
    return torch.from_numpy(np.stack(out))[:, None]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", type=Path)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--every", type=int, default=1, help="measure every Nth frame pair")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    frames = luma_frames(args.video, args.frames)
    started = time.time()
    pairs = []
    for t in range(1, len(frames), args.every):
        earlier, later = frames[t - 1:t], frames[t:t + 1]
        affine, left = global_motion(earlier, later)
        pairs.append({"frame": t, "mad": round(float(mad(earlier, later)), 3), "mad_after_warp": round(left, 3),
                      "affine": [round(float(v), 5) for v in affine]})
        print(json.dumps(pairs[-1]), flush=True)
    moving = [p for p in pairs if p["mad"] > 0.5]  # repeated frames (frame-rate conversion) left out
    summary = {
        "video": str(args.video.name), "frames": len(frames), "size": list(frames.shape[-2:]),
        "pairs": len(pairs), "repeated_frames": len(pairs) - len(moving),
        "mean_mad": round(float(np.mean([p["mad"] for p in moving])), 3),
        "mean_mad_after_warp": round(float(np.mean([p["mad_after_warp"] for p in moving])), 3),
        "explained": round(1 - float(np.mean([p["mad_after_warp"] / p["mad"] for p in moving])), 3),
        "seconds": round(time.time() - started, 1),
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, threads "
                   f"{torch.get_num_threads()}",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "python benchmarks/video_motion.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "pairs": pairs}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
