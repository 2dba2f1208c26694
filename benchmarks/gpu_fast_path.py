"""GPU fast path: correctness against the CPU path, host-sync check, throughput. One command::

    python benchmarks/gpu_fast_path.py --out $OUT            # on a CUDA machine, ~1-2 minutes
    python benchmarks/gpu_fast_path.py --cpu-smoke --out /tmp/smoke   # tiny sizes on the CPU

Needs torch and numpy only: the package is imported without its ``__init__`` and with
pyvips and av barred (images are synthetic, in memory). Every section runs in its
own try/except and the JSON (``OUT/gpu_fast_path.json``) is rewritten after each,
so one failure or a timeout keeps the rest.

Sections:

1. ``kernel``: :func:`~loe_codec.model.grouped_mm.grouped_matmul` through
   ``torch._grouped_mm`` on the device vs its float32 emulation on the CPU
   (forward, both gradients; several calls; empty groups).
2. ``dispatch``: the ``balanced`` model forward + backward on the device with each
   bank dispatch (``packed``, ``dense``, ``grouped``) and precision vs the CPU path.
3. ``syncs``: training steps (:class:`~loe_codec.fit.FitLoop`) under
   ``torch.cuda.set_sync_debug_mode("error")``; the old ``packed`` path is the
   positive control (it must fail). On the CPU: :class:`~loe_codec.hostreads.HostReads`.
4. ``fit``: a short fit of a synthetic image on the CPU and on the device with each
   dispatch / precision; PSNR of the float networks (decoded through ``render``).
5. ``throughput``: training samples/s (sampling + forward + backward + Adam) of
   ``balanced`` vs tiles per batch for each dispatch / precision, a plain MLP of
   the same width and depth in both precisions, and a 4 x 64 MLP (the issue's
   calibration shape).
6. ``decode``: full-decode megapixels/s.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import math
import platform
import subprocess
import sys
import time
import traceback
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _import_without_io() -> None:
    """Make ``import loe_codec.x`` skip the package ``__init__`` (it imports pyvips via the API) and bar
    pyvips and av, so that a module needing them fails here rather than on the GPU machine."""
    for name in ("pyvips", "av"):
        sys.modules.setdefault(name, None)  # ``import pyvips`` now raises ImportError
    if "loe_codec" not in sys.modules:
        package = types.ModuleType("loe_codec")
        package.__path__ = [str(ROOT / "loe_codec")]
        sys.modules["loe_codec"] = package


_import_without_io()

from loe_codec.config import CodecConfig, FitConfig, ModelConfig, preset  # noqa: E402
from loe_codec.decode import DecodeRequest, render  # noqa: E402
from loe_codec.fit import FitLoop, TileTarget, _PixelPool, fit_tiles  # noqa: E402
from loe_codec.hostreads import HostReads  # noqa: E402
from loe_codec.metrics import psnr  # noqa: E402
from loe_codec.model import TiledLoE  # noqa: E402
from loe_codec.model.grouped_mm import MAX_GROUPS, emulated_grouped_mm, fast_kernel_available, grouped_matmul  # noqa: E402
from loe_codec.model.tile_major import resolve_dispatch  # noqa: E402
from loe_codec.reference import tile_seed  # noqa: E402
from loe_codec.tiling import TileGrid  # noqa: E402

VARIANTS = [("packed", "fp32"), ("dense", "fp32"), ("grouped", "fp32"), ("dense", "bf16"), ("grouped", "bf16")]
"""(dispatch, precision); ``grouped`` multiplies in bfloat16 in both (the fast kernel's only dtype)."""
EXACT = {("packed", "fp32"), ("dense", "fp32")}  # float32 end to end: CPU tolerances


@dataclasses.dataclass
class Sizes:
    kernel_tiles: int
    kernel_rows: int
    dispatch_tiles: int
    dispatch_rows: int
    sync_tiles: int
    fit_image: tuple[int, int]
    fit_tile: int
    fit_steps: int
    throughput_tiles: tuple[int, ...]
    throughput_steps: float  # seconds to time each variant for
    decode: tuple[int, int]


GPU = Sizes(600, 64, 300, 256, 64, (192, 128), 64, 300, (64, 256, 1024), 1.0, (1536, 1024))
SMOKE = Sizes(12, 16, 6, 32, 3, (64, 48), 32, 20, (2, 4), 0.05, (96, 64))


def log(*parts) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """``|a - b| / |b|`` (Frobenius) on the CPU in float32."""
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def random_groups(tiles: int, rows: int, banks: int, seed: int, quantum: int = 1) -> torch.Tensor:
    """``ends`` ``[T*banks]`` of a tile-major batch: group sizes random multiples of ``quantum``, the last
    bank of every tile empty."""
    g = torch.Generator().manual_seed(seed)
    units = torch.randint(0, banks - 1, (tiles, rows // quantum), generator=g)
    sizes = torch.stack([torch.bincount(u, minlength=banks) for u in units]) * quantum  # [T, banks]
    return sizes.reshape(-1).cumsum(0)


# --- 1. kernel -------------------------------------------------------------------------------------

def kernel_case(device: torch.device, sz: Sizes, quantum: int) -> dict:
    """The device's grouped matmul vs the CPU emulation in float32, group sizes multiples of ``quantum``."""
    banks = 4
    ends = random_groups(sz.kernel_tiles, sz.kernel_rows, banks, seed=quantum, quantum=quantum)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(sz.kernel_tiles * sz.kernel_rows, 22, generator=g)
    w = torch.randn(sz.kernel_tiles * banks, 22, 22, generator=g) * 0.2
    cot = torch.randn(x.shape[0], 22, generator=g)
    out = {}
    for where, kernel, dtype in (("cpu_emulated", emulated_grouped_mm, torch.float32), ("device", None, None)):
        dev = torch.device("cpu") if where == "cpu_emulated" else device
        xd, wd = x.to(dev).requires_grad_(), w.to(dev).requires_grad_()
        y = grouped_matmul(xd, wd, ends.to(dev), banks, kernel, dtype)
        (y.float() * cot.to(dev)).sum().backward()
        out[where] = (y, xd.grad, wd.grad)
    ref, got = out["cpu_emulated"], out["device"]
    errors = {name: rel(a, b) for name, a, b in zip(("y", "grad_x", "grad_w"), got, ref)}
    empty = float(got[2].view(sz.kernel_tiles, banks, 22, 22)[:, -1].abs().max())
    return {"group_sizes_multiple_of": quantum, "dtype": str(got[0].dtype), "rel_error": errors,
            "empty_group_grad_max": empty, "ok": max(errors.values()) < 2e-2 and empty == 0.0}


def check_kernel(device: torch.device, sz: Sizes) -> dict:
    rows = []
    for quantum in (1, 16):
        rows.append(kernel_case(device, sz, quantum))
        log("kernel", rows[-1])
    return {"tiles": sz.kernel_tiles, "rows_per_tile": sz.kernel_rows, "banks": 4,
            "calls": math.ceil(sz.kernel_tiles / (MAX_GROUPS // 4)), "rows": rows,
            "ok": all(r["ok"] for r in rows)}


# --- 2. dispatch -----------------------------------------------------------------------------------

def forward_backward(model: TiledLoE, coords: torch.Tensor, target: torch.Tensor, dispatch: str, precision: str):
    tiles = model.num_tiles
    tile = torch.arange(tiles, device=coords.device).repeat_interleave(coords.shape[0] // tiles)
    model.zero_grad(set_to_none=True)
    with torch.autocast(coords.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        y = model(tile, coords, tile_major=True, dispatch=dispatch)
    loss = ((y.float() - target) ** 2).view(tiles, -1).mean(1).sum()
    loss.backward()
    return y.detach().float().cpu(), [p.grad.detach().cpu() for p in model.parameters()]


def check_dispatch(device: torch.device, sz: Sizes) -> dict:
    cfg = preset("balanced").model
    g = torch.Generator().manual_seed(2)
    coords = torch.rand(sz.dispatch_tiles * sz.dispatch_rows, 2, generator=g)
    target = torch.rand(coords.shape[0], 3, generator=g) - 0.5
    base = TiledLoE.initialised(cfg, list(range(sz.dispatch_tiles)))
    y_ref, g_ref = forward_backward(base, coords, target, "packed", "fp32")
    rows = []
    for dispatch, precision in VARIANTS:
        model = TiledLoE.initialised(cfg, list(range(sz.dispatch_tiles))).to(device)
        y, grads = forward_backward(model, coords.to(device), target.to(device), dispatch, precision)
        y_err = float((y - y_ref).abs().max())
        g_err = max(rel(a, b) for a, b in zip(grads, g_ref))
        exact = (dispatch, precision) in EXACT
        ok = (y_err < 1e-4 and g_err < 1e-3) if exact else (y_err < 0.1 and g_err < 0.05)
        rows.append({"dispatch": dispatch, "precision": precision, "max_abs_output_diff": y_err,
                     "max_rel_grad_diff": g_err, "tolerance": "fp32" if exact else "bf16", "ok": ok})
        log("dispatch", rows[-1])
    return {"tiles": sz.dispatch_tiles, "rows_per_tile": sz.dispatch_rows, "reference": "cpu packed fp32",
            "rows": rows, "ok": all(r["ok"] for r in rows)}


# --- 3. syncs --------------------------------------------------------------------------------------

def synthetic_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth waves plus a little texture: something a short fit gets to 25-35 dB."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([128 + 100 * np.sin(xx / 7 + yy / 11), 128 + 90 * np.cos(yy / 5 - xx / 13),
                    128 + 60 * np.sin((xx + yy) / 9)], -1)
    img += np.random.default_rng(seed).normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def random_targets(tiles: int, side: int = 64, seed: int = 0) -> list[TileTarget]:
    """``tiles`` targets of ``side`` x ``side`` random pixels (throughput does not care what they show)."""
    rng = np.random.default_rng(seed)
    return [TileTarget(torch.from_numpy(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)), 0, 0, 0.0, 0.0,
                       float(side), float(side), tile_seed(0, k)) for k in range(tiles)]


def fit_loop(cfg: ModelConfig, tiles: int, device: torch.device, dispatch: str, precision: str) -> FitLoop:
    targets = random_targets(tiles)
    model = TiledLoE.initialised(cfg, [t.seed for t in targets]).to(device)
    fit = FitConfig(steps=1000, samples_per_tile=1024, learning_rate=1e-3)
    return FitLoop(model, fit, _PixelPool(targets, device), 0, precision, dispatch)


@contextlib.contextmanager
def sync_errors(device: torch.device):
    """Raise at any host-device sync (CUDA); on the CPU record host reads and raise after the block."""
    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode(0)
    else:
        with HostReads() as reads:
            yield
        if reads.ops:
            raise RuntimeError(f"host reads: {sorted(set(reads.ops))}")


def check_syncs(device: torch.device, sz: Sizes) -> dict:
    cfg = preset("balanced").model
    rows = []
    for dispatch, precision, qat in [v + (False,) for v in VARIANTS] + [("auto", "fp32", True)]:
        loop = fit_loop(cfg, sz.sync_tiles, device, dispatch, precision)
        if qat:  # quantization-aware fine-tuning: weights rounded in the forward pass
            loop.model.quantize_in_loop(torch.full((sz.sync_tiles, cfg.layers), 0.01))
        for step in range(2):  # optimizer state, allocator pools, kernels chosen
            loop.step(step)
        sync(device)
        error = None
        try:
            with sync_errors(device):
                for step in range(2, 7):
                    loop.step(step)
        except RuntimeError as exc:  # where the sync happened: the last frames of the traceback
            frames = traceback.format_tb(exc.__traceback__)[-4:]
            error = str(exc).splitlines()[0][:300] + " | " + " ".join(f.strip() for f in frames)[-1200:]
        sync(device)
        # The packed path reads group sizes (the detector must see it); auto is sync-free on CUDA only.
        expected = resolve_dispatch(dispatch, device) != "packed"
        rows.append({"dispatch": dispatch, "precision": precision, "qat": qat, "sync_free": error is None,
                     "error": error, "ok": (error is None) == expected})
        log("syncs", rows[-1])
    return {"tiles": sz.sync_tiles, "steps_checked": 5,
            "method": "torch.cuda.set_sync_debug_mode('error')" if device.type == "cuda" else "HostReads",
            "rows": rows, "ok": all(r["ok"] for r in rows)}


# --- 4. fit ----------------------------------------------------------------------------------------

class FloatSource:
    """The float networks of a fitted :class:`TiledLoE` as a decode source (no quantization)."""

    def __init__(self, config: CodecConfig, model: TiledLoE):
        self.config, self.model = config, model

    def read_tile(self, index: int):
        return ([w[index].detach() for w in self.model.weights], [b[index].detach() for b in self.model.biases])


def fit_image(img: np.ndarray, cfg: CodecConfig, device: torch.device, dispatch: str = "auto",
              precision: str = "fp32") -> dict:
    h, w, _ = img.shape
    grid = TileGrid(w, h, cfg.tile.size, cfg.tile.margin)
    targets = []
    for t in grid.tiles():
        wx, wy, ww, wh = grid.window(t)
        dx, dy, ex, ey = grid.domain(t)
        targets.append(TileTarget(torch.from_numpy(img[wy:wy + wh, wx:wx + ww].copy()), wx, wy, dx, dy, ex, ey,
                                  tile_seed(cfg.fit.seed, t.index)))
    sync(device)
    start = time.perf_counter()
    model = fit_tiles(cfg.model, cfg.fit, targets, device, precision=precision, dispatch=dispatch)
    sync(device)
    seconds = time.perf_counter() - start
    decoded = render(FloatSource(cfg, model), grid, DecodeRequest(0, 0, w, h, w, h), device)
    return {"dispatch": dispatch, "resolved": resolve_dispatch(dispatch, device), "precision": precision,
            "device": device.type, "psnr": psnr(decoded, img), "fit_s": seconds}


def check_fit(device: torch.device, sz: Sizes) -> dict:
    h, w = sz.fit_image[1], sz.fit_image[0]
    img = synthetic_image(h, w)
    cfg = preset("balanced").with_overrides(steps=sz.fit_steps, tile=sz.fit_tile)
    cpu = fit_image(img, cfg, torch.device("cpu"))
    log("fit", cpu)
    rows = []
    for dispatch, precision in [("auto", "fp32")] + VARIANTS:
        rows.append(fit_image(img, cfg, device, dispatch, precision))
        rows[-1]["psnr_minus_cpu"] = rows[-1]["psnr"] - cpu["psnr"]
        rows[-1]["ok"] = abs(rows[-1]["psnr_minus_cpu"]) < 1.0
        log("fit", rows[-1])
    return {"image": f"synthetic {w}x{h}", "tiles": len(TileGrid(w, h, cfg.tile.size, cfg.tile.margin)),
            "steps": sz.fit_steps, "cpu": cpu, "rows": rows,
            "note": "CPU and CUDA draw different random samples: PSNRs agree within noise, not bit for bit",
            "ok": all(r["ok"] for r in rows)}


# --- 5. throughput ---------------------------------------------------------------------------------

def samples_per_second(loop: FitLoop, device: torch.device, seconds: float) -> tuple[float, int]:
    """Training samples/s of ``loop`` timed over about ``seconds`` (after 3 warm-up steps)."""
    for step in range(3):
        loop.step(step)
    sync(device)
    start = time.perf_counter()
    for step in range(3, 6):
        loop.step(step)
    sync(device)
    per_step = (time.perf_counter() - start) / 3
    steps = int(min(200, max(3, seconds / max(per_step, 1e-6))))
    start = time.perf_counter()
    for step in range(6, 6 + steps):
        loop.step(step)
    sync(device)
    batch = loop.model.num_tiles * loop.fit_cfg.samples_per_tile
    return batch * steps / (time.perf_counter() - start), steps


def check_throughput(device: torch.device, sz: Sizes, budget_s: float) -> dict:
    cfg = preset("balanced").model
    mlp = dataclasses.replace(cfg, banks=tuple(1 for _ in cfg.banks))
    calibration = ModelConfig(width=64, banks=(1, 1, 1, 1))
    variants = [("loe", cfg, d, p) for d, p in VARIANTS] + [("mlp", mlp, "auto", "fp32"), ("mlp", mlp, "auto", "bf16")]
    rows = []
    start = time.perf_counter()
    jobs = [(tiles, v) for tiles in sz.throughput_tiles for v in variants]
    jobs.append((sz.throughput_tiles[-1], ("mlp_4x64", calibration, "auto", "fp32")))
    jobs.append((sz.throughput_tiles[-1], ("mlp_4x64", calibration, "auto", "bf16")))
    for tiles, (model_name, model_cfg, dispatch, precision) in jobs:
        row = {"tiles": tiles, "samples_per_tile": 1024, "model": model_name, "dispatch": dispatch,
               "precision": precision}
        if time.perf_counter() - start > budget_s:
            row["skipped"] = "time budget"
        else:
            try:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                loop = fit_loop(model_cfg, tiles, device, dispatch, precision)
                row["samples_per_s"], row["steps_timed"] = samples_per_second(loop, device, sz.throughput_steps)
                if device.type == "cuda":
                    row["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
                del loop
            except Exception as exc:  # one variant failing (e.g. out of memory) keeps the others
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        rows.append(row)
        log("throughput", row)
    return {"rows": rows, "note": "one training step = sampling + forward + backward + fused Adam"}


# --- 6. decode -------------------------------------------------------------------------------------

def check_decode(device: torch.device, sz: Sizes) -> dict:
    cfg = preset("balanced")
    width, height = sz.decode
    grid = TileGrid(width, height, cfg.tile.size, cfg.tile.margin)
    source = FloatSource(cfg, TiledLoE.initialised(cfg.model, list(range(len(grid)))))
    render(source, grid, DecodeRequest(0, 0, 64, 64, 64, 64), device)  # warm-up
    sync(device)
    start = time.perf_counter()
    render(source, grid, DecodeRequest(0, 0, width, height, width, height), device)
    sync(device)
    seconds = time.perf_counter() - start
    return {"width": width, "height": height, "seconds": seconds, "mpx_per_s": width * height / seconds / 1e6}


# --- driver ----------------------------------------------------------------------------------------

def environment(device: torch.device) -> dict:
    env = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "command": " ".join(sys.argv),
           "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
           "has_grouped_mm": hasattr(torch, "_grouped_mm"), "fast_grouped_kernel": fast_kernel_available(device),
           "auto_dispatch": resolve_dispatch("auto", device), "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        env.update(device=torch.cuda.get_device_name(device), capability=list(torch.cuda.get_device_capability(device)),
                   cuda=torch.version.cuda, tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
    else:
        env["device"] = "cpu (smoke run: sizes are tiny, numbers mean nothing)"
    with contextlib.suppress(Exception):
        env["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                       timeout=10).stdout.strip() or None
    return env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for gpu_fast_path.json")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU: checks the script runs")
    ap.add_argument("--sections", default="kernel,dispatch,syncs,fit,throughput,decode")
    ap.add_argument("--throughput-budget", type=float, default=120.0, help="seconds before skipping variants")
    args = ap.parse_args()
    if args.cpu_smoke:
        device, sz = torch.device("cpu"), SMOKE
    elif torch.cuda.is_available():
        device, sz = torch.device("cuda"), GPU
    else:
        print("error: no CUDA GPU (use --cpu-smoke to run the tiny CPU version)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "gpu_fast_path.json"
    report: dict = {"run": environment(device)}
    log("run", json.dumps(report["run"]))
    sections = {
        "kernel": lambda: check_kernel(device, sz),
        "dispatch": lambda: check_dispatch(device, sz),
        "syncs": lambda: check_syncs(device, sz),
        "fit": lambda: check_fit(device, sz),
        "throughput": lambda: check_throughput(device, sz, args.throughput_budget),
        "decode": lambda: check_decode(device, sz),
    }
    for name in args.sections.split(","):
        log("section", name)
        start = time.perf_counter()
        try:
            report[name] = sections[name]()
        except Exception as exc:
            report[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
            log("section", name, "FAILED", report[name]["error"])
        report[name]["section_s"] = time.perf_counter() - start
        log("section", name, "done:", json.dumps({k: v for k, v in report[name].items() if k != "rows"},
                                                 default=float)[:1500])
        path.write_text(json.dumps(report, indent=1, default=float))
    checks = {name: report[name].get("ok") for name in ("kernel", "dispatch", "syncs", "fit") if name in report}
    report["ok"] = all(v is True for v in checks.values())
    path.write_text(json.dumps(report, indent=1, default=float))
    log("checks", checks, "->", "ok" if report["ok"] else "NOT OK", "| wrote", path)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
