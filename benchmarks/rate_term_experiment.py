"""Fit with an L1 pull towards the seeded reference (a rate term in the loss), then code at q20/35/50/70 (experiment).

    python benchmarks/rate_term_experiment.py DATA_DIR kodim23 1e-3

The loss adds ``mu / pixels * sum |w - reference| / (b ln 2)`` per tile (the Laplace code length of the
residual, ``b`` its mean magnitude per tile and layer; ``mu`` in the units of the quality slope). The
fitted batch is stored in a fit cache, which the encodes at each quality then use. Compare with
``benchmarks/reference_coding.py`` (the same codes without the rate term).
"""
import json, sys, tempfile, time
import torch
import loe_codec
from loe_codec import fit as fitmod
from loe_codec.config import preset, slope_for_quality
from loe_codec.encode import tile_targets, with_channels
from loe_codec.fitted import PSNR_PROBE_SAMPLES
from loe_codec.fitcache import FitCache
from loe_codec.imageio import ImageSource
from loe_codec.tiling import TileGrid
from loe_codec.model import TiledLoE
from loe_codec.rate import Probe, layer_sensitivity
from loe_codec.reference import batch_references

torch.set_num_threads(1)
data, name, mu = sys.argv[1], sys.argv[2], float(sys.argv[3])
src_path = f"{data}/{name}.png"
cfg = with_channels(preset("balanced"), 3)
image = ImageSource(src_path)
grid = TileGrid(image.width, image.height, cfg.tile.size, cfg.tile.margin)
tiles = grid.tiles()
targets = tile_targets(image, grid, cfg, tiles)
model = TiledLoE.initialised(cfg.model, [t.seed for t in targets])
refs = batch_references(cfg.model, [t.seed for t in targets])
fc = cfg.fit
opt = torch.optim.Adam(model.parameters(), lr=fc.learning_rate, fused=True)
pool = fitmod._PixelPool(targets, torch.device("cpu"))
gen = torch.Generator().manual_seed(targets[0].seed)
t0 = time.time()
for step in range(fc.steps):
    for g in opt.param_groups:
        g["lr"] = fitmod.learning_rate(step, fc)
    tile, coords, target = pool.sample(fc.samples_per_tile, gen)
    err = (model(tile, coords, tile_major=True) - target) ** 2
    loss = err.view(len(targets), -1).mean(dim=1).sum()
    # Rate term: slope/pixels * bits, bits ~ |r| / (b ln2) with the per-(tile, layer) Laplace scale b.
    for w, r in zip(model.weights, refs):
        res = (w - r).abs()
        b = res.detach().flatten(1).mean(1).clamp_min(1e-3).view(-1, 1, 1, 1)
        loss = loss + mu / 65536 * (res / (b * 0.6931)).sum()
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    if step % 2000 == 0:
        print(step, float(loss.detach()), time.time() - t0, flush=True)
model = model.eval()
probe = Probe.of(targets, [(t.x1 - t.x0) * (t.y1 - t.y0) for t in tiles])
cache = FitCache(f"{tempfile.gettempdir()}/loe-rate-term-{name}-{mu:g}")
key = cache.key(src_path, cfg, [t.index for t in tiles], "cpu")
cache.store(key, model, layer_sensitivity(model, probe), probe.subset(PSNR_PROBE_SAMPLES))
rows = []
for q in (20, 35, 50, 70):
    c = cfg.with_overrides(slope=slope_for_quality(q))
    r = loe_codec.encode(src_path, f"{tempfile.gettempdir()}/loe-rate-term-{name}_{q}.loe", config=c, device="cpu", cache_dir=f"{tempfile.gettempdir()}/loe-rate-term-{name}-{mu:g}")
    rows.append({"image": name, "mu": mu, "q": q, "bytes": r.bytes, "bpp": r.bpp, "psnr": r.psnr})
    print(json.dumps(rows[-1]), flush=True)
