"""Fit images from the seeded initialisation ("none") or a meta-learned one (prior_reptile.py output);
float PSNR over the tile windows and the fit's loss curve.

    python benchmarks/prior_eval.py none|THETA.pt STEPS DATA_DIR kodim23,kodim05
"""
import sys, time, dataclasses
from pathlib import Path
import numpy as np, torch
from loe_codec.config import preset
from loe_codec.imageio import ImageSource
from loe_codec.tiling import TileGrid
from loe_codec.encode import tile_targets
from loe_codec import fit as fitmod
from loe_codec.model import TiledLoE

sys.path.insert(0, str(Path(__file__).parent))
from float_psnr import window_psnr  # noqa: E402

torch.set_num_threads(1)
theta_path, steps, data, images = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].split(",")
cfg = preset("balanced")
cfg = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, steps=steps))
theta = torch.load(theta_path) if theta_path != "none" else None

res = {}
for name in images:
    src = ImageSource(f"{data}/{name}.png")
    grid = TileGrid(src.width, src.height, cfg.tile.size, cfg.tile.margin)
    targets = tile_targets(src, grid, cfg)
    if theta is None:
        model = TiledLoE.initialised(cfg.model, [t.seed for t in targets])
    else:
        model = TiledLoE.from_tiles(cfg.model, [(theta["weights"], theta["biases"])] * len(targets))
    t0 = time.time()
    curve = []
    model = fitmod.train(model, cfg.fit, targets, torch.device("cpu"), targets[0].seed,
                         lambda s, n, l: curve.append((s, -10 * np.log10(l))) if s % max(1, n // 8) == 0 else None)
    p = window_psnr(model, targets)
    res[name] = {"psnr": p, "s": time.time() - t0, "curve": [(s, round(c, 2)) for s, c in curve]}
    print(name, theta_path, steps, f"{p:.2f} dB", f"{time.time()-t0:.0f}s", curve, flush=True)
