#!/usr/bin/env python3
"""CPU speed of the model: full decode MP/s, a region and a thumbnail, and the training step time.

Each measurement runs in a fresh process per source tree (``--trees``: e.g. a
checkout of the old code and this one), the trees alternating, ``--repeats``
times; the best run of each counts (the machine is shared and its load varies,
so old and new are timed side by side). Wall seconds with ``--threads`` torch
threads, and CPU seconds of the process:

    python benchmarks/cpu_speed.py --trees /tmp/old . --threads 1 2 \\
        --decode samples/kodim23_balanced.loe --fit samples/kodim23.png --out benchmarks/results/cpu_speed

Decode: ``LoeImage.decode`` of the whole image (or of ``FILE:x,y,w,h``), MD5 of the pixels (same
bytes from both trees means the same output), a 512x512 region of the open file (tiles
cached) and with ``--thumbnail`` a 1024-wide thumbnail. Fit: ``fit_tiles`` of the
``balanced`` tiles of an image for ``--steps`` steps: ms/step and the loss curve's hash.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> dict:
    wall, cpu = _clock()
    return {"wall_s": wall - start[0], "cpu_s": cpu - start[1]}


def measure_decode(path: str, region: list[int] | None, thumbnail: bool) -> dict:
    """One process: a full decode (after a warm-up), a 512x512 region, optionally a thumbnail."""
    import loe_codec

    with loe_codec.open(path) as img:
        img.decode(region=(0, 0, 64, 64), device="cpu")
        start = _clock()
        pixels = img.decode(region=tuple(region) if region else None, device="cpu")
        out = {"full": _since(start), "pixels": pixels.shape[0] * pixels.shape[1],
               "md5": hashlib.md5(pixels.tobytes()).hexdigest()}
        x, y = max(0, img.width // 2 - 256), max(0, img.height // 2 - 256)
        box = (x, y, min(512, img.width - x), min(512, img.height - y))
        img.decode(region=box, device="cpu")  # its tiles now cached
        start = _clock()
        img.decode(region=box, device="cpu")
        out["region_512"] = _since(start)
        if thumbnail:
            start = _clock()
            img.decode(width=1024, device="cpu")
            out["thumbnail_1024"] = _since(start)
    return out


def measure_fit(image: str, steps: int) -> dict:
    """One process: ``steps`` fit steps of the ``balanced`` preset on all tiles of ``image``."""
    import dataclasses

    from loe_codec.config import preset
    from loe_codec.encode import tile_targets
    from loe_codec.fit import fit_tiles
    from loe_codec.imageio import ImageSource
    from loe_codec.tiling import TileGrid

    cfg = preset("balanced").with_overrides(steps=steps)
    source = ImageSource(image)
    targets = tile_targets(source, TileGrid(source.width, source.height, cfg.tile.size, cfg.tile.margin), cfg)
    fit_tiles(cfg.model, dataclasses.replace(cfg.fit, steps=10), targets)  # warm-up
    losses: list[float] = []
    start = _clock()
    fit_tiles(cfg.model, cfg.fit, targets, progress=lambda step, total, loss: losses.append(loss))
    out = _since(start)
    return {**out, "steps": steps, "tiles": len(targets), "samples_per_tile": cfg.fit.samples_per_tile,
            "ms_per_step_wall": 1e3 * out["wall_s"] / steps, "ms_per_step_cpu": 1e3 * out["cpu_s"] / steps,
            "loss_first": losses[0], "loss_last": losses[-1],
            "loss_curve_md5": hashlib.md5(json.dumps(losses).encode()).hexdigest()}


def run_worker(tree: str, threads: int, task: list[str]) -> dict:
    """Run one measurement in a fresh process on ``tree`` with ``threads`` torch threads."""
    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(threads), *task]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def best_of(runs: list[dict], key) -> dict:
    return min(runs, key=key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", nargs="+", default=[str(ROOT)], help="source trees to compare (PYTHONPATH)")
    parser.add_argument("--threads", nargs="+", type=int, default=[2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--decode", nargs="*", default=[],
                        help=".loe files to decode, each whole or FILE:x,y,w,h for a region of it")
    parser.add_argument("--thumbnail", action="store_true", help="also time a 1024-wide thumbnail")
    parser.add_argument("--fit", help="image whose balanced tiles to fit")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", help="write OUT.json and OUT.md")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("task", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        import torch

        torch.set_num_threads(args.worker)
        kind, *rest = args.task
        result = (measure_decode(rest[0], json.loads(rest[1]), rest[2] == "1") if kind == "decode"
                  else measure_fit(rest[0], int(rest[1])))
        print(json.dumps(result))
        return
    tasks = []
    for spec in args.decode:
        path, _, region = spec.partition(":")
        box = [int(v) for v in region.split(",")] if region else None
        tasks.append(("decode", [path, json.dumps(box), "1" if args.thumbnail else "0"]))
    if args.fit:
        tasks.append(("fit", [args.fit, str(args.steps)]))
    rows = []
    for kind, task in tasks:
        for threads in args.threads:
            runs: dict[str, list[dict]] = {tree: [] for tree in args.trees}
            for _ in range(args.repeats):
                for tree in args.trees:
                    load = _load()
                    runs[tree].append({**run_worker(tree, threads, [kind, *task]), "load_before": load})
            for tree, results in runs.items():
                key = (lambda r: r["full"]["wall_s"]) if kind == "decode" else (lambda r: r["wall_s"])
                row = {"kind": kind, "input": task[0], "task": task, "tree": tree, "threads": threads,
                       "best": best_of(results, key), "runs": results}
                rows.append(row)
                print(summary_line(row), flush=True)
    if args.out:
        record = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
                  "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                              "processor": platform.processor()},
                  "results": rows}
        Path(args.out + ".json").write_text(json.dumps(record, indent=2) + "\n")
        Path(args.out + ".md").write_text(markdown(record))


def summary_line(row: dict) -> str:
    b, name = row["best"], Path(row["input"]).name
    region = json.loads(row["task"][1]) if row["kind"] == "decode" else None
    what = f"{name} region {','.join(map(str, region))}" if region else name
    head = f"{row['kind']} {what} tree={row['tree']} threads={row['threads']}:"
    if row["kind"] == "fit":
        return (f"{head} {b['ms_per_step_wall']:.2f} ms/step wall, {b['ms_per_step_cpu']:.2f} CPU-ms/step "
                f"({b['tiles']} tiles x {b['samples_per_tile']}), loss {b['loss_last']:.6f} "
                f"curve {b['loss_curve_md5'][:8]}, load {b['load_before']:.1f}")
    mp = b["pixels"] / 1e6
    extra = f", 1024 thumbnail {b['thumbnail_1024']['wall_s']:.2f} s" if "thumbnail_1024" in b else ""
    return (f"{head} {mp / b['full']['wall_s']:.2f} MP/s wall ({b['full']['wall_s']:.3f} s, "
            f"{mp / b['full']['cpu_s']:.2f} MP per CPU-s), region 512 {b['region_512']['wall_s']:.3f} s{extra}, "
            f"md5 {b['md5'][:8]}, load {b['load_before']:.1f}")


def markdown(record: dict) -> str:
    lines = [f"# CPU speed ({record['date']})", "", f"`{record['command']}`", "",
             f"{record['machine']['platform']}, {record['machine']['cpu_count']} CPUs. Best of the repeats; "
             "load = the 1-minute load average before that run (2 cores).", ""]
    lines += [f"- {summary_line(row)}" for row in record["results"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
