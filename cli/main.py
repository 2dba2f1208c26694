"""The ``loe`` command line: parses arguments, calls :mod:`loe_codec`, prints results.

Exit codes: 0 success, 2 bad arguments or input, 1 failure while working.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cli.summaries import quant_summary, size_summary, units_summary
from cli.threads import limit_threads_on_a_busy_cpu

app = typer.Typer(
    name="loe",
    help="Levels-of-Experts neural image and video codec: encode images or videos into compact .loe files "
         "and decode any region at any scale (and any frames at any frame rate).",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # paragraphs of the docstrings reflow to the terminal's width
)
err = Console(stderr=True)


def _rank() -> int:
    """This process's rank under ``torchrun`` (0 otherwise; see :mod:`loe_codec.distributed`)."""
    if not all(name in os.environ for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK")):
        return 0
    return int(os.environ["RANK"]) if os.environ["RANK"].isdigit() else 0


def _fail(message: str, code: int, exc: Optional[BaseException] = None) -> None:
    """Print one error line and exit. Under ``torchrun`` an error every rank raised (an encode's
    ranks share their errors) is printed by rank 0 alone; others name their rank."""
    rank, shared = _rank(), getattr(exc, "loe_shared", False)
    if rank == 0 or not shared:
        where = f"rank {rank}: " if rank else ""
        err.print(f"[bold red]error:[/] {where}{message}", highlight=False, soft_wrap=True)
    if shared:  # torchrun stops every rank when one exits with an error: rank 0 prints first
        from loe_codec.distributed import farewell

        farewell()
    raise typer.Exit(code)


@contextmanager
def _errors(interrupted: str = "interrupted") -> Iterator[None]:
    """Turn library errors into a one-line message and an exit code (no traceback); Ctrl-C prints
    ``interrupted`` and exits with 130."""
    from loe_codec.errors import LoeError

    try:
        yield
    except typer.Exit:
        raise
    except LoeError as exc:
        _fail(str(exc), exc.exit_code, exc)
    except KeyboardInterrupt:
        _fail(interrupted, 130)
    except MemoryError as exc:
        _fail("out of memory (try a smaller --tile or region)", 1, exc)
    except OSError as exc:
        _fail(f"{exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}", 1, exc)
    except Exception as exc:  # an unexpected bug: still one line, with a hint to get details
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            _fail("out of GPU memory (try --device cpu or a smaller --tile or region)", 1, exc)
        if os.environ.get("LOE_DEBUG", "") not in ("", "0"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (set LOE_DEBUG=1 for a traceback)", 1, exc)


@contextmanager
def _progress(quiet: bool) -> Iterator[Optional[Progress]]:
    if quiet:
        yield None
        return
    bar = Progress(TextColumn("{task.description:<9}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False)
    with bar:
        yield bar


def _stage_callback(bar: Optional[Progress]):
    """A ``progress(stage, done, total)`` callback that keeps one bar per stage."""
    if bar is None:
        return None
    tasks: dict[str, int] = {}

    def update(stage: str, done: float, total: float) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    return update


def _parse_region(text: Optional[str]) -> Optional[tuple[int, int, int, int]]:
    if text is None:
        return None
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 4:
        _fail(f"--region must be X,Y,W,H in pixels, got {text!r}", 2)
    return parts  # type: ignore[return-value]


def _finite(value):
    """JSON has no infinity (a perfect match has PSNR inf): such numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _warn(message: str) -> None:
    err.print(f"[bold yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def _emit(data: dict, as_json: bool, summary: str) -> None:
    if as_json:
        typer.echo(json.dumps(_finite(data), indent=2, default=str))
    else:
        typer.echo(summary)


DeviceOpt = typer.Option("auto", "--device", help="auto (GPU when present), cpu or cuda.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")


@app.command()
def encode(
    source: Path = typer.Argument(..., help="Image (anything libvips reads) or video (anything ffmpeg reads: "
                                            "mp4, mkv, webm, mov, y4m, ...) to encode."),
    output: Path = typer.Option(..., "--output", "-o", help="Output .loe file."),
    preset: Optional[str] = typer.Option(None, "--preset", "-p",
                                         help="Images: fast, balanced (default) or best. "
                                              "Videos: video-fast, video (default) or video-best "
                                              "(about twice video's encode time)."),
    tile: Optional[int] = typer.Option(None, "--tile", help="Tile size in pixels (overrides the preset)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Fitting steps per tile (overrides the preset)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (same input + seed = same file)."),
    bpp: Optional[float] = typer.Option(None, "--bpp", help="Target size in bits per pixel (videos: per pixel per "
                                        "frame; hit within a few %)."),
    psnr: Optional[float] = typer.Option(None, "--psnr", help="Target quality in dB (videos: mean per-frame PSNR): "
                                         "the smallest file that reaches it."),
    quality: Optional[int] = typer.Option(
        None, "--quality", "-q", min=0, max=100,
        help="0 (smallest) .. 100 (best); default: the preset's (50). Above 60, balanced and best switch to a "
             "wider network (about 2x the encode time) that reaches higher quality."),
    resume: bool = typer.Option(
        False, "--resume",
        help="Keep finished fits in OUTPUT.fits/, and a snapshot of the fit under way every 5 minutes, so a "
             "killed encode, run again with the same command, skips the finished fits and takes up the other "
             "where it stopped (the folder is removed once the file is written)."),
    chunk: Optional[int] = typer.Option(
        None, "--chunk", help="Video only: frames per block (default: the preset's; with --bpp, chosen from the rate)."),
    device: str = DeviceOpt,
    no_measure: bool = typer.Option(False, "--no-measure", help="Skip decoding the result to report its PSNR."),
    no_audio: bool = typer.Option(False, "--no-audio", help="Video only: drop the audio (by default the first "
                                  "audio stream is copied into the file untouched; --bpp does not count it)."),
    motion: Optional[str] = typer.Option(
        None, "--motion", help="Video only: 'global' estimates the camera's pan (one shift per frame, stored in the "
                               "file) and fits the blocks along it, so a panned scene holds still for the networks; "
                               "'none' does not; 'auto' follows the pan where a block's frames move 8 pixels or "
                               "more (a pan, not a shaking hand). Default: the preset's."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Fit LoE networks to the image's tiles (or the video's space-time blocks), quantize them and write a .loe file.

    The preset picks the network and how long it is fitted; --bpp, --psnr or -q pick the
    rate (at most one of them; for videos bpp counts bits per pixel per frame and PSNR is the
    mean per frame). Each image tile keeps all, 3/4, 1/2 or 1/4 of its network's hidden units,
    whichever costs least at the rate (flat tiles get small networks where bits are dear); the
    weights are quantized with steps chosen per tile and layer (more bits where they buy more
    quality), fine-tuned with the quantizer in the loop, then entropy-coded.

    Under torchrun (e.g. torchrun --nproc-per-node 8 -m cli encode ...) the processes share the
    tiles (one GPU each) and rank 0 alone writes the file and prints.
    """
    limit_threads_on_a_busy_cpu()  # before torch loads OpenMP (the commands that compute import it)
    import loe_codec
    from loe_codec.files import require_file
    from loe_codec.videoio import looks_like_video

    stopped = (f"interrupted; the same command run again goes on from {output}.fits" if resume else
               "interrupted (an encode with --resume keeps its fits and goes on from them when run again)")
    with _errors():  # before any video-or-image check, which would blame the options instead
        require_file(source)
    if looks_like_video(source):
        from cli import video

        with _errors(stopped), _progress(quiet) as bar:
            data, summary = video.encode(source, output, preset, steps, tile, seed, chunk,
                                         {"bpp": bpp, "psnr": psnr, "quality": quality}, device, not no_measure,
                                         _stage_callback(bar), _warn, resume, not no_audio, motion)
        _emit(data, as_json, summary)
        return
    for flag, given in (("--chunk", chunk is not None), ("--no-audio", no_audio), ("--motion", motion is not None)):
        if given:
            _fail(f"{flag} applies to video inputs only", 2)
    with _errors(stopped), _progress(quiet or _rank() != 0) as bar:
        result = loe_codec.encode(source, output, preset or "balanced", steps=steps, tile=tile, seed=seed,
                                  bpp=bpp, psnr=psnr, quality=quality, device=device, progress=_stage_callback(bar),
                                  measure_psnr=not no_measure, resume=resume)
    if _rank() != 0:
        return
    for note in result.notes:
        _warn(note)
    psnr = f"{result.psnr:.2f} dB" if result.psnr is not None else "not measured"
    _emit(vars(result), as_json,
          f"{result.path}: {result.bytes} bytes, {result.bpp:.4f} bpp, PSNR {psnr}, "
          f"{result.tiles} tiles, {result.seconds:.1f} s")


@app.command()
def decode(
    codec: Path = typer.Argument(..., help="The .loe file."),
    output: Path = typer.Option(..., "--output", "-o", help="Output image; the extension picks the format."),
    region: Optional[str] = typer.Option(None, "--region", help="X,Y,W,H window in source pixels."),
    scale: Optional[float] = typer.Option(None, "--scale", help="Output scale (any value > 0)."),
    width: Optional[int] = typer.Option(None, "--width", help="Output width (aspect kept unless --height too)."),
    height: Optional[int] = typer.Option(None, "--height", help="Output height (aspect kept unless --width too)."),
    pyramid: bool = typer.Option(False, "--pyramid", help="Write a tiled, pyramidal BigTIFF (.tif output only; "
                                 "JPEG tiles, quality 90). A .dzi output is a Deep Zoom pyramid anyway."),
    frames: Optional[str] = typer.Option(None, "--frames", help="Video: frames A:B (end exclusive)."),
    time_range: Optional[str] = typer.Option(None, "--time", help="Video: seconds S:E (end exclusive)."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Video: output frame rate (resamples time)."),
    video_codec: Optional[str] = typer.Option(None, "--codec", help="Video: encoder (default: H.264 for .mp4, "
                                                                     "FFV1 for .mkv, VP9 for .webm)."),
    no_audio: bool = typer.Option(False, "--no-audio", help="Video: leave out the file's audio (by default it is "
                                  "written for the frames' time span, where the container can hold its codec)."),
    device: str = DeviceOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Decode a region (default: all) at any scale into an image file, or frames of a video into a video
    file (.mp4, .mkv, .webm, .mov) or a numbered image sequence (frame_%04d.png).

    Images stream (never whole in memory); the format follows the extension; .dzi writes a Deep Zoom
    pyramid (NAME.dzi and NAME_files/).
    """
    limit_threads_on_a_busy_cpu()
    import loe_codec
    from loe_codec.video_container import probe_kind

    reg = _parse_region(region)
    kind = probe_kind(codec)  # None where unreadable: the image path below then says why
    if kind == "video":
        from cli import video

        if pyramid:
            _fail("--pyramid applies to image .loe files only", 2)
        with _errors(), _progress(quiet) as bar:
            stage = _stage_callback(bar)
            summary = video.decode(codec, output, reg, scale, width, height, frames, time_range, fps, video_codec,
                                   device, (lambda d, t: stage("decode", d, t)) if stage else None, _warn,
                                   not no_audio)
        typer.echo(summary)
        return
    if kind == "image" and (any(v is not None for v in (frames, time_range, fps, video_codec)) or no_audio):
        _fail("--frames, --time, --fps, --codec and --no-audio apply to video .loe files only", 2)
    with _errors(), _progress(quiet) as bar:
        stage = _stage_callback(bar)
        with loe_codec.open(codec) as img:
            w, h = img.decode_to_file(output, reg, scale, width, height, device,
                                      progress=(lambda d, t: stage("decode", d, t)) if stage else None,
                                      pyramid=pyramid)
    typer.echo(f"{output}: {w}x{h}")


@app.command()
def info(
    codec: Path = typer.Argument(..., help="The .loe file."),
    as_json: bool = typer.Option(False, "--json", help="Print everything as JSON."),
) -> None:
    """Dimensions, tiles, model, quantization, bytes and bpp of a .loe file."""
    import loe_codec

    with _errors():
        data = loe_codec.info(codec)
    if data.get("kind") == "video":
        from cli import video

        _emit(data, as_json, video.info_summary(data))
        return
    m = data["model"]
    psnr = data["stats"].get("psnr")
    _emit(data, as_json, "\n".join([
        f"{data['path']}: loe format v{data['format_version']} ({data['encoder']})",
        f"  image  {data['width']}x{data['height']}, {data['channels']} channel(s), {data['bit_depth']}-bit",
        f"  tiles  {data['tiles']['count']} ({data['tiles']['cols']}x{data['tiles']['rows']}, "
        f"size {data['tiles']['size']}, margin {data['tiles']['margin']})",
        f"  model  preset {data['preset']}: width {m['width']}, banks {list(m['banks'])} per dim, "
        f"{m['arrangement']}, {m['blend']}, {m['activation']}, {m['parameters_per_tile']} parameters/tile",
        f"  quant  {quant_summary(data['quantization'])}",
        *([units_summary(data["units_kept"])] if "units_kept" in data else []),
        f"{size_summary(data)}, {data['bpp']:.4f} bpp"
        + (f", PSNR at encode {psnr:.2f} dB" if psnr is not None else ""),
    ]))


@app.command("eval")
def evaluate(
    codec: Path = typer.Argument(..., help="The .loe file."),
    reference: Path = typer.Argument(..., help="The original image."),
    device: str = DeviceOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    quiet: bool = QuietOpt,
) -> None:
    """Bits per pixel and PSNR (8-bit, peak 255) of the full decode against the original."""
    limit_threads_on_a_busy_cpu()
    import loe_codec

    with _errors(), _progress(quiet) as bar:
        stage = _stage_callback(bar)
        with loe_codec.open(codec) as img:
            data = img.evaluate(reference, device,
                                progress=(lambda d, t: stage("decode", d, t)) if stage else None)
    if "frames" in data:
        from cli import video

        _emit(data, as_json, video.eval_summary(codec, data))
        return
    seams = data["psnr_seams"]
    _emit(data, as_json, f"{codec}: {data['bpp']:.4f} bpp, PSNR {data['psnr']:.2f} dB"
          + (f" (tile seams {seams:.2f} dB, interiors {data['psnr_interior']:.2f} dB)" if seams is not None else ""))


def _parse_points(text: str) -> list[float]:
    try:
        points = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        points = []
    if not points or not all(math.isfinite(p) and p > 0 for p in points):
        _fail(f"--points must be bpp values > 0 separated by commas, got {text!r}", 2)
    return sorted(set(points))


@app.command(help="Compare codecs on a set of images, or on videos, in bits and dB.\n\n"
                  "Codes every image with every codec at every setting, decodes it back and writes bytes, bpp, "
                  "PSNR (RGB, 8-bit), encode and decode seconds to the JSON; prints the mean PSNR at the --points "
                  "rates and BD-rate / BD-PSNR vs JPEG and JPEG 2000; writes a Markdown report and a PNG plot of "
                  "the mean RD curves.\n\n"
                  "Videos: bpp per pixel per frame, mean per-frame PSNR; codecs loe (video presets), mlp (its "
                  "plain-MLP baseline), frames (every frame a loe image), x264 and x265 (preset medium, yuv420p, "
                  "CRF sweep); BD-rate / BD-PSNR vs x264 and x265.")
def bench(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders of images (png, jpg, tif, webp, ...), "
                                                  "or video files (all inputs videos)."),
    output: Path = typer.Option(..., "--output", "-o", help="Results JSON (every measurement, machine, summary)."),
    codecs: Optional[str] = typer.Option(None, "--codecs", "-c",
                                         help="Codecs, comma separated, from: loe, jpeg (4:2:0), jpeg444, webp, "
                                              "jpeg2000, avif (4:4:4), avif420, jpegxl (default: loe,jpeg,webp,"
                                              "jpeg2000,avif,jpegxl); videos: loe, mlp, frames, x264, x265 "
                                              "(default: loe,x264,x265)."),
    settings: list[str] = typer.Option([], "--settings", "-s",
                                       help="CODEC=S1,S2,... replaces a codec's default sweep (repeatable): "
                                            "loe presets (fast, balanced, best; default fast) with an optional "
                                            "rate: balanced@q40 (quality 0..100) or balanced@bpp0.5; jpeg/webp/avif "
                                            "quality, jpeg2000 target PSNR (dB), jpegxl distance; loe/mlp on videos: "
                                            "video presets (video@bpp0.1, video-fast/300@q50), frames: image "
                                            "presets, x264/x265: CRF."),
    points: Optional[str] = typer.Option(None, "--points", help="bpp points of the table, comma separated "
                                         "(default 0.25,0.5,1.0; videos 0.05,0.1,0.2)."),
    frames: Optional[int] = typer.Option(None, "--frames", min=1, help="Videos: the first N frames only."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Markdown report (default: OUTPUT with .md)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="PNG plot of the mean RD curves (default: OUTPUT "
                                                             "with .png)."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Reference anchors JSON (like "
                                             "kodak_classical_codecs.json) to compare the classical codecs with."),
    bd_method: Optional[str] = typer.Option(None, "--bd-method", help="Bjontegaard fit in log(bpp): cubic "
                                            "(VCEG-M33; images' default) or pchip (videos' default)."),
    bd_average: Optional[str] = typer.Option(None, "--bd-average", help="curve: BD between the mean RD curves "
                                             "(as the reference anchors; images' default); images: BD per image "
                                             "(or video), then averaged (videos' default)."),
    resume: bool = typer.Option(False, "--resume", help="Keep the measurements already in OUTPUT, run the rest."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Folder (made if missing) that keeps loe's fits, "
                                         "with a long fit's snapshots every 5 minutes, and the cut clips and "
                                         "frames, for later runs: with --resume a stopped run goes on from "
                                         "them. Default: a temporary folder."),
    device: str = DeviceOpt,
    loe_steps: Optional[int] = typer.Option(None, "--loe-steps", help="Override loe's fitting steps (quick checks)."),
    quiet: bool = QuietOpt,
) -> None:
    """Run :func:`loe_codec.bench.run_bench` and print its table."""
    limit_threads_on_a_busy_cpu()
    from loe_codec import bench as lb
    from loe_codec.videoio import looks_like_video

    videos = [p for p in inputs if p.is_file() and looks_like_video(p)]
    if videos and len(videos) != len(inputs):
        _fail("give either images or videos to compare, not both", 2)
    if frames is not None and not videos:
        _fail("--frames applies to videos only", 2)
    pts = _parse_points(points if points is not None else ("0.05,0.1,0.2" if videos else "0.25,0.5,1.0"))
    with _errors(), tempfile.TemporaryDirectory(prefix="loe-bench-cut-") as cut:
        if cache is not None:
            cut = str(lb.cache_folder(cache) / "cuts")
        bd = lb.BdSpec(bd_method or ("pchip" if videos else "cubic"), bd_average or ("images" if videos else "curve"))
        default = lb.DEFAULT_VIDEO_CODECS if videos else lb.DEFAULT_CODECS
        names = [c.strip() for c in codecs.split(",") if c.strip()] if codecs is not None else default
        chosen = lb.make_codecs(names, device, loe_steps, video=bool(videos), cache=cache)
        sweep = lb.settings_for(chosen, lb.parse_settings(settings))
        ref = lb.load_reference(reference) if reference is not None else None
        images = lb.open_videos(videos, frames, cut) if videos else lb.find_images(inputs)
        md = markdown if markdown is not None else output.with_suffix(".md")
        png = plot if plot is not None else output.with_suffix(".png")
        lb.check_outputs(pts, output, md, png)
        with _progress(quiet) as bar:
            task = bar.add_task("bench", total=None) if bar is not None else None

            def update(done: int, total: int, what: str) -> None:
                bar.update(task, completed=done, total=total, description=f"bench {what}")

            run = lb.run_bench(images, chosen, sweep, output, points=pts, command=shlex.join(["loe", *sys.argv[1:]]),
                               resume=resume, bd=bd, reference=ref, markdown=md, plot=png,
                               progress=update if bar is not None else None)
    what = "video(s), bpp per frame, mean per-frame PSNR" if videos else "image(s)"
    Console().print(lb.rich_table(run["summary"], title=f"{len(images)} {what}: mean PSNR (dB) at each rate, "
                                                        f"BD-rate (%) and BD-PSNR (dB)"))
    for line in lb.setting_lines(run["summary"], most=3, media=run.get("media", "image")):  # codecs with few points: their means
        typer.echo(line)
    typer.echo(f"{output}: {len(run['results'])} measurements")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="loe")


if __name__ == "__main__":
    sys.exit(main())
