"""Fit budget: float PSNR and CPU seconds of the balanced fit at other (steps, samples per tile, learning rate).

    python benchmarks/fit_budget.py DATA_DIR kodim23 16000:1024:0.01 16000:512:0.01 8000:2048:0.01

One thread; PSNR of the float networks over their tile windows (8-bit rounding), no quantization.
"""
import sys, time, dataclasses, json
import numpy as np, torch
from loe_codec.config import preset
from loe_codec.imageio import ImageSource
from loe_codec.tiling import TileGrid
from loe_codec.encode import tile_targets
from loe_codec.fit import fit_tiles
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
    se = n = 0
    with torch.no_grad():
        for k, t in enumerate(targets):
            h, w, _ = t.pixels.shape
            yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            x = (xx.reshape(-1) + t.window_x + 0.5 - t.domain_x) / t.extent_x
            y = (yy.reshape(-1) + t.window_y + 0.5 - t.domain_y) / t.extent_y
            out = model(torch.full((h * w,), k), torch.stack([x, y], 1))
            pred = ((out + 0.5).clamp(0, 1) * 255).round()
            se += ((pred - t.pixels.reshape(-1, 3).float()) ** 2).sum().item(); n += h * w * 3
    print(json.dumps({"image": name, "steps": steps, "samples_per_tile": spt, "lr": lr, "float_psnr": 10 * np.log10(255**2 / (se / n)), "cpu_s": cpu, "wall_s": time.time() - w0}), flush=True)
