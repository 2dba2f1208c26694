#!/usr/bin/env python
"""Kodak rate-distortion benchmark of loe-codec.

Encodes every selected image with the LoE preset (and, with ``--baseline mlp``,
a plain MLP of at most as many parameters per tile), writes each result as a
real ``.loe`` file in a temporary folder and reports, per image and variant:
file bytes, bpp, PSNR (all channels, 8-bit, peak 255, measured by decoding the
written file; also in the seam band and the tile interiors), encode seconds,
and the seconds and megapixels/s of a full decode.

Two encode modes:

* default: every image is encoded on its own through :func:`loe_codec.encode`;
  encode seconds are the wall time of that call.
* ``--batch-images``: the tiles of all selected images are fitted together in
  one :func:`~loe_codec.fit.fit_tiles` call per variant (the fast GPU mode),
  then fine-tuned with the quantizer, packed and written per image as ``fit_and_pack`` and
  ``encode_image`` do; encode seconds are that fit's wall time divided by the
  number of images.

Files are written without the encoder's PSNR stat in the header (as
``loe encode --no-measure``) in both modes, so their sizes are comparable.

Example::

    python benchmarks/kodak.py --data ../shared/data/kodak --baseline mlp --device cuda --batch-images
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

import loe_codec
from loe_codec.api import resolve_device
from loe_codec.config import PRESETS, CodecConfig, mlp_baseline, preset
from loe_codec.container import write_codec
from loe_codec.encode import finish_batch, make_header, tile_targets, with_channels
from loe_codec.fitted import PSNR_PROBE_SAMPLES, FittedBatch
from loe_codec.errors import LoeError, UsageError
from loe_codec.fit import TileTarget, fit_tiles
from loe_codec.imageio import ImageSource
from loe_codec.rate import Probe, layer_sensitivity
from loe_codec.tiling import TileGrid

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FIELDS = ("bytes", "bpp", "psnr", "psnr_seams", "psnr_interior", "encode_s", "decode_s", "decode_mpx_s")
FractionFn = Callable[[float], None]
"""``update(fraction_done)`` of one stage of the run."""


@dataclass(frozen=True)
class Variant:
    """One codec configuration under test, under a short name (``loe`` or ``mlp``)."""

    name: str
    config: CodecConfig


# --------------------------------------------------------------------------- configuration


def select_images(data: Path, names: str | None) -> list[Path]:
    """The PNGs of ``data`` named in the comma-separated ``names`` (default: all, sorted)."""
    if not data.is_dir():
        raise UsageError(f"--data {data} is not a folder")
    available = {p.stem: p for p in sorted(data.glob("*.png"))}
    if names is None:
        if not available:
            raise UsageError(f"no .png files in {data}")
        return list(available.values())
    wanted = [Path(n.strip()).stem for n in names.split(",") if n.strip()]
    missing = [n for n in wanted if n not in available]
    if missing or not wanted:
        raise UsageError(f"not found in {data}: {', '.join(missing) or '(no names given)'}")
    return [available[n] for n in wanted]


# --------------------------------------------------------------------------- progress


class RunProgress:
    """One rich progress bar over the whole run, counted in stages of one (image, variant) each."""

    def __init__(self, bar: Progress, stages: int):
        self._bar = bar
        self._task = bar.add_task("starting", total=stages)
        self._done = 0.0

    def stage(self, label: str, weight: float = 1.0) -> FractionFn:
        """Begin the next stage (worth ``weight`` stages); returns its ``update(fraction)``."""
        base = self._done
        self._done += weight
        self._bar.update(self._task, description=label, completed=base)

        def update(fraction: float) -> None:
            self._bar.update(self._task, completed=base + weight * min(max(fraction, 0.0), 1.0))

        return update

    def finish(self) -> None:
        self._bar.update(self._task, description="done", completed=self._done)


# --------------------------------------------------------------------------- encoding


def warm_up(device: str, config: CodecConfig) -> None:
    """Run a tiny fit so CUDA start-up and kernel loading are not timed (nothing to do on the CPU)."""
    if device != "cuda":
        return
    pixels = torch.zeros(16, 16, config.model.out_channels, dtype=torch.uint8)
    target = TileTarget(pixels, 0, 0, 0.0, 0.0, 16.0, 16.0, seed=0)
    fit_tiles(config.model, dataclasses.replace(config.fit, steps=2, samples_per_tile=256), [target], device)


def encode_single(source: Path, output: Path, config: CodecConfig, device: str, progress: FractionFn) -> float:
    """Encode one image through :func:`loe_codec.encode`; returns its wall seconds."""
    started = time.perf_counter()
    loe_codec.encode(source, output, config=config, device=device, measure_psnr=False,
                     progress=lambda stage, done, total: progress(done / total if total else 1.0))
    return time.perf_counter() - started


def encode_batch(sources: list[Path], outputs: list[Path], config: CodecConfig, device: str,
                 progress: FractionFn) -> float:
    """Fit the tiles of all ``sources`` in one ``fit_tiles`` call and write one `.loe` per image.

    Returns the wall seconds of the ``fit_tiles`` call alone.
    """
    images = [ImageSource(p) for p in sources]
    channels = {image.channels for image in images}
    if len(channels) != 1:
        raise UsageError(f"--batch-images needs images of one channel count, got {sorted(channels)}")
    config = with_channels(config, channels.pop())
    grids = [TileGrid(im.width, im.height, config.tile.size, config.tile.margin) for im in images]
    targets = [t for image, grid in zip(images, grids) for t in tile_targets(image, grid, config)]
    started = time.perf_counter()
    model = fit_tiles(config.model, config.fit, targets, device,
                      progress=lambda step, steps, loss: progress(step / steps))
    fit_seconds = time.perf_counter() - started
    # Sensitivities, quantization-aware fine-tuning and packing are per tile: one batch for all images.
    tiles = [t for grid in grids for t in grid.tiles()]
    probe = Probe.of(targets, [(t.x1 - t.x0) * (t.y1 - t.y0) for t in tiles])
    batch = FittedBatch.of(tiles, model, layer_sensitivity(model, probe), probe.subset(PSNR_PROBE_SAMPLES), config)
    blobs = finish_batch(batch, targets, config, device)
    first = 0
    for image, grid, output in zip(images, grids, outputs):
        write_codec(output, make_header(image, config), blobs[first:first + len(grid)])
        first += len(grid)
    return fit_seconds


# --------------------------------------------------------------------------- measuring


def measure(codec: Path, reference: Path, device: str, encode_s: float, progress: FractionFn) -> dict:
    """The result record (:data:`FIELDS`) of one written file.

    Bytes, bpp and PSNRs come from ``evaluate``; it runs before the timed full
    decode, so that decode finds the device and the file warm.
    """
    with loe_codec.open(codec) as img:
        metrics = img.evaluate(reference, device, progress=lambda done, total: progress(done / total))
        pixels = img.width * img.height
    started = time.perf_counter()
    with loe_codec.open(codec) as img:
        img.decode(device=device)
    decode_s = time.perf_counter() - started
    timings = {"encode_s": encode_s, "decode_s": decode_s, "decode_mpx_s": pixels / 1e6 / decode_s}
    record = {**metrics, **timings}
    return {field: record[field] for field in FIELDS}


def run_separately(sources: list[Path], variants: list[Variant], device: str, folder: Path,
                   bar: RunProgress) -> dict[str, dict[str, dict]]:
    """Encode and measure every (image, variant) on its own; results[image][variant]."""
    results: dict[str, dict[str, dict]] = {}
    for source in sources:
        for v in variants:
            output = folder / f"{source.stem}.{v.name}.loe"
            encode_s = encode_single(source, output, v.config, device, bar.stage(f"{source.stem} {v.name}: encode"))
            results.setdefault(source.stem, {})[v.name] = measure(
                output, source, device, encode_s, bar.stage(f"{source.stem} {v.name}: measure"))
    return results


def run_batched(sources: list[Path], variants: list[Variant], device: str, folder: Path,
                bar: RunProgress) -> tuple[dict[str, dict[str, dict]], dict[str, float]]:
    """One batched fit per variant, then measure every file; (results[image][variant], fit seconds per variant)."""
    results: dict[str, dict[str, dict]] = {source.stem: {} for source in sources}
    fit_seconds = {}
    for v in variants:
        outputs = [folder / f"{source.stem}.{v.name}.loe" for source in sources]
        label = f"{v.name}: fit {len(sources)} image(s) together"
        fit_seconds[v.name] = encode_batch(sources, outputs, v.config, device, bar.stage(label, len(sources)))
        for source, output in zip(sources, outputs):
            results[source.stem][v.name] = measure(output, source, device, fit_seconds[v.name] / len(sources),
                                                   bar.stage(f"{source.stem} {v.name}: measure"))
    return results, fit_seconds


# --------------------------------------------------------------------------- reporting


def means(results: dict[str, dict[str, dict]], variant: str) -> dict[str, float | None]:
    """Arithmetic mean over images of every field (PSNR: mean of the per-image dB values)."""
    out = {}
    for field in FIELDS:
        values = [r[variant][field] for r in results.values() if r[variant][field] is not None]
        out[field] = statistics.fmean(values) if values else None
    return out


def fmt(value: float | None, digits: int) -> str:
    """``value`` with ``digits`` decimals, ``-`` for a missing value."""
    return "-" if value is None else f"{value:.{digits}f}"


def image_table(results: dict, averages: dict, variants: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-image table: bpp and PSNR of every variant, then the means."""
    header = ["image"] + [f"{v} {q}" for v in variants for q in ("bpp", "PSNR")]
    rows = [[name] + [fmt(r[v][q], d) for v in variants for q, d in (("bpp", 4), ("psnr", 2))]
            for name, r in results.items()]
    rows.append(["mean"] + [fmt(averages[v][q], d) for v in variants for q, d in (("bpp", 4), ("psnr", 2))])
    return header, rows


