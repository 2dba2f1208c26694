"""The ``loe`` command line: parses arguments, calls :mod:`loe_codec`, prints results.

Exit codes: 0 success, 2 bad arguments or input, 1 failure while working.
"""

from __future__ import annotations

import json
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# Before torch loads OpenMP: threads that spin while they wait make torch 10-50x slower on a busy CPU
# (measured on the shared 2-core machine: a decode at 0.02 MP/s instead of 1). Let them sleep instead,
# unless the user chose otherwise.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = typer.Typer(
    name="loe",
    help="Levels-of-Experts neural image codec: encode images into compact .loe files and decode "
         "any region at any scale.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


def _fail(message: str, code: int) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """Turn library errors into a one-line message and an exit code (no traceback)."""
    from loe_codec.errors import LoeError

    try:
        yield
    except typer.Exit:
        raise
    except LoeError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except MemoryError:
        _fail("out of memory (try a smaller --tile or region)", 1)
    except OSError as exc:
        _fail(f"{exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}", 1)
    except Exception as exc:  # an unexpected bug: still one line, with a hint to get details
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            _fail("out of GPU memory (try --device cpu or a smaller --tile or region)", 1)
        if os.environ.get("LOE_DEBUG", "") not in ("", "0"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (set LOE_DEBUG=1 for a traceback)", 1)


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


def _emit(data: dict, as_json: bool, summary: str) -> None:
    if as_json:
        typer.echo(json.dumps(_finite(data), indent=2, default=str))
    else:
        typer.echo(summary)


DeviceOpt = typer.Option("auto", "--device", help="auto (GPU when present), cpu or cuda.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")


@app.command()
def encode(
    source: Path = typer.Argument(..., help="Image to encode (PNG, JPEG, TIFF, WebP, ... anything libvips reads)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output .loe file."),
    preset: str = typer.Option("balanced", "--preset", "-p", help="fast, balanced or best."),
    tile: Optional[int] = typer.Option(None, "--tile", help="Tile size in pixels (overrides the preset)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Fitting steps per tile (overrides the preset)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (same input + seed = same file)."),
    device: str = DeviceOpt,
    no_measure: bool = typer.Option(False, "--no-measure", help="Skip decoding the result to report its PSNR."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    quiet: bool = QuietOpt,
) -> None:
    """Fit LoE networks to the image's tiles, quantize them and write a .loe file."""
    import loe_codec

    with _errors(), _progress(quiet) as bar:
        result = loe_codec.encode(source, output, preset, steps=steps, tile=tile, seed=seed, device=device,
                                  progress=_stage_callback(bar), measure_psnr=not no_measure)
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
    device: str = DeviceOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Decode a region (default: all) at any scale into an image file, streaming (never whole in memory).

    The output format follows the extension; .dzi writes a Deep Zoom pyramid (NAME.dzi and NAME_files/).
    """
    import loe_codec

    reg = _parse_region(region)
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
    m = data["model"]
    psnr = data["stats"].get("psnr")
    _emit(data, as_json, "\n".join([
        f"{data['path']}: loe format v{data['format_version']} ({data['encoder']})",
        f"  image  {data['width']}x{data['height']}, {data['channels']} channel(s), {data['bit_depth']}-bit",
        f"  tiles  {data['tiles']['count']} ({data['tiles']['cols']}x{data['tiles']['rows']}, "
        f"size {data['tiles']['size']}, margin {data['tiles']['margin']})",
        f"  model  preset {data['preset']}: width {m['width']}, banks {list(m['banks'])} per dim, "
        f"{m['arrangement']}, {m['blend']}, {m['activation']}, {m['parameters_per_tile']} parameters/tile",
        f"  quant  {data['quantization']['bits']}-bit weights, {data['quantization']['bias_dtype']} biases",
        f"  size   {data['bytes']} bytes ({data['header_bytes']} header), {data['bpp']:.4f} bpp"
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
    import loe_codec

    with _errors(), _progress(quiet) as bar:
        stage = _stage_callback(bar)
        with loe_codec.open(codec) as img:
            data = img.evaluate(reference, device,
                                progress=(lambda d, t: stage("decode", d, t)) if stage else None)
    seams = data["psnr_seams"]
    _emit(data, as_json, f"{codec}: {data['bpp']:.4f} bpp, PSNR {data['psnr']:.2f} dB"
          + (f" (tile seams {seams:.2f} dB, interiors {data['psnr_interior']:.2f} dB)" if seams is not None else ""))


def main() -> None:
    """Console-script entry point."""
    app(prog_name="loe")


if __name__ == "__main__":
    sys.exit(main())
