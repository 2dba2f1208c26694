#!/usr/bin/env python3
"""Peak memory and decode speed of big images, on the CPU.

For each mosaic size (megapixels) this script makes a mosaic of real photos
(``samples/make_mosaic.py``), encodes it, decodes it fully to a TIFF (and, at
the sizes given by ``--pyramid-at``, to a pyramidal BigTIFF and a Deep Zoom
pyramid), and times a 512x512 region and a 1024-wide thumbnail. Every step
runs as a child process; its peak RSS comes from ``os.wait4`` (the kernel's
``ru_maxrss`` of that child alone).

    python benchmarks/memory.py ../shared/data/train /tmp/loe_mem --sizes 25 100 400 --steps 2 \\
        --out benchmarks/results/memory_cpu.json

Encoding speed does not change memory, so the sweep encodes with very few
``--steps`` (recorded in the results); the encode still fits, quantizes, packs
and decodes the whole image once to measure its PSNR, as a real encode does.
Big files go to the work folder (not the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(cmd: list[str], log: Path | None = None) -> dict:
    """Run a child process; its wall time, exit code, peak RSS (MB) and the tail of its output."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does: spinning OpenMP threads crawl on a busy CPU
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if log is not None:
        with log.open("a") as f:
            f.write(f"$ {' '.join(cmd)}\n{output}\n")
    result = {"cmd": " ".join(cmd), "rc": proc.returncode, "wall_s": round(wall, 3),
              "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "output": output.strip()[-2000:]}
    print(f"  rc={result['rc']} {wall:8.1f} s  peak RSS {result['peak_rss_mb']:7.1f} MB  {' '.join(cmd[2:])[:110]}",
          flush=True)
    return result


def api_timings(codec: str, repeats: int) -> dict:
    """In this process (a child): region, thumbnail and full-decode throughput through the Python API."""
    import resource

    import loe_codec
    from loe_codec.decode import TileCache

    class Counting:
        def __init__(self, source):
            self.source, self.config, self.read = source, source.config, set()

        def read_tile(self, index):
            self.read.add(index)
            return self.source.read_tile(index)

    out: dict = {}
    with loe_codec.open(codec) as img:
        w, h = img.width, img.height
        counting = Counting(img._reader)
        img._tiles = TileCache(counting, img._tiles.capacity)
        x, y = (w // 2 // 512) * 512 + 37, (h // 2 // 512) * 512 + 91  # not aligned to tiles
        def timed(**kwargs):
            """(wall s, CPU s of this process) of one decode."""
            wall, cpu = time.perf_counter(), time.process_time()
            img.decode(device="cpu", **kwargs)
            return time.perf_counter() - wall, time.process_time() - cpu

        times = []
        for k in range(repeats):
            times.append(timed(region=(x, y, 512, 512)))
            if k == 0:
                out["region_tiles_read"] = len(counting.read)
                out["region_tiles_needed"] = len(img.grid.tiles_touching(x, y, x + 512, y + 512))
        out["region_512_first_s"], out["region_512_first_cpu_s"] = (round(v, 4) for v in times[0])
        best = min(times[1:] or times)
        out["region_512_best_s"], out["region_512_best_cpu_s"] = (round(v, 4) for v in best)
        counting.read.clear()
        out["thumbnail_1024_s"], out["thumbnail_1024_cpu_s"] = (round(v, 3) for v in timed(width=1024))
        out["thumbnail_tiles_read"] = len(set(counting.read))
        side = min(2048, w, h)
        wall, cpu = timed(region=(0, 0, side, side))
        out["decode_block"] = f"{side}x{side}"
        out["decode_mp_per_s"] = round(side * side / 1e6 / wall, 3)
        out["decode_mp_per_cpu_s"] = round(side * side / 1e6 / cpu, 3)
        out["tiles"] = len(img.grid)
        out["width"], out["height"] = w, h
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def environment() -> dict:
    import torch

    from loe_codec.bench.machine import code_version, cpu_name

    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu_name(),
            "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "commit": code_version(ROOT),
            "load_average_at_start": os.getloadavg()}


def markdown(data: dict) -> str:
    env = data["environment"]
    lines = [
        "# Memory and decode speed vs image size (CPU)", "",
        f"Date {env['date']}, commit {env['commit']}, {env['cpu']} ({env['cores']} cores, shared with other "
        f"developers: load average {', '.join(f'{v:.1f}' for v in env['load_average_at_start'])} at the start), "
        f"torch {env['torch']} ({env['torch_threads']} threads), python {env['python']}.", "",
        f"Command: `{data['command']}`", "",
        f"Mosaics of the photos in `{data['photos']}` (`samples/make_mosaic.py`, JPEG-compressed tiled "
        f"BigTIFF); encode `--preset {data['preset']} --steps {data['steps']}` (few steps: memory does not "
        "depend on them; the encode still decodes the whole image once to measure PSNR). Peak RSS is the "
        "child process's `ru_maxrss` (`os.wait4`). Decode times are wall seconds on a busy shared machine.", "",
        "| MP | size | mosaic RSS | encode RSS (s) | decode .tif RSS (s, MP/s) | pyramid .tif RSS (s) | .dzi RSS (s) "
        "| CLI region 512² s | CLI thumb 1024 s | API region 512² s (tiles read/needed) | API thumb 1024 s "
        "| API decode MP/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(step: dict | None, extra: str = "") -> str:
        if not step:
            return "-"
        if step["rc"] != 0:
            return f"failed (rc {step['rc']})"
        return f"{step['peak_rss_mb']:.0f} MB ({step['wall_s']:.1f} s{extra})"

    for r in data["runs"]:
        mp = r["width"] * r["height"] / 1e6 if "width" in r else r["megapixels"]
        dec = r.get("decode_tif")
        mps = f", {mp / dec['wall_s']:.2f} MP/s" if dec and dec["rc"] == 0 else ""
        api = r.get("api", {})
        lines.append(
            f"| {r['megapixels']:g} | {r.get('width', '?')}x{r.get('height', '?')} | "
            f"{r['mosaic']['peak_rss_mb']:.0f} MB | {cell(r.get('encode'))} | {cell(dec, mps)} | "
            f"{cell(r.get('decode_pyramid'))} | {cell(r.get('decode_dzi'))} | "
            f"{r['region_cli']['wall_s'] if r.get('region_cli') else '-'} | "
            f"{r['thumbnail_cli']['wall_s'] if r.get('thumbnail_cli') else '-'} | "
            f"{api.get('region_512_first_s', '-')} first, {api.get('region_512_best_s', '-')} again "
            f"(CPU {api.get('region_512_first_cpu_s', '-')} / {api.get('region_512_best_cpu_s', '-')}; "
            f"{api.get('region_tiles_read', '-')}/{api.get('region_tiles_needed', '-')}) | "
            f"{api.get('thumbnail_1024_s', '-')} (CPU {api.get('thumbnail_1024_cpu_s', '-')}) | "
            f"{api.get('decode_mp_per_s', '-')} ({api.get('decode_mp_per_cpu_s', '-')} per CPU-s) |")
    for extra in data.get("appended", []):
        e = extra["environment"]
        lines.insert(5, f"Appended: `{extra['command']}` on {e['date']}, commit {e['commit']}, load average "
                        f"{', '.join(f'{v:.1f}' for v in e['load_average_at_start'])} at its start.\n")
    lines += ["", "The decode .tif column's MP/s is the image size over the whole CLI run (start-up, tile reads, "
              "writing the TIFF). API columns: one process with the file open; `first` is the first region "
              "decode (reads its tiles), `again` the best of the repeats (tiles cached); CPU is the process's "
              "CPU seconds (2 threads), less sensitive to the other load than wall time. `API decode MP/s` is "
              "a 2048x2048 region decoded in memory. `CLI region`/`CLI thumb` are `loe decode --region` / "
              "`--width 1024` wall times including Python start-up (about 2-5 s of importing torch here).", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", nargs="?", type=Path, help="folder of photos for the mosaics")
    parser.add_argument("workdir", nargs="?", type=Path, help="folder for the big files (e.g. /tmp/loe_mem)")
    parser.add_argument("--sizes", type=float, nargs="+", default=[25, 100], help="mosaic sizes in megapixels")
    parser.add_argument("--preset", default="balanced")
    parser.add_argument("--steps", type=int, default=2, help="fitting steps of the sweep's encodes")
    parser.add_argument("--pyramid-at", type=float, nargs="*", default=[100],
                        help="sizes at which to also write a pyramidal TIFF and a Deep Zoom pyramid")
    parser.add_argument("--repeats", type=int, default=5, help="region decodes through the API (best is kept)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/memory_cpu.json")
    parser.add_argument("--append", action="store_true",
                        help="add the runs to those already in --out (another size, same table)")
    parser.add_argument("--api-child", metavar="LOE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.api_child:
        print(json.dumps(api_timings(args.api_child, args.repeats)))
        return 0
    if args.photos is None or args.workdir is None:
        parser.error("give the photos folder and a work folder")
    args.workdir.mkdir(parents=True, exist_ok=True)
    log = args.workdir / "memory_log.txt"
    py = sys.executable
    data = {"command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), "photos": str(args.photos),
            "preset": args.preset, "steps": args.steps, "environment": environment(), "runs": []}
    if args.append and args.out.exists():
        previous = json.loads(args.out.read_text())
        data["appended"] = previous.get("appended", []) + [{"command": data["command"],
                                                             "environment": data["environment"]}]
        data.update({k: previous[k] for k in ("command", "environment")})
        data["runs"] = previous["runs"]

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(markdown(data))

    for mp in args.sizes:
        print(f"{mp:g} MP", flush=True)
        tag = f"{mp:g}mp"
        tif, loe = args.workdir / f"mosaic_{tag}.tif", args.workdir / f"mosaic_{tag}.loe"
        r: dict = {"megapixels": mp}
        data["runs"].append(r)
        r["mosaic"] = run([py, "samples/make_mosaic.py", str(args.photos), str(tif), "--megapixels", str(mp)], log)
        if r["mosaic"]["rc"] != 0:
            save()
            continue
        import pyvips

        image = pyvips.Image.new_from_file(str(tif))
        r["width"], r["height"] = image.width, image.height
        del image
        r["encode"] = run([py, "-m", "cli", "encode", str(tif), "-o", str(loe), "--preset", args.preset,
                           "--steps", str(args.steps), "--device", "cpu", "--quiet", "--json"], log)
        save()
        if r["encode"]["rc"] != 0:
            continue
        out = args.workdir / f"decoded_{tag}.tif"
        r["decode_tif"] = run([py, "-m", "cli", "decode", str(loe), "-o", str(out), "--device", "cpu", "-q"], log)
        out.unlink(missing_ok=True)
        if mp in args.pyramid_at:
            out = args.workdir / f"decoded_{tag}_pyramid.tif"
            r["decode_pyramid"] = run([py, "-m", "cli", "decode", str(loe), "-o", str(out), "--pyramid",
                                       "--device", "cpu", "-q"], log)
            out.unlink(missing_ok=True)
            dzi = args.workdir / f"decoded_{tag}.dzi"
            r["decode_dzi"] = run([py, "-m", "cli", "decode", str(loe), "-o", str(dzi), "--device", "cpu", "-q"],
                                  log)
            dzi.unlink(missing_ok=True)
            subprocess.run(["rm", "-rf", str(args.workdir / f"decoded_{tag}_files")])
        x, y = r["width"] // 3, r["height"] // 3
        region = args.workdir / f"region_{tag}.png"
        r["region_cli"] = run([py, "-m", "cli", "decode", str(loe), "-o", str(region), "--region",
                               f"{x},{y},512,512", "--device", "cpu", "-q"], log)
        thumb = args.workdir / f"thumb_{tag}.jpg"
        r["thumbnail_cli"] = run([py, "-m", "cli", "decode", str(loe), "-o", str(thumb), "--width", "1024",
                                  "--device", "cpu", "-q"], log)
        api = run([py, "benchmarks/memory.py", "--api-child", str(loe), "--repeats", str(args.repeats)], log)
        try:
            r["api"] = json.loads(api["output"].splitlines()[-1])
        except (ValueError, IndexError):
            r["api"] = {"error": api["output"]}
        save()
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
