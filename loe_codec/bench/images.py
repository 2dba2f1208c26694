"""The images a benchmark runs on: found in folders or named one by one, read whole as RGB uint8."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import UsageError

# Suffixes picked up when a folder is given (any file libvips reads may be named explicitly).
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm", ".pnm", ".bmp"}


@dataclass(frozen=True)
class BenchImage:
    """One benchmark image: ``name`` (file stem, unique in a run), its path and size."""

    name: str
    path: Path
    width: int
    height: int

    def pixels(self) -> np.ndarray:
        """The whole image, uint8 ``[height, width, 3]``."""
        from ..imageio import ImageSource

        return ImageSource(self.path).read(0, 0, self.width, self.height)


def open_image(path: str | os.PathLike) -> BenchImage:
    """Check that ``path`` is an 8-bit RGB image libvips reads and describe it."""
    from ..imageio import ImageSource

    source = ImageSource(path)  # UsageError for a missing, unreadable or unsupported file
    if source.channels != 3:
        raise UsageError(f"{path}: the benchmark compares RGB images, this one has {source.channels} channel(s)")
    return BenchImage(Path(path).stem, Path(path), source.width, source.height)


def find_images(inputs: Iterable[str | os.PathLike]) -> list[BenchImage]:
    """The images of ``inputs``: files as given, folders expanded to their image files (sorted by name)."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
            if not found:
                raise UsageError(f"{p}: no images in this folder ({', '.join(sorted(IMAGE_SUFFIXES))})")
            paths.extend(found)
        elif p.exists():
            paths.append(p)
        else:
            raise UsageError(f"no such file or folder: {p}")
    if not paths:
        raise UsageError("no images given")
    images = [open_image(p) for p in paths]
    names = [im.name for im in images]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"two images share the name {dupes[0]!r}: names (file stems) must be unique in a run")
    return images
