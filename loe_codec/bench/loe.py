"""The loe codec as one more benchmarked codec, through the public API.

A setting is a string that :func:`loe_setting` maps to a :class:`~loe_codec.config.CodecConfig`
and a rate target: a preset name (``fast``, ``balanced``, ``best``: the preset's own slope),
optionally with a rate after ``@``: ``balanced@q40`` (quality 0..100) or ``balanced@bpp0.5``
(a size target). Settings of one preset share one fit per image (a fit cache kept while the
codec lives, or in a folder given to it, where the fits stay for later runs and a long fit keeps
its snapshots: a run stopped half-way goes on from them): the first setting's encode seconds
include the fit, later ones only the quantization-aware fine-tuning and coding.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..config import PRESETS, CodecConfig, config_for_quality, preset, slope_for_quality
from ..errors import UsageError
from ..metrics import psnr
from .codecs import Codec, Measurement
from .images import BenchImage


@dataclass(frozen=True)
class LoeSetting:
    """A loe bench setting ``PRESET[/STEPS][@qN|@bppX]``: preset name, fitting steps (None: the preset's),
    quality (0..100) or bpp target (at most one; neither: the preset's slope)."""

    preset: str
    steps: int | None = None
    quality: int | None = None
    bpp: float | None = None

    @classmethod
    def parse(cls, setting: str, presets: Iterable[str], codec: str = "loe") -> "LoeSetting":
        head, _, rate = setting.partition("@")
        name, _, steps = head.partition("/")
        if name not in presets:
            raise UsageError(f"{codec}: unknown setting {setting!r}; choose one of {', '.join(presets)}, "
                             "optionally with /STEPS and @qN or @bppX")
        try:
            out = cls(name, int(steps) if steps else None)
            if out.steps is not None and out.steps < 0:
                raise ValueError
            if not rate:
                return out
            if rate.startswith("q"):
                slope_for_quality(int(rate[1:]))  # checks the range
                return dataclasses.replace(out, quality=int(rate[1:]))
            if rate.startswith("bpp") and 0 < float(rate[3:]) < 64:
                return dataclasses.replace(out, bpp=float(rate[3:]))
        except (ValueError, UsageError):
            pass
        raise UsageError(f"{codec}: bad rate or steps in setting {setting!r}; use PRESET[/STEPS][@qN|@bppX] "
                         "(N in 0..100, X in (0, 64))")


def loe_setting(setting: str) -> tuple[CodecConfig, float | None]:
    """The codec config and bpp target (or None) a bench setting stands for."""
    s = LoeSetting.parse(setting, PRESETS)
    config = preset(s.preset).with_overrides(steps=s.steps)
    if s.quality is not None:
        config = config_for_quality(config, s.quality)
    return config, s.bpp


def loe_config(setting: str) -> CodecConfig:
    """The codec config a bench setting stands for."""
    return loe_setting(setting)[0]


class LoeCodec(Codec):
    """Encodes with :func:`loe_codec.encode` into a temporary ``.loe`` file and decodes it with :func:`loe_codec.open`.

    ``steps`` (optional) overrides the fitting steps of every setting, for quick checks.
    ``cache`` (optional): a folder whose ``fits`` subfolder keeps the fits (and snapshots) between
    runs; by default they live in a temporary folder removed with the codec (``self.folder`` either way).
    Bytes are the whole file's; encode seconds are the encode call (fit,
    quantize, write; the encoder's own PSNR check is off); decode seconds open
    the file and decode the full image.
    """

    name = "loe"
    label = "loe"
    settings = ("fast",)

    def __init__(self, device: str = "auto", steps: int | None = None, cache: str | os.PathLike | None = None):
        from ..api import resolve_device

        self.device = resolve_device(device)
        self.steps = steps
        self._temporary = tempfile.TemporaryDirectory(prefix="loe-bench-") if cache is None else None
        self.folder = Path(cache) if cache is not None else Path(self._temporary.name)  # fits and frames
        self.fits = self.folder / "fits"
        if steps is not None and steps < 0:
            raise UsageError(f"loe steps must be >= 0, got {steps}")
        self.describe = (f"loe_codec.encode(src, out.loe, config=loe_config(setting), device={self.device!r})"
                         + (f", fitting steps overridden to {steps}" if steps is not None else ""))

    def config(self, setting: str) -> CodecConfig:
        return loe_config(setting).with_overrides(steps=self.steps)

    def check_setting(self, setting: str) -> None:
        loe_setting(setting)

    def measure(self, image: BenchImage, setting: str, pixels: np.ndarray | None = None) -> Measurement:
        import loe_codec

        reference = image.pixels() if pixels is None else pixels
        cfg = self.config(setting)
        bpp = loe_setting(setting)[1]
        with tempfile.TemporaryDirectory(prefix="loe-bench-") as tmp:
            out = Path(tmp) / f"{image.name}.loe"
            t0 = time.perf_counter()
            loe_codec.encode(image.path, out, config=cfg, bpp=bpp, device=self.device, measure_psnr=False,
                             cache_dir=self.fits, progress=self.progress)
            t1 = time.perf_counter()
            with loe_codec.open(out) as img:
                decoded = img.decode(device=self.device)
            t2 = time.perf_counter()
            size = out.stat().st_size
        return Measurement.create(image, self.name, setting, size, psnr(reference, decoded), t1 - t0, t2 - t1)
