"""Classical codecs through ``imagecodecs``, with the exact settings of the reference anchors.

Each codec sweeps one number (a quality, a target PSNR or a distance); the
settings match ``data/reference/kodak_classical_codecs.json`` of the shared
data (measured with imagecodecs 2026.3.6: libjpeg-turbo 3.1.3, libwebp
1.6.0, OpenJPEG 2.5.4, libavif 1.4.0 + aom, libjxl 0.11.2). Encoders that
can use threads are pinned to one, as there.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ..errors import UsageError
from ..metrics import psnr
from .codecs import Codec, Measurement
from .images import BenchImage


def _imagecodecs():
    try:
        import imagecodecs
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise UsageError("the classical codecs need imagecodecs: pip install 'loe-codec[bench]'") from exc
    return imagecodecs


def _steps(start: float, stop: float, step: float) -> tuple[str, ...]:
    """``start, start+step, ..., stop`` as setting strings (integers without a decimal point)."""
    values = np.arange(start, stop + step / 2, step)
    return tuple(f"{v:g}" for v in values)


class ClassicalCodec(Codec):
    """A codec of ``imagecodecs`` swept over one number: ``encode(pixels, value)`` / ``decode(bytes)``."""

    def __init__(self, name: str, label: str, settings: tuple[str, ...], low: float, high: float,
                 encode: Callable[[object, np.ndarray, float], bytes], decode: str, describe: str):
        self.name, self.label, self.settings, self.describe = name, label, settings, describe
        self._range = (low, high)
        self._encode = encode
        self._decode = decode

    def value(self, setting: str) -> float:
        """The number a setting string stands for (checked against the codec's range)."""
        try:
            v = float(setting)
        except ValueError:
            v = float("nan")
        low, high = self._range
        if not low <= v <= high:
            raise UsageError(f"{self.name}: setting {setting!r} must be a number in {low:g}..{high:g}")
        return v

    def check_setting(self, setting: str) -> None:
        self.value(setting)

    def measure(self, image: BenchImage, setting: str, pixels: np.ndarray | None = None) -> Measurement:
        ic = _imagecodecs()
        x = image.pixels() if pixels is None else pixels
        v = self.value(setting)
        t0 = time.perf_counter()
        data = bytes(self._encode(ic, x, v))
        t1 = time.perf_counter()
        y = np.asarray(getattr(ic, self._decode)(data))
        t2 = time.perf_counter()
        if y.shape != x.shape or y.dtype != np.uint8:
            raise RuntimeError(f"{self.name} decoded {y.shape} {y.dtype}, expected {x.shape} uint8")
        return Measurement.create(image, self.name, setting, len(data), psnr(x, y), t1 - t0, t2 - t1)


def _int(v: float) -> int:
    return int(round(v))


def _jpeg(name: str, label: str, subsampling: str) -> ClassicalCodec:
    return ClassicalCodec(
        name, label, ("1", "2", "3", "4") + _steps(5, 95, 5), 1, 100,
        lambda ic, x, q: ic.jpeg8_encode(x, level=_int(q), subsampling=subsampling, optimize=True), "jpeg8_decode",
        f'jpeg8_encode(x, level=q, subsampling="{subsampling}", optimize=True) [libjpeg-turbo, q = quality]')


def _avif(name: str, label: str, pixelformat: str) -> ClassicalCodec:
    return ClassicalCodec(
        name, label, _steps(0, 95, 5), 0, 100,
        lambda ic, x, q: ic.avif_encode(x, level=_int(q), speed=6, pixelformat=pixelformat, codec="aom",
                                        numthreads=1),
        "avif_decode",
        f'avif_encode(x, level=q, speed=6, pixelformat="{pixelformat}", codec="aom", numthreads=1) '
        "[libavif + aom, q = quality]")


CLASSICAL: dict[str, ClassicalCodec] = {c.name: c for c in (
    _jpeg("jpeg", "JPEG-420", "420"),
    _jpeg("jpeg444", "JPEG-444", "444"),
    ClassicalCodec(
        "webp", "WebP", _steps(0, 100, 5), 0, 100,
        lambda ic, x, q: ic.webp_encode(x, level=q, lossless=False, method=6), "webp_decode",
        "webp_encode(x, level=q, lossless=False, method=6) [libwebp, q = quality]"),
    ClassicalCodec(
        "jpeg2000", "JPEG2000", _steps(20, 50, 1), 1, 200,
        lambda ic, x, p: ic.jpeg2k_encode(x, level=p, codecformat="J2K", numthreads=1), "jpeg2k_decode",
        'jpeg2k_encode(x, level=P, codecformat="J2K", numthreads=1) [OpenJPEG, P = target PSNR in dB, '
        "irreversible 9/7, raw codestream]"),
    _avif("avif", "AVIF-444", "444"),
    _avif("avif420", "AVIF-420", "420"),
    ClassicalCodec(
        "jpegxl", "JPEG-XL", ("15", "12", "10", "8", "6", "5", "4", "3", "2.5", "2", "1.5", "1.25", "1", "0.75",
                              "0.5"), 0.05, 25,
        lambda ic, x, d: ic.jpegxl_encode(x, distance=d, effort=7, lossless=False, numthreads=1), "jpegxl_decode",
        "jpegxl_encode(x, distance=d, effort=7, lossless=False, numthreads=1) [libjxl, d = butteraugli distance]"),
)}
