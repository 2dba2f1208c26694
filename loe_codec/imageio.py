"""Image input and output through pyvips.

Input: anything libvips reads, 8-bit, 1 to 4 bands (gray, gray+alpha, RGB,
RGBA; alpha is coded as one more channel). Pixels are fetched region by
region; the whole image is never requested at once.
Output: the format follows the file extension; files are written under a
temporary name and renamed on success. Large outputs stream: the pixels come
strip by strip (:func:`write_strips`) and reach libvips as an uncompressed PNG
byte stream that libvips decodes sequentially while it writes, so the whole
image is never in memory. ``.tif`` can be a tiled pyramidal BigTIFF, and
``.dzi`` is a Deep Zoom pyramid (the ``.dzi`` file and its ``_files`` folder).
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .errors import CodecRuntimeError, UsageError
from .files import atomic_output, check_output_location, require_file

try:  # pyvips prints a warning and raises at first use when libvips is missing
    import pyvips
except Exception as exc:  # pragma: no cover - depends on the installation
    raise ImportError(f"pyvips is required ({exc}); install the pyvips-binary wheel") from exc

_UNSUPPORTED_INTERPRETATIONS = {"cmyk", "lab", "labq", "labs", "lch", "cmc", "xyz", "yxy", "scrgb",
                                "hsv", "fourier", "histogram", "matrix"}
ALPHA_LESS_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif"}
TIFF_SUFFIXES = {".tif", ".tiff"}
DZI_SUFFIX = ".dzi"
PYRAMID_JPEG_QUALITY = 90
MAX_SIDE_BY_SUFFIX = {".jpg": 65535, ".jpeg": 65535, ".jpe": 65535, ".jfif": 65535, ".webp": 16383}


class ImageSource:
    """An input image opened for region reads.

    Attributes: ``width``, ``height``, ``channels`` (1..4).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = require_file(path)
        try:
            image = pyvips.Image.new_from_file(str(self.path), access="random")
        except pyvips.Error as exc:
            raise UsageError(f"cannot read {self.path} as an image ({_vips_message(exc)})") from None
        if image.format != "uchar":
            raise UsageError(f"{self.path}: only 8-bit images are supported for now (this one is "
                             f"{image.format}, e.g. 16-bit or float)")
        if not 1 <= image.bands <= 4:
            raise UsageError(f"{self.path}: {image.bands} bands; only gray, gray+alpha, RGB and RGBA "
                             "(1 to 4 bands) are supported for now")
        if image.interpretation in _UNSUPPORTED_INTERPRETATIONS:
            raise UsageError(f"{self.path}: colour space {image.interpretation!r} is not supported; "
                             "convert it to sRGB or gray first")
        self._image = image
        # One region, reused for every read: a new crop pipeline per read leaves buffers behind
        # (measured: +160 MB over the 1 536 tile reads of a 100 MP tiled TIFF; flat with a region).
        self._region = pyvips.Region.new(image)
        self.width, self.height, self.channels = image.width, image.height, image.bands

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Pixels of the rectangle at ``(x, y)`` of size ``w x h``: uint8 ``[h, w, channels]``."""
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > self.width or y + h > self.height:
            raise UsageError(f"cannot read pixels {x},{y},{w},{h} of the {self.width}x{self.height} image "
                             f"{self.path}")
        try:
            data = self._region.fetch(x, y, w, h)
        except pyvips.Error as exc:
            raise UsageError(f"cannot read pixels of {self.path} ({_vips_message(exc)})") from None
        return np.frombuffer(data, dtype=np.uint8).reshape(h, w, self.channels)


def check_output_path(path: str | os.PathLike, pyramid: bool = False) -> Path:
    """Refuse an output path whose format libvips cannot write or whose folder is missing.

    ``pyramid`` (a tiled pyramidal BigTIFF) needs a ``.tif``/``.tiff`` path; ``.dzi``
    (Deep Zoom) is a pyramid anyway.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not suffix:
        raise UsageError(f"{path}: give the output a file extension (e.g. .png, .tif, .jpg)")
    if pyramid and suffix not in TIFF_SUFFIXES | {DZI_SUFFIX}:
        raise UsageError(f"{path}: --pyramid needs a .tif or .tiff output (or .dzi for Deep Zoom), "
                         f"not {path.suffix!r}")
    suffixes = {s.lower() for s in pyvips.base.get_suffixes()}
    if suffix != DZI_SUFFIX and suffixes and suffix not in suffixes:
        raise UsageError(f"{path}: libvips cannot write {path.suffix!r} files")
    path = check_output_location(path)
    if suffix == DZI_SUFFIX and dzi_folder(path).exists() and not dzi_folder(path).is_dir():
        raise UsageError(f"{dzi_folder(path)} exists and is not a folder")
    return path