def summary_table(averages: dict, variants: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-variant means of every field."""
    columns = (("bytes", "bytes", 0), ("bpp", "bpp", 4), ("psnr", "PSNR", 2), ("psnr_seams", "seams", 2),
               ("psnr_interior", "interior", 2), ("encode_s", "enc s", 2), ("decode_s", "dec s", 3),
               ("decode_mpx_s", "dec MP/s", 2))
    header = ["variant"] + [title for _, title, _ in columns]
    rows = [[v] + [fmt(averages[v][field], d) for field, _, d in columns] for v in variants]
    return header, rows


def rich_table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    """A rich table of ``rows``, with a rule above a ``mean`` row."""
    table = Table(title=title)
    for k, name in enumerate(header):
        table.add_column(name, justify="left" if k == 0 else "right")
    for row in rows:
        if row[0] == "mean":
            table.add_section()
        table.add_row(*row)
    return table


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table, numbers right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine(device: str) -> dict:
    """The hardware and software the run used."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "loe_codec": loe_codec.__version__,
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine(),
    }


def run_block(args: argparse.Namespace, device: str, variants: list[Variant],
              fit_seconds: dict[str, float] | None) -> dict:
    """Everything needed to reproduce and interpret the run."""
    if fit_seconds is None:
        encode_note = "wall seconds of loe_codec.encode per image (fit, quantize, pack, write; no PSNR measure)"
    else:
        encode_note = ("total wall seconds of the one fit_tiles call over all images' tiles (per variant) "
                       "divided by the number of images; reading, quantizing, packing and writing not included")
    block = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]),
        "machine": machine(device),
        "mode": "batch-images" if fit_seconds is not None else "per-image",
        "encode_s": encode_note,
        "preset": args.preset,
        "config": variants[0].config.to_dict(),
        "parameters_per_tile": {v.name: v.config.model.parameter_count() for v in variants},
        "note": "model.out_channels is set to each image's channel count at encode",
    }
    if fit_seconds is not None:
        block["fit_s_total"] = fit_seconds
    if len(variants) > 1:
        block["baseline_config"] = variants[1].config.to_dict()
        block["baseline_learning_rates"] = {v.name: v.config.fit.learning_rate for v in variants[1:]}
    return block


