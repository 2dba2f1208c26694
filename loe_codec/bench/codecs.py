"""What every benchmarked codec provides, and what one measurement records.

A codec has a short ``name`` (used on the command line and in the JSON), a
``label`` (the name in tables and plots; for the classical codecs the key of
the reference results), a default sweep of ``settings`` (strings: a quality,
a distance, a preset name ...) and :meth:`Codec.measure`, which codes one
image at one setting and decodes it back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import numpy as np

    from .images import BenchImage
    from .videos import BenchVideo


@dataclass(frozen=True)
class Measurement:
    """One (image, codec, setting): coded size and quality, wall seconds of encode and decode."""

    image: str
    codec: str
    setting: str
    bytes: int
    bpp: float
    psnr: float | None  # None for a lossless result (infinite PSNR)
    encode_s: float
    decode_s: float

    @property
    def key(self) -> tuple[str, str, str]:
        return self.image, self.codec, self.setting

    @classmethod
    def create(cls, image: "BenchImage | BenchVideo", codec: str, setting: str, size: int, psnr: float,
               encode_s: float, decode_s: float) -> "Measurement":
        """A measurement of ``size`` coded bytes of ``image`` (bpp over its pixels, and over its frames for a
        video; inf PSNR -> None)."""
        frames = getattr(image, "frames", 1)
        return cls(image.name, codec, setting, size, size * 8.0 / (image.width * image.height * frames),
                   psnr if math.isfinite(psnr) else None, round(encode_s, 6), round(decode_s, 6))


class Codec:
    """Base class of the benchmarked codecs (subclasses set the attributes and :meth:`measure`)."""

    name: str = ""
    label: str = ""
    settings: tuple[str, ...] = ()
    describe: str = ""  # the exact call / parameters, recorded in the results
    # Set by the runner while a measurement runs: ``progress(stage, done, total)`` of a long encode's stages
    # (loe's fit: hours on a CPU for a video); codecs whose encodes are quick ignore it.
    progress: "Callable[[str, float, float], None] | None" = None

    def check_setting(self, setting: str) -> None:
        """Raise :class:`~loe_codec.errors.UsageError` if ``setting`` is not valid for this codec."""

    def measure(self, image: "BenchImage", setting: str, pixels: "np.ndarray | None" = None) -> Measurement:
        """Code ``image`` at ``setting``, decode it back, measure; ``pixels`` are its RGB pixels if already read."""
        raise NotImplementedError