def check_output_size(path: str | os.PathLike, width: int, height: int) -> None:
    """Refuse an output larger than its format allows (JPEG 65535, WebP 16383 pixels a side)."""
    path = Path(path)
    limit = MAX_SIDE_BY_SUFFIX.get(path.suffix.lower())
    if limit is not None and max(width, height) > limit:
        raise UsageError(f"{path}: a {width}x{height} output is too large for {path.suffix} (at most {limit} "
                         "pixels a side); use .tif (with --pyramid for big images), .png or .dzi")


def dzi_folder(path: Path) -> Path:
    """The tile folder of a Deep Zoom ``name.dzi``: ``name_files`` next to it."""
    return path.with_name(path.stem + "_files")


def write_image(pixels: np.ndarray, path: str | os.PathLike, pyramid: bool = False) -> None:
    """Write uint8 ``[h, w, C]`` pixels; the extension picks the format. Atomic (temp name + rename).
    See :func:`write_strips`."""
    h, w, c = pixels.shape
    write_strips([np.ascontiguousarray(pixels, dtype=np.uint8)], w, h, c, path, pyramid)


def write_strips(strips: Iterable[np.ndarray], width: int, height: int, channels: int,
                 path: str | os.PathLike, pyramid: bool = False) -> None:
    """Write an image given as uint8 strips ``[rows, width, channels]``, top to bottom, without
    holding it in memory. The extension picks the format; ``.dzi`` writes a Deep Zoom pyramid and
    ``pyramid`` a tiled pyramidal BigTIFF (JPEG tiles, quality :data:`PYRAMID_JPEG_QUALITY`, or
    deflate with alpha). Atomic: on failure nothing is left at ``path`` (nor a ``_files`` folder).
    """
    path = check_output_path(path, pyramid)
    suffix = path.suffix.lower()
    check_output_size(path, width, height)
    flatten = suffix in ALPHA_LESS_SUFFIXES and channels in (2, 4)
    if flatten:
        strips = (flatten_alpha(s) for s in strips)
        channels -= 1
    stream = PngStream(width, height, channels, strips)
    image = stream.image()
    if suffix == DZI_SUFFIX:
        with _atomic_dzi(path) as base:
            _save(stream, path, lambda: image.dzsave(base, suffix=".png" if channels in (2, 4) else ".jpeg"))
        return
    options: dict = {}
    if suffix in TIFF_SUFFIXES:
        big = width * height * channels > (1 << 31)
        if pyramid:
            options = {"tile": True, "pyramid": True, "bigtiff": True, "tile_width": 256, "tile_height": 256}
            options.update({"compression": "deflate"} if channels in (2, 4) else
                           {"compression": "jpeg", "Q": PYRAMID_JPEG_QUALITY})
        elif big:
            options = {"bigtiff": True}
    with atomic_output(path) as tmp:
        _save(stream, path, lambda: image.write_to_file(tmp, **options))


