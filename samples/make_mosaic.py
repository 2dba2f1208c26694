#!/usr/bin/env python3
"""Build a large, realistic test image: a mosaic of real photos, written as a tiled BigTIFF.

    python samples/make_mosaic.py ../shared/data/train /tmp/mosaic_100mp.tif --megapixels 100
    python samples/make_mosaic.py ../shared/data/train /tmp/mosaic.tif --size 40000x25000

The mosaic is a grid of ``--cell``-pixel cells. Every cell is a random crop of
a random photo from the folder (searched recursively: PNG, JPEG, TIFF, WebP),
at full size or scaled by 0.6, rotated by a random multiple of 90 degrees and randomly
mirrored, so cells are not exact repeats of each other. Gray photos become
RGB; alpha is dropped. The same photos, size and ``--seed`` give the same image.

Memory stays bounded whatever the output size: every source photo is decoded
once into memory, with a 0.6-scaled copy (for the 76 photos of ``train/``
about 330 MB); the mosaic is made a few lines at a time (numpy crops,
rotations and mirrors of those) and streamed to libvips ``tiffsave`` through
:class:`loe_codec.imageio.PngStream`, so only a strip of lines is in memory.
(A lazy libvips ``arrayjoin`` of per-cell operations keeps buffers per cell
and grows with the number of cells.) Peak RSS does not grow with the output
area (see ``benchmarks/README.md``).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pyvips

ROOT = Path(__file__).resolve().parent.parent
if (ROOT / "loe_codec").is_dir():  # the checkout this script belongs to, before any installed copy
    sys.path.insert(0, str(ROOT))
from loe_codec.imageio import PngStream  # noqa: E402

SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}
SCALES = (1.0, 0.6)  # each photo is used at these scales (when it stays at least a cell a side)


def find_photos(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted for reproducibility."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def load_photo(path: Path, cell: int) -> list[np.ndarray]:
    """The photo as 8-bit RGB arrays ``[h, w, 3]``, at full size and at :data:`SCALES` (those at
    least a cell a side); empty if the photo is smaller than a cell."""
    image = pyvips.Image.new_from_file(str(path), access="sequential")
    if image.hasalpha():
        image = image.extract_band(0, n=image.bands - 1)
    if image.format != "uchar":
        image = image.cast("uchar")  # not expected in the training folders; keeps the pipeline 8-bit
    image = image.colourspace("srgb") if image.bands != 3 or image.interpretation != "srgb" else image
    image = image.copy_memory()
    variants = []
    for s in SCALES:
        if min(image.width, image.height) * s >= cell:
            v = image.resize(s) if s < 1 else image
            variants.append(np.ndarray(buffer=v.write_to_memory(), dtype=np.uint8,
                                       shape=(v.height, v.width, 3)))
    return variants


def cell_pixels(photo: np.ndarray, cell: int, rng: random.Random) -> np.ndarray:
    """A ``cell x cell`` crop of ``photo`` at a random place, rotated by a random multiple of 90
    degrees (clockwise) and mirrored half of the time: a view, no copy."""
    h, w = photo.shape[:2]
    x, y = rng.randint(0, w - cell), rng.randint(0, h - cell)
    pixels = np.rot90(photo[y:y + cell, x:x + cell], k=-rng.randrange(4))
    return pixels[:, ::-1] if rng.random() < 0.5 else pixels


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError("width and height must be >= 1")
    return w, h


def mosaic_size(megapixels: float, aspect: float) -> tuple[int, int]:
    """Width and height of about ``megapixels`` MP with ``width / height = aspect``."""
    pixels = megapixels * 1e6
    h = max(1, round(math.sqrt(pixels / aspect)))
    return max(1, round(pixels / h)), h


def strips(photos: list[list[np.ndarray]], width: int, height: int, cell: int, seed: int,
           rows: int = 64) -> Iterator[np.ndarray]:
    """The mosaic as strips of ``rows`` lines (uint8 ``[rows, width, 3]``, top to bottom);
    ``photos`` holds the scaled variants of every photo. The cells of a row of cells are
    chosen once (as views) and copied strip by strip, so only one strip is ever made."""
    rng = random.Random(seed)
    cols = math.ceil(width / cell)
    for y0 in range(0, height, cell):
        cells = [cell_pixels(rng.choice(rng.choice(photos)), cell, rng) for _ in range(cols)]
        for y in range(y0, min(y0 + cell, height), rows):
            n = min(rows, y0 + cell - y, height - y)
            strip = np.empty((n, cols * cell, 3), dtype=np.uint8)
            for c, pixels in enumerate(cells):
                strip[:, c * cell:(c + 1) * cell] = pixels[y - y0:y - y0 + n]
            yield strip[:, :width]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", type=Path, help="folder of photos (searched recursively), e.g. ../shared/data/train")
    parser.add_argument("output", type=Path, help="output .tif (a tiled BigTIFF)")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--megapixels", type=float, help="about this many megapixels (see --aspect)")
    size.add_argument("--size", type=parse_size, help="exact WIDTHxHEIGHT in pixels")
    parser.add_argument("--aspect", type=float, default=1.5, help="width / height with --megapixels (default 1.5)")
    parser.add_argument("--cell", type=int, default=512, help="mosaic cell size in pixels (default 512)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--compression", default="jpeg", choices=["jpeg", "deflate", "lzw", "none"],
                        help="TIFF tile compression (default jpeg)")
    parser.add_argument("--quality", type=int, default=92, help="JPEG quality with --compression jpeg (default 92)")
    parser.add_argument("--tile", type=int, default=256, help="TIFF tile size (default 256)")
    parser.add_argument("--quiet", action="store_true", help="no summary line")
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return 2

    if not args.photos.is_dir():
        return fail(f"{args.photos} is not a folder")
    if args.output.suffix.lower() not in (".tif", ".tiff"):
        return fail(f"{args.output}: the output must be a .tif / .tiff file")
    if not args.output.parent.is_dir():
        return fail(f"{args.output.parent} does not exist")
    if args.cell < 16 or args.tile < 16 or args.tile % 16:
        return fail("--cell must be >= 16 and --tile a multiple of 16")
    if args.megapixels is not None:
        if not (args.megapixels > 0 and args.aspect > 0):
            return fail("--megapixels and --aspect must be > 0")
        width, height = mosaic_size(args.megapixels, args.aspect)
    else:
        width, height = args.size
    if max(width, height) > 10_000_000:
        return fail(f"{width}x{height}: at most 10 000 000 pixels a side (the libvips limit)")

    started = time.perf_counter()
    photos = []
    for path in find_photos(args.photos):
        try:
            variants = load_photo(path, args.cell)
        except pyvips.Error as exc:
            print(f"warning: skipping {path}: {str(exc).splitlines()[0]}", file=sys.stderr)
            continue
        if variants:
            photos.append(variants)
    if not photos:
        return fail(f"no readable photo of at least {args.cell}x{args.cell} pixels under {args.photos}")

    stream = PngStream(width, height, 3, strips(photos, width, height, args.cell, args.seed))
    image = stream.image()
    tmp = args.output.with_name(f".{args.output.stem}.partial{args.output.suffix}")
    options = {"tile": True, "tile_width": args.tile, "tile_height": args.tile, "bigtiff": True,
               "compression": args.compression}
    if args.compression == "jpeg":
        options["Q"] = args.quality
    try:
        image.tiffsave(str(tmp), **options)
        stream.raise_error()
        tmp.replace(args.output)
    except (pyvips.Error, OSError) as exc:
        stream.raise_error()
        return fail(f"cannot write {args.output}: {str(exc).splitlines()[0]}")
    finally:
        tmp.unlink(missing_ok=True)
    if not args.quiet:
        print(f"{args.output}: {width}x{height} ({width * height / 1e6:.1f} MP), {len(photos)} photos, "
              f"{math.ceil(width / args.cell) * math.ceil(height / args.cell)} cells, "
              f"{args.output.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
