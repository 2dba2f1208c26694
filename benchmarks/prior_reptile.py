"""Reptile meta-learning of a tile-network initialisation on crops of the training photos (experiment).

    python benchmarks/prior_reptile.py TRAIN_DIR OUTER INNER CROPS THREADS OUT.pt
    python benchmarks/prior_reptile.py ../shared/data/train 200 100 12 1 /tmp/theta.pt

Every outer step fits CROPS random 264x264 crops (flips/transposes; RGB images of TRAIN_DIR/*/*.png)
for INNER steps from the current initialisation (the balanced preset's fit recipe), then moves the
initialisation towards their mean (Reptile, step 1 -> 0 linearly). Evaluate with prior_eval.py.
Never run on Kodak (the test set).
"""
import glob, sys, time, random
import numpy as np, torch, pyvips
from loe_codec.config import preset
from loe_codec.fit import TileTarget, train
from loe_codec.model import TiledLoE
from loe_codec.model.network import init_tile_parameters
import dataclasses

torch.set_num_threads(int(sys.argv[5]))
cfg = preset("balanced")
M = cfg.tile.size + 2 * cfg.tile.margin
files = sorted(glob.glob(f"{sys.argv[1]}/*/*.png"))
imgs = []
for f in files:
    im = pyvips.Image.new_from_file(f)
    if im.bands != 3 or im.width < M or im.height < M:
        continue
    imgs.append(np.ndarray(buffer=im.write_to_memory(), dtype=np.uint8, shape=(im.height, im.width, 3)))
print(len(imgs), "images", flush=True)
rng = random.Random(0)

def crop():
    a = rng.choice(imgs)
    y, x = rng.randrange(a.shape[0] - M + 1), rng.randrange(a.shape[1] - M + 1)
    c = a[y:y + M, x:x + M]
    if rng.random() < 0.5: c = c[:, ::-1]
    if rng.random() < 0.5: c = c[::-1]
    if rng.random() < 0.5: c = c.transpose(1, 0, 2)
    return torch.from_numpy(np.ascontiguousarray(c))

outer, inner, B = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
theta_w, theta_b = init_tile_parameters(cfg.model, 12345)
fit = dataclasses.replace(cfg.fit, steps=inner, warmup_steps=min(50, inner // 4))
t0 = time.time()
for it in range(outer):
    eps = 1.0 * (1 - it / outer)
    targets = [TileTarget(crop(), 0, 0, 0.0, 0.0, float(M), float(M), it * 100 + k) for k in range(B)]
    model = TiledLoE.from_tiles(cfg.model, [(theta_w, theta_b)] * B)
    losses = []
    model = train(model, fit, targets, torch.device("cpu"), it, lambda s, n, l: losses.append(l))
    with torch.no_grad():
        theta_w = [tw + eps * (w.mean(0) - tw) for tw, w in zip(theta_w, model.weights)]
        theta_b = [tb + eps * (b.mean(0) - tb) for tb, b in zip(theta_b, model.biases)]
    if it % 10 == 0 or it == outer - 1:
        psnr = -10 * np.log10(losses[-1])
        print(f"it {it} eps {eps:.2f} final-loss psnr {psnr:.2f} dB  {time.time()-t0:.0f}s", flush=True)
        torch.save({"weights": theta_w, "biases": theta_b, "outer": it + 1, "inner": inner, "B": B}, sys.argv[6])
