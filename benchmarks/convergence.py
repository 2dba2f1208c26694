"""The fit's convergence curve: float PSNR of the tile networks against the training step.

    python benchmarks/convergence.py DATA_DIR --images kodim23 kodim05 --out benchmarks/results/convergence_cpu

For each image, one fit of the ``best`` preset (64 000 steps, its own learning-rate schedule) is
evaluated at the checkpoints (default 1k, 2k, ..., 64k steps), and one fit of ``balanced`` (16 000
steps: the same network, a schedule 4x shorter) at those up to 16k, so that "more steps" is seen
both within one schedule and as a separate, shorter run. PSNR is of the float networks over their
tile windows (8-bit rounding, ``float_psnr.window_psnr``), no quantization. One thread. CPU seconds
are the fit's own (``time.process_time``, the evaluations' time taken out).

``--steps-list 1000,2000,...`` adds fits of that many steps each on their own schedule (the end of
each is what an encode with ``--steps N`` would fit), ``--append`` adds runs to an existing OUT.json.

Writes OUT.json (every number, loss every 1% of each run, run details), OUT.md (the table) and
OUT.png (the curves); ``--report`` redraws OUT.md and OUT.png from an existing OUT.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from loe_codec.bench.machine import code_version, cpu_name
from loe_codec.config import preset
from loe_codec.encode import tile_targets
from loe_codec.fit import fit_tiles
from loe_codec.imageio import ImageSource
from loe_codec.tiling import TileGrid

sys.path.insert(0, str(Path(__file__).parent))
from float_psnr import window_psnr  # noqa: E402


def one_run(data: str, name: str, preset_name: str, checkpoints: list[int], steps: int | None = None) -> dict:
    cfg = preset(preset_name)
    if steps is not None:  # the same fit with another step count, so another schedule
        cfg = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, steps=steps))
    src = ImageSource(f"{data}/{name}.png")
    grid = TileGrid(src.width, src.height, cfg.tile.size, cfg.tile.margin)
    targets = tile_targets(src, grid, cfg)
    wanted = {s for s in checkpoints if s <= cfg.fit.steps} | {cfg.fit.steps}
    points, losses = [], []
    eval_cpu = [0.0]
    t0, w0 = time.process_time(), time.time()

    def checkpoint(step: int, model) -> None:
        if step not in wanted:
            return
        c0 = time.process_time()
        fit_cpu = c0 - t0 - eval_cpu[0]
        psnr = window_psnr(model, targets)
        eval_cpu[0] += time.process_time() - c0
        points.append({"step": step, "float_psnr": psnr, "fit_cpu_s": fit_cpu, "wall_s": time.time() - w0})
        print(json.dumps({"image": name, "preset": preset_name, **points[-1]}), flush=True)

    model = fit_tiles(cfg.model, cfg.fit, targets, checkpoint=checkpoint,
                      progress=lambda step, total, loss: losses.append((step, loss)))
    final = window_psnr(model, targets)
    assert abs(final - points[-1]["float_psnr"]) < 1e-9, (final, points[-1])  # the hook saw the returned model
    return {"image": name, "preset": preset_name if steps is None else f"{preset_name}@{steps}",
            "steps": cfg.fit.steps, "tiles": len(targets),
            "points": points, "loss": losses, "eval_cpu_s": eval_cpu[0],
            "fit": dict(vars(cfg.fit)), "model": {**vars(cfg.model), "banks": list(cfg.model.banks)}}


def report(doc: dict, out: Path) -> None:
    runs = doc["runs"]
    images = list(dict.fromkeys(r["image"] for r in runs))
    by = {(r["image"], r["preset"]): {p["step"]: p for p in r["points"]} for r in runs}
    own = {(r["image"], r["steps"]): r["points"][-1] for r in runs}  # each run's end: "steps" on its own schedule
    steps = sorted({p["step"] for r in runs for p in r["points"]})
    cell = lambda p: f" {p['float_psnr']:.2f} |" if p else " |"  # noqa: E731
    lines = ["# Fit convergence curve (float PSNR vs steps)", ""]
    for d in [doc] + doc.get("appended", []):
        lines += [f"Run of {d['date']}: commit {d['commit']}; torch {d['torch']}; machine: {d['machine']}; "
                  f"device cpu, {d['threads']} thread; load average at start {d['load_start']}, at end "
                  f"{d.get('load_end')}. Command: `{d['command']}`", ""]
    lines += [
        "Float PSNR (dB, 8-bit, all channels, over the tile windows; no quantization). *best run*: one `best` "
        "fit (64 000 steps, cosine learning-rate decay over 64k) evaluated at each step; *balanced run*: one "
        "`balanced` fit (16 000 steps, its own schedule); *own schedule*: the end of a fit of exactly that "
        "many steps (same network and recipe, the schedule spanning those steps; 16k is `balanced`, 64k is "
        "`best`). CPU s = the best run's cumulative fit CPU seconds (evaluations excluded).", "",
        "| step |" + "".join(f" {im} best run | {im} balanced run | {im} own schedule |" for im in images)
        + " CPU s, best run (" + ", ".join(images) + ") |",
        "|" + "---|" * (2 + 3 * len(images))]
    for s in steps:
        row = f"| {s} |" + "".join(cell(by.get((im, "best"), {}).get(s)) + cell(by.get((im, "balanced"), {}).get(s))
                                   + cell(own.get((im, s))) for im in images)
        lines.append(row + " " + " / ".join(f"{by[(im, 'best')][s]['fit_cpu_s']:.0f}"
                                          if s in by.get((im, "best"), {}) else "-" for im in images) + " |")
    pairs = list(zip(steps, steps[1:]))
    lines += ["", "Gain per doubling of steps (dB):", "",
              "| image, curve |" + "".join(f" {a // 1000}k->{b // 1000}k |" for a, b in pairs),
              "|---|" + "---|" * len(pairs)]
    for im in images:
        for label, pts in (("best run", by.get((im, "best"), {})),
                           ("own schedule", {s: p for (i, s), p in own.items() if i == im})):
            lines.append(f"| {im}, {label} |" + "".join(
                f" {pts[b]['float_psnr'] - pts[a]['float_psnr']:+.2f} |" if a in pts and b in pts else " |"
                for a, b in pairs))
    lines += ["", "Fit CPU seconds of each run: " + "; ".join(
        f"{r['image']} {r['preset']} {r['points'][-1]['fit_cpu_s']:.0f}" for r in runs), ""]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.6, 3.6), dpi=90)
    for i, im in enumerate(images):
        for pts, style, label in ((by.get((im, "best"), {}), "-o", "best run (64k schedule)"),
                                  (by.get((im, "balanced"), {}), "--s", "balanced run (16k schedule)"),
                                  ({s: p for (j, s), p in own.items() if j == im}, ":^", "end of own schedule")):
            if pts:
                xs = sorted(pts)
                ax.plot(xs, [pts[x]["float_psnr"] for x in xs], style, color=f"C{i}", ms=4, label=f"{im}, {label}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(steps)
    ax.set_xticklabels([f"{s // 1000}k" for s in steps])
    ax.set_xlabel("fit steps")
    ax.set_ylabel("float PSNR (dB)")
    ax.set_title("LoE fit convergence, balanced/best network (CPU)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", help="folder with NAME.png")
    ap.add_argument("--images", nargs="+", default=["kodim23", "kodim05"])
    ap.add_argument("--checkpoints", default="1000,2000,4000,8000,16000,32000,64000")
    ap.add_argument("--presets", nargs="*", default=["best", "balanced"], help="runs of these presets")
    ap.add_argument("--steps-list", default="", help="also runs of `balanced` with these step counts (own schedule)")
    ap.add_argument("--out", default="benchmarks/results/convergence_cpu", help="path without suffix")
    ap.add_argument("--append", action="store_true", help="add the runs to an existing OUT.json")
    ap.add_argument("--report", action="store_true", help="only redraw OUT.md and OUT.png from OUT.json")
    args = ap.parse_args()
    out = Path(args.out)
    if args.report:
        report(json.loads(out.with_suffix(".json").read_text()), out)
        return
    torch.set_num_threads(1)
    checkpoints = [int(s) for s in args.checkpoints.split(",")]
    info = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": code_version(),
            "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
            "machine": f"{cpu_name()}, {os.cpu_count()} cores (shared)",
            "load_start": [round(x, 2) for x in os.getloadavg()], "command": "python " + " ".join(sys.argv)}
    if args.append:
        doc = json.loads(out.with_suffix(".json").read_text())
        doc.setdefault("appended", []).append(info)
    else:
        doc = info
        doc["runs"] = []
    jobs = [(p, None) for p in args.presets] + [("balanced", int(s)) for s in args.steps_list.split(",") if s]
    for name in args.images:
        for p, steps in jobs:
            doc["runs"].append(one_run(args.data, name, p, checkpoints, steps))
            info["load_end"] = [round(x, 2) for x in os.getloadavg()]
            out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    report(doc, out)


if __name__ == "__main__":
    main()