class PngStream:
    """Strips of pixels served to libvips as a PNG byte stream, rendered only when libvips reads them.

    The PNG is stored uncompressed (deflate level 0: no compression work) and
    libvips loads it with sequential access, so only a few strips are in memory
    at once. An exception raised by the strip iterator is kept in :attr:`error`
    (libvips sees the stream end early) and re-raised by the caller.
    """

    def __init__(self, width: int, height: int, channels: int, strips: Iterable[np.ndarray]):
        if not 1 <= channels <= 4:
            raise ValueError(f"1 to 4 channels, got {channels}")
        self.width, self.height, self.channels = width, height, channels
        self._chunks = self._generate(iter(strips))
        self._data = b""
        self._pos = 0
        self.error: BaseException | None = None

    def image(self) -> "pyvips.Image":
        source = pyvips.SourceCustom()
        source.on_read(self._read)
        try:
            image = pyvips.Image.new_from_source(source, "", access="sequential")
        except pyvips.Error as exc:
            self.raise_error()
            raise CodecRuntimeError(f"cannot stream the output ({_vips_message(exc)})") from None
        return image.copy(interpretation="b-w" if self.channels <= 2 else "srgb")

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    @staticmethod
    def _chunk(tag: bytes, data: bytes) -> tuple[bytes, bytes, bytes]:
        """A PNG chunk in three pieces (no copy of ``data``)."""
        return struct.pack(">I", len(data)) + tag, data, struct.pack(">I", zlib.crc32(data, zlib.crc32(tag)))

    def _generate(self, strips: Iterator[np.ndarray]) -> Iterator[bytes]:
        colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[self.channels]
        yield b"\x89PNG\r\n\x1a\n"
        yield from self._chunk(b"IHDR", struct.pack(">IIBBBBB", self.width, self.height, 8, colour_type, 0, 0, 0))
        deflate = zlib.compressobj(0)
        rows = 0
        for strip in strips:
            n = strip.shape[0]
            if strip.shape[1:] != (self.width, self.channels) or rows + n > self.height:
                raise ValueError(f"strip of shape {strip.shape} at row {rows} does not fit a "
                                 f"{self.width}x{self.height}x{self.channels} image")
            lines = np.empty((n, self.width * self.channels + 1), dtype=np.uint8)
            lines[:, 0] = 0  # PNG filter type "none" on every line
            lines[:, 1:] = strip.reshape(n, -1)
            rows += n
            data = deflate.compress(lines.data)
            del lines
            if data:
                yield from self._chunk(b"IDAT", data)
        if rows != self.height:
            raise ValueError(f"got {rows} rows of a {self.height}-row image")
        yield from self._chunk(b"IDAT", deflate.flush())
        yield from self._chunk(b"IEND", b"")

    def _read(self, size: int) -> bytes:
        try:
            while self._pos >= len(self._data):
                self._data, self._pos = next(self._chunks), 0
        except StopIteration:
            return b""
        except BaseException as exc:  # noqa: BLE001 - kept and re-raised outside the libvips callback
            if self.error is None:
                self.error = exc
            return b""
        out = self._data[self._pos:self._pos + size]
        self._pos += len(out)
        return out


def _save(stream: PngStream, path: Path, save) -> None:
    """Run a libvips save of a streamed image; errors of the strip renderer come first."""
    try:
        save()
    except pyvips.Error as exc:
        stream.raise_error()
        raise CodecRuntimeError(f"cannot write {path} ({_vips_message(exc)})") from None
    stream.raise_error()  # a renderer error that libvips did not notice


@contextmanager
def _atomic_dzi(path: Path) -> Iterator[str]:
    """Yield a temporary Deep Zoom base name in the output folder; on success its ``.dzi`` and
    ``_files`` replace ``path`` and :func:`dzi_folder` of it (the folder first, the ``.dzi`` last)."""
    folder = path.parent if str(path.parent) else Path(".")
    work = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", dir=folder))
    try:
        base = work / path.stem
        yield str(base)
        files, target = dzi_folder(base.with_suffix(DZI_SUFFIX)), dzi_folder(path)
        old = work / "old_files"
        if target.exists():
            target.rename(old)
        try:
            files.rename(target)
        except OSError:
            if old.exists():  # put the previous pyramid back
                old.rename(target)
            raise
        os.replace(base.with_suffix(DZI_SUFFIX), path)
    except OSError as exc:
        raise CodecRuntimeError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def flatten_alpha(pixels: np.ndarray) -> np.ndarray:
    """Composite gray+alpha or RGBA over white, for formats without alpha."""
    colour = pixels[..., :-1].astype(np.float32)
    alpha = pixels[..., -1:].astype(np.float32) / 255.0
    return np.round(colour * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)


def _vips_message(exc: Exception) -> str:
    text = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return "; ".join(text[:2]) if text else type(exc).__name__
