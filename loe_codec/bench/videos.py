"""The videos a benchmark runs on: the reference frames (RGB, 8-bit), optionally the first N only.

A video is measured as a whole: rate in bits per pixel per frame (file bits over
``width * height * frames``), quality as the mean of the per-frame PSNRs (RGB,
8-bit, peak 255). With a frame limit the first ``frames`` frames are cut to a
lossless FFV1 file, which every codec then codes and is compared with; a cut already
in the folder (named after the source's contents: :func:`identity`) is used again.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import UsageError
from ..files import adopted, atomic_output
from ..fitcache import legacy_source_identity, source_identity


@dataclass(frozen=True)
class BenchVideo:
    """One benchmark video: ``name`` (file stem, unique in a run), the file every codec codes (a cut of
    ``source``'s first frames, or ``source`` itself), its size."""

    name: str
    path: Path
    width: int
    height: int
    frames: int
    fps: float
    source: Path | None = None

    def pixels(self) -> np.ndarray:
        """Every frame, uint8 ``[frames, height, width, 3]`` (held whole: short benchmark clips only)."""
        from ..videoio import read_video_frames

        return read_video_frames(self.path)


def cut_frames(src: str | os.PathLike, dst: str | os.PathLike, frames: int) -> None:
    """The first ``frames`` frames of ``src`` as lossless RGB in FFV1 (``dst``, .mkv), frame rate kept."""
    import itertools

    from ..videoio import VideoSource, write_video

    source = VideoSource(src)
    write_video(itertools.islice(source.iter_frames(), frames), dst, source.fps, "ffv1")


def open_videos(inputs: Iterable[str | os.PathLike], frames: int | None, folder: str | os.PathLike
                ) -> list[BenchVideo]:
    """The videos of ``inputs``; with ``frames``, each cut to its first ``frames`` frames in ``folder``
    (or the cut an earlier run left there: its name holds the source's :func:`identity`)."""
    from ..videoio import VideoSource

    out: list[BenchVideo] = []
    for item in inputs:
        path = Path(item)
        if not path.is_file():
            raise UsageError(f"no such video file: {path}")
        source = VideoSource(path)
        if frames is not None and frames < source.frames:
            cut = adopted(Path(folder) / f"{path.stem}_{frames}f_{identity(path)}.mkv",
                          Path(folder) / f"{path.stem}_{frames}f_{legacy_identity(path)}.mkv")
            if not cut.is_file():  # else the same frames of the same file, cut by an earlier run
                with atomic_output(cut) as partial:
                    cut_frames(path, partial, frames)
            path, source = cut, VideoSource(cut)
        if source.channels != 3:
            raise UsageError(f"{item}: the benchmark compares RGB videos")
        out.append(BenchVideo(Path(item).stem, path, source.width, source.height, source.frames, float(source.fps),
                              Path(item)))
    names = [v.name for v in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"two videos share the name {dupes[0]!r}: names (file stems) must be unique in a run")
    if not out:
        raise UsageError("no videos given")
    return out


def identity(path: Path) -> str:
    """12 hex digits of the file's contents (:func:`loe_codec.fitcache.source_identity`): a changed source gets
    new cuts, a copied one keeps them."""
    return source_identity(path)["sha256"][:12]


def legacy_identity(path: Path) -> str:
    """What :func:`identity` was until 2026-12-06 (of the path, size and modification time): the name of
    cuts and frames an earlier loe-codec left in a cache."""
    source = legacy_source_identity(path)
    return hashlib.sha256(f"{source['source']}|{source['size']}|{source['mtime']}".encode()).hexdigest()[:12]


def mean_frame_psnr(decoded: Iterable[np.ndarray], reference: np.ndarray) -> float:
    """Mean over frames of the PSNR (RGB, 8-bit) of ``decoded`` frames against ``reference`` ``[F, H, W, 3]``."""
    from ..metrics import psnr

    values = [psnr(ref, dec) for dec, ref in zip(decoded, reference, strict=True)]
    return float(np.mean(values))
