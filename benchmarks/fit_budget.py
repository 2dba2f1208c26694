"""Fit budget: float PSNR and CPU seconds of the balanced fit at other (steps, samples per tile, learning rate).

    python benchmarks/fit_budget.py DATA_DIR kodim23 16000:1024:0.01 16000:512:0.01 8000:2048:0.01

One thread; PSNR of the float networks over their tile windows (8-bit rounding), no quantization.
"""
import sys, time, dataclasses, json
from pathlib import Path
import torch
from loe_codec.config import preset
from loe_codec.imageio import ImageSource
from loe_codec.tiling import TileGrid
from loe_codec.encode import tile_targets
from loe_codec.fit import fit_tiles

sys.path.insert(0, str(Path(__file__).parent))
from float_psnr import window_psnr  # noqa: E402
torch.set_num_threads(1)
data, name = sys.argv[1], sys.argv[2]
for steps, spt, lr in [(int(a), int(b), float(c)) for a, b, c in (x.split(":") for x in sys.argv[3:])]:
    cfg = preset("balanced")
    cfg = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, steps=steps, samples_per_tile=spt, learning_rate=lr))
    src = ImageSource(f"{data}/{name}.png")
    grid = TileGrid(src.width, src.height, cfg.tile.size, cfg.tile.margin)
    targets = tile_targets(src, grid, cfg)
    t0 = time.process_time(); w0 = time.time()
    model = fit_tiles(cfg.model, cfg.fit, targets)
    cpu = time.process_time() - t0
    print(json.dumps({"image": name, "steps": steps, "samples_per_tile": spt, "lr": lr, "float_psnr": window_psnr(model, targets), "cpu_s": cpu, "wall_s": time.time() - w0}), flush=True)
