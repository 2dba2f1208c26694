"""GPU check: the CUDA path against the CPU path, then GPU throughput.

Run on a machine with a CUDA GPU::

    python benchmarks/gpu_check.py --out results/gpu_check.json

1. Correctness: the same tile networks evaluated on CPU and GPU (outputs and
   gradients); a short fit of one small image on both devices (PSNR close).
2. Throughput: training samples/s (forward + backward + Adam) of the
   ``balanced`` model vs tiles per batch, a plain MLP of the same width and
   depth beside it, and full-decode megapixels/s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loe_codec.config import ModelConfig, preset  # noqa: E402
from loe_codec.decode import DecodeRequest, render  # noqa: E402
from loe_codec.encode import BlobSource, pack_fitted  # noqa: E402
from loe_codec.fit import TileTarget, fit_tiles  # noqa: E402
from loe_codec.reference import tile_seed  # noqa: E402
from loe_codec.metrics import psnr  # noqa: E402
from loe_codec.model import TiledLoE  # noqa: E402
from loe_codec.tiling import TileGrid  # noqa: E402


def sync() -> None:
    torch.cuda.synchronize()


def random_batch(num_tiles: int, per_tile: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tile = torch.arange(num_tiles).repeat_interleave(per_tile)
    coords = torch.rand(num_tiles * per_tile, 2, generator=g)
    target = torch.rand(num_tiles * per_tile, 3, generator=g) - 0.5
    return tile.to(device), coords.to(device), target.to(device)


def check_forward_backward(cfg: ModelConfig) -> dict:
    """Same weights, same samples (shuffled, mixed tiles) on CPU and GPU."""
    model = TiledLoE.initialised(cfg, list(range(8)))
    tile, coords, target = random_batch(8, 4096, "cpu")
    perm = torch.randperm(tile.numel(), generator=torch.Generator().manual_seed(1))
    tile, coords, target = tile[perm], coords[perm], target[perm]
    out = {}
    for dev in ("cpu", "cuda"):
        m = TiledLoE.initialised(cfg, list(range(8))).to(dev)
        m.load_state_dict(model.state_dict())
        y = m(tile.to(dev), coords.to(dev))
        loss = torch.mean((y - target.to(dev)) ** 2)
        loss.backward()
        out[dev] = (y.detach().cpu(), [p.grad.detach().cpu() for p in m.parameters()])
    y_diff = (out["cpu"][0] - out["cuda"][0]).abs().max().item()
    g_rel = max(((a - b).norm() / (a.norm() + 1e-12)).item() for a, b in zip(out["cpu"][1], out["cuda"][1]))
    return {"max_abs_output_diff": y_diff, "max_rel_grad_diff": g_rel, "ok": y_diff < 1e-3 and g_rel < 1e-3}


def synthetic_image(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([128 + 100 * np.sin(xx / 7 + yy / 11), 128 + 90 * np.cos(yy / 5),
                    128 + 60 * np.sin((xx + yy) / 9)], -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def fit_image(img: np.ndarray, cfg, device: str) -> tuple[float, float]:
    """Fit, quantize, decode on ``device``; return (PSNR, fit seconds)."""
    h, w, _ = img.shape
    grid = TileGrid(w, h, cfg.tile.size, cfg.tile.margin)
    targets = []
    for t in grid.tiles():
        wx, wy, ww, wh = grid.window(t)
        dx, dy, ex, ey = grid.domain(t)
        targets.append(TileTarget(torch.from_numpy(img[wy:wy + wh, wx:wx + ww].copy()), wx, wy, dx, dy, ex, ey,
                                  tile_seed(cfg.fit.seed, t.index)))
    if device == "cuda":
        sync()
    t0 = time.perf_counter()
    model = fit_tiles(cfg.model, cfg.fit, targets, device=device)
    if device == "cuda":
        sync()
    seconds = time.perf_counter() - t0
    blobs = [pack_fitted(model, k, cfg) for k in range(len(targets))]
    dec = render(BlobSource(cfg, blobs), grid, DecodeRequest(0, 0, w, h, w, h), device)
    return psnr(dec, img), seconds


def train_throughput(cfg: ModelConfig, num_tiles: int, per_tile: int, steps: int = 30) -> float:
    model = TiledLoE.initialised(cfg, list(range(num_tiles))).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tile, coords, target = random_batch(num_tiles, per_tile, "cuda")

    def step() -> None:
        loss = torch.mean((model(tile, coords, tile_major=True) - target) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return num_tiles * per_tile * steps / (time.perf_counter() - t0)


def decode_throughput(cfg, width: int, height: int) -> float:
    grid = TileGrid(width, height, cfg.tile.size, cfg.tile.margin)
    model = TiledLoE.initialised(cfg.model, list(range(len(grid))))
    blobs = [pack_fitted(model, k, cfg) for k in range(len(grid))]
    src = BlobSource(cfg, blobs)
    req = DecodeRequest(0, 0, width, height, width, height)
    render(src, grid, DecodeRequest(0, 0, 256, 256, 256, 256), "cuda")
    sync()
    t0 = time.perf_counter()
    render(src, grid, req, "cuda")
    sync()
    return width * height / (time.perf_counter() - t0) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--preset", default="balanced")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("error: no CUDA GPU")
    cfg = preset(args.preset)
    mlp = ModelConfig(**{**cfg.to_dict()["model"], "banks": tuple(1 for _ in cfg.model.banks)})
    report: dict = {"run": {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv), "device": torch.cuda.get_device_name(),
        "torch": torch.__version__, "platform": platform.platform(), "preset": args.preset,
    }}
    report["forward_backward_cpu_vs_gpu"] = check_forward_backward(cfg.model)
    print(json.dumps(report, indent=1), flush=True)
    small = synthetic_image(96, 128)
    small_cfg = cfg.with_overrides(steps=300, tile=64)
    cpu_psnr, cpu_s = fit_image(small, small_cfg, "cpu")
    gpu_psnr, gpu_s = fit_image(small, small_cfg, "cuda")
    report["fit_cpu_vs_gpu"] = {"image": "synthetic 128x96", "steps": 300, "psnr_cpu": cpu_psnr,
                                "psnr_gpu": gpu_psnr, "fit_s_cpu": cpu_s, "fit_s_gpu": gpu_s,
                                "ok": abs(cpu_psnr - gpu_psnr) < 1.0}
    print(json.dumps(report["fit_cpu_vs_gpu"]), flush=True)
    rows = []
    per_tile = cfg.fit.samples_per_tile
    for tiles in (6, 64, 144, 512):
        rows.append({"tiles": tiles, "samples_per_tile": per_tile,
                     "loe_samples_per_s": train_throughput(cfg.model, tiles, per_tile),
                     "mlp_samples_per_s": train_throughput(mlp, tiles, per_tile)})
        print(json.dumps(rows[-1]), flush=True)
    report["train_throughput"] = rows
    report["decode_mpx_per_s_1536x1024"] = decode_throughput(cfg, 1536, 1024)
    print("decode MP/s", report["decode_mpx_per_s_1536x1024"], flush=True)
    report["ok"] = report["forward_backward_cpu_vs_gpu"]["ok"] and report["fit_cpu_vs_gpu"]["ok"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=float))
    print("ok" if report["ok"] else "MISMATCH", math.nan if not rows else rows[-1]["loe_samples_per_s"])


if __name__ == "__main__":
    main()