def markdown(run: dict, tables: list[tuple[str, list[str], list[list[str]]]]) -> str:
    """The Markdown report: the run block as text, then the tables."""
    m = run["machine"]
    lines = [
        f"# Kodak benchmark: preset `{run['preset']}`, {run['mode']}", "",
        f"- date (UTC): {run['date']}",
        f"- command: `{run['command']}`",
        f"- machine: {m['platform']}, {m['cpu_count']} CPUs, Python {m['python']}, torch {m['torch']}, "
        f"loe-codec {m['loe_codec']}",
        f"- device: {m['device']} ({m['device_name']})",
        f"- encode seconds: {run['encode_s']}",
        f"- parameters per tile: {', '.join(f'{k} {n}' for k, n in run['parameters_per_tile'].items())}",
        "- PSNR: all channels, 8-bit, peak 255, of the decoded `.loe` file; means are means of per-image dB",
    ]
    if "fit_s_total" in run:
        lines.append("- total fit seconds: " + ", ".join(f"{k} {s:.2f}" for k, s in run["fit_s_total"].items()))
    for title, header, rows in tables:
        lines += ["", f"## {title}", "", markdown_table(header, rows)]
    lines += ["", "## Config", "", "```json", json.dumps(run["config"], indent=2), "```"]
    if "baseline_config" in run:
        lines += ["", "Baseline:", "", "```json", json.dumps(run["baseline_config"], indent=2), "```"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line arguments."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder of PNG images (e.g. the Kodak set)")
    p.add_argument("--images", help="comma-separated image names, e.g. kodim01,kodim05 (default: every *.png)")
    p.add_argument("--preset", default="balanced", choices=sorted(PRESETS), help="codec preset (default balanced)")
    p.add_argument("--steps", type=int, help="fitting steps per tile (overrides the preset)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default auto")
    p.add_argument("--baseline", choices=("mlp",),
                   help="also run a plain MLP with banks all 1 and at most the LoE parameters per tile")
    p.add_argument("--mlp-lr", type=float, nargs="+", metavar="LR",
                   help="with --baseline mlp: one MLP variant per learning rate (default: the preset's)")
    p.add_argument("--batch-images", action="store_true",
                   help="fit all images' tiles together in one fit_tiles call per variant (fast on a GPU)")
    p.add_argument("--out", type=Path,
                   help="JSON results (default benchmarks/results/kodak_<preset>_<device>.json); "
                        "a Markdown table is written next to it (.md)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code (0, or the library error's code)."""
    args = parse_args(argv)
    out, err = Console(width=None if sys.stdout.isatty() else 200), Console(stderr=True)
    try:
        device = resolve_device(args.device)
        sources = select_images(args.data, args.images)
        config = preset(args.preset).with_overrides(steps=args.steps)
        variants = [Variant("loe", config)]
        if args.baseline:
            rates = args.mlp_lr or [None]
            variants += [Variant("mlp" if lr is None else f"mlp_lr{lr:g}", mlp_baseline(config, lr)) for lr in rates]
        json_path = args.out or RESULTS_DIR / f"kodak_{args.preset}_{device}.json"
        json_path.parent.mkdir(parents=True, exist_ok=True)
        columns = (TextColumn("{task.description:<34}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn())
        with tempfile.TemporaryDirectory(prefix="loe-kodak-") as tmp, Progress(*columns, console=err) as bar:
            run = RunProgress(bar, 2 * len(sources) * len(variants))
            warm_up(device, config)
            if args.batch_images:
                results, fit_seconds = run_batched(sources, variants, device, Path(tmp), run)
            else:
                results, fit_seconds = run_separately(sources, variants, device, Path(tmp), run), None
            run.finish()
    except LoeError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        return exc.exit_code
    names = [v.name for v in variants]
    averages = {v: means(results, v) for v in names}
    block = run_block(args, device, variants, fit_seconds)
    tables = [("Per image (PSNR in dB)", *image_table(results, averages, names)),
              ("Means per variant (PSNR in dB, seconds)", *summary_table(averages, names))]
    for title, header, rows in tables:
        out.print(rich_table(title, header, rows))
    json_path.write_text(json.dumps({"run": block, "results": results, "means": averages}, indent=2) + "\n")
    md_path = json_path.with_suffix(".md")
    md_path.write_text(markdown(block, tables))
    err.print(f"wrote {json_path} and {md_path}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
