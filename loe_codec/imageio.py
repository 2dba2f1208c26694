"""Image input and output through pyvips.

Input: anything libvips reads, 8-bit, 1 to 4 bands (gray, gray+alpha, RGB,
RGBA; alpha is coded as one more channel). Pixels are fetched region by
region; the whole image is never requested at once.
Output: the format follows the file extension; files are written under a
temporary name and renamed on success.
"""

from __future__ import annotations

import os
from pathlib import Path

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
        self.width, self.height, self.channels = image.width, image.height, image.bands

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Pixels of the rectangle at ``(x, y)`` of size ``w x h``: uint8 ``[h, w, channels]``."""
        try:
            data = self._image.crop(x, y, w, h).write_to_memory()
        except pyvips.Error as exc:
            raise UsageError(f"cannot read pixels of {self.path} ({_vips_message(exc)})") from None
        return np.frombuffer(data, dtype=np.uint8).reshape(h, w, self.channels)


def check_output_path(path: str | os.PathLike) -> Path:
    """Refuse an output path whose format libvips cannot write or whose folder is missing."""
    path = Path(path)
    if not path.suffix:
        raise UsageError(f"{path}: give the output a file extension (e.g. .png, .tif, .jpg)")
    suffixes = {s.lower() for s in pyvips.base.get_suffixes()}
    if suffixes and path.suffix.lower() not in suffixes:
        raise UsageError(f"{path}: libvips cannot write {path.suffix!r} files")
    return check_output_location(path)


def write_image(pixels: np.ndarray, path: str | os.PathLike) -> None:
    """Write uint8 ``[h, w, C]`` pixels; the extension picks the format. Atomic (temp name + rename)."""
    path = check_output_path(path)
    h, w, c = pixels.shape
    if path.suffix.lower() in ALPHA_LESS_SUFFIXES and c in (2, 4):
        pixels = flatten_alpha(pixels)
        c -= 1
    image = pyvips.Image.new_from_memory(np.ascontiguousarray(pixels, dtype=np.uint8).data, w, h, c, "uchar")
    image = image.copy(interpretation="b-w" if c <= 2 else "srgb")
    with atomic_output(path) as tmp:
        try:
            image.write_to_file(tmp)
        except pyvips.Error as exc:
            raise CodecRuntimeError(f"cannot write {path} ({_vips_message(exc)})") from None


def flatten_alpha(pixels: np.ndarray) -> np.ndarray:
    """Composite gray+alpha or RGBA over white, for formats without alpha."""
    colour = pixels[..., :-1].astype(np.float32)
    alpha = pixels[..., -1:].astype(np.float32) / 255.0
    return np.round(colour * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)


def _vips_message(exc: Exception) -> str:
    text = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return "; ".join(text[:2]) if text else type(exc).__name__
