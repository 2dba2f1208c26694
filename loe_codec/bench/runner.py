"""Run a benchmark: every (image, codec, setting), saved as it goes, then summarized and reported.

The JSON written (``format: "loe-bench"``) holds the machine and command, the
images, each codec's exact call and settings, every measurement and the
summary. It is rewritten (atomically) after each measurement, so an interrupted run
keeps what it measured; with ``resume`` a new run skips the (image, codec,
setting) entries already in it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..errors import UsageError
from ..files import atomic_output, check_output_location
from .codecs import Codec
from .images import BenchImage
from .videos import BenchVideo
from .machine import machine_info
from .report import markdown_report, plot_rd
from .summary import BdSpec, reference_bd_comparison, reference_comparison, summarize

FORMAT = "loe-bench"
DEFAULT_POINTS = (0.25, 0.5, 1.0)
# progress(done, total, what): called before each measurement and once at the end
ProgressFn = Callable[[int, int, str], None]


def check_outputs(points: Sequence[float], *paths: str | os.PathLike | None) -> None:
    """Refuse bpp points <= 0 and output paths in missing folders before any work starts."""
    if not points or any(not p > 0 for p in points):
        raise UsageError("bpp points must be numbers > 0")
    for path in paths:
        if path is not None:
            check_output_location(path)


def cache_folder(path: str | os.PathLike) -> Path:
    """The folder that keeps a run's fits, cuts and frames for later runs (made if missing; its
    parent must exist)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    if not folder.exists():
        check_output_location(folder)  # its parent folder exists
    (folder / "cuts").mkdir(parents=True, exist_ok=True)
    return folder


def load_results(path: str | os.PathLike) -> list[dict]:
    """The measurements of an earlier run's JSON (for ``resume``)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot resume from this file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"{path}: not a loe bench result file, cannot resume from it")
    return list(data.get("results", []))


def load_reference(path: str | os.PathLike) -> dict:
    """Reference anchors (like the shared ``kodak_classical_codecs.json``) to compare a run with."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read the reference ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("codecs"), dict) or "target_bpp" not in data:
        raise UsageError(f"{path}: a reference needs 'target_bpp' and 'codecs' {{label: {{mean_psnr}}}}")
    return data


def dumps(run: Mapping) -> str:
    """The run as JSON text: indented, but one line per measurement, so large runs stay readable."""
    marker = "@@results@@"
    head = json.dumps({**run, "results": marker}, indent=1)
    rows = ",\n  ".join(json.dumps(r) for r in run.get("results", []))
    return head.replace(json.dumps(marker), "[\n  " + rows + "\n ]" if rows else "[]", 1) + "\n"


def write_json(run: Mapping, path: str | os.PathLike) -> None:
    with atomic_output(path) as tmp:
        Path(tmp).write_text(dumps(run))


def _stage_progress(progress: ProgressFn, count: int, total: int, what: str) -> Callable[[str, float, float], None]:
    """A codec's ``progress(stage, done, total)`` shown in the run's: the measurement, its stage and percent."""
    def report(stage: str, done: float, stage_total: float) -> None:
        progress(count, total, f"{what}: {stage} {100 * done / max(stage_total, 1):.0f}%")
    return report


def run_bench(images: Sequence[BenchImage | BenchVideo], codecs: Sequence[Codec], settings: Mapping[str, Sequence[str]],
              out: str | os.PathLike, *, points: Sequence[float] = DEFAULT_POINTS, command: str = "",
              resume: bool = False, bd: BdSpec = BdSpec(),
              reference: Mapping | None = None, markdown: str | os.PathLike | None = None,
              plot: str | os.PathLike | None = None, progress: ProgressFn | None = None) -> dict:
    """Measure every (image or video, codec, setting), write ``out`` (JSON) and optionally a Markdown report and a plot.

    ``settings`` maps codec names to their settings (default: the codec's own
    sweep). Returns the run (the dict written to ``out``). ``bd`` says how BD
    deltas are taken; ``reference`` (a dict like the shared
    ``kodak_classical_codecs.json``) adds a comparison with its anchors. With
    ``resume``, measurements in ``out`` that this run plans are kept, the
    others are dropped from it.
    """
    check_outputs(points, out, markdown, plot)
    settings = {c.name: tuple(settings.get(c.name, c.settings)) for c in codecs}
    plan = [(im, c, s) for im in images for c in codecs for s in settings[c.name]]
    planned = {(im.name, c.name, s) for im, c, s in plan}
    done: dict[tuple[str, str, str], dict] = {}
    if resume and Path(out).exists():
        done = {k: r for r in load_results(out) if (k := (r["image"], r["codec"], r["setting"])) in planned}
    loe_device = next((c.device for c in codecs if hasattr(c, "device")), None)
    run: dict = {
        "format": FORMAT, "version": 1, "complete": False,
        "media": "video" if any(isinstance(im, BenchVideo) for im in images) else "image",
        "machine": machine_info(command, loe_device),
        "points": list(points),
        "images": [im.name for im in images],
        "image_files": {im.name: {"path": str(im.path), "width": im.width, "height": im.height,
                                  **({"frames": im.frames, "fps": im.fps, "source": str(im.source or im.path)}
                                     if isinstance(im, BenchVideo) else {})}
                        for im in images},
        "codecs": {c.name: {"label": c.label, "describe": c.describe, "settings": list(settings[c.name])}
                   for c in codecs},
        "results": list(done.values()),
    }
    total, count = len(plan), 0
    for im in images:
        todo = [(c, s) for c in codecs for s in settings[c.name] if (im.name, c.name, s) not in done]
        count += sum(len(settings[c.name]) for c in codecs) - len(todo)  # resumed ones
        pixels = im.pixels() if todo else None
        for c, s in todo:
            what = f"{im.name} {c.name} {s}"
            if progress:
                progress(count, total, what)
                c.progress = _stage_progress(progress, count, total, what)
            try:
                run["results"].append(dataclasses.asdict(c.measure(im, s, pixels)))
            finally:
                c.progress = None
            count += 1
            write_json(run, out)  # after every measurement: a long run keeps what it measured
    if progress:
        progress(total, total, "done")
    labels = {c.name: c.label for c in codecs}
    run["summary"] = summarize(run["results"], run["images"], labels, settings, points, bd)
    run["complete"] = True
    if reference is not None:
        run["reference_comparison"] = {
            "mean_psnr": reference_comparison(run["results"], run["images"], labels, reference),
            "bd_rate_vs_jpeg": reference_bd_comparison(run["summary"], reference),
        }
    write_json(run, out)
    if markdown is not None:
        with atomic_output(markdown) as tmp:
            Path(tmp).write_text(markdown_report(run))
    if plot is not None:
        with atomic_output(plot) as tmp:
            plot_rd(run, tmp)
    return run
