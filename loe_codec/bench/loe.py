"""The loe codec as one more benchmarked codec, through the public API.

A setting is a string that :func:`loe_config` maps to a :class:`~loe_codec.config.CodecConfig`:
for now a preset name (``fast``, ``balanced``, ``best``). Keep that function
the one place where settings become configs (rate control will add settings
such as quality or bpp targets there).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from ..config import PRESETS, CodecConfig, preset
from ..errors import UsageError
from ..metrics import psnr
from .codecs import Codec, Measurement
from .images import BenchImage


def loe_config(setting: str) -> CodecConfig:
    """The codec config a bench setting stands for (today: a preset name)."""
    if setting not in PRESETS:
        raise UsageError(f"loe: unknown setting {setting!r}; choose one of {', '.join(PRESETS)}")
    return preset(setting)


class LoeCodec(Codec):
    """Encodes with :func:`loe_codec.encode` into a temporary ``.loe`` file and decodes it with :func:`loe_codec.open`.

    ``steps`` (optional) overrides the fitting steps of every setting, for quick checks.
    Bytes are the whole file's; encode seconds are the encode call (fit,
    quantize, write; the encoder's own PSNR check is off); decode seconds open
    the file and decode the full image.
    """

    name = "loe"
    label = "loe"
    settings = ("fast",)

    def __init__(self, device: str = "auto", steps: int | None = None):
        from ..api import resolve_device

        self.device = resolve_device(device)
        self.steps = steps
        if steps is not None and steps < 0:
            raise UsageError(f"loe steps must be >= 0, got {steps}")
        self.describe = (f"loe_codec.encode(src, out.loe, config=loe_config(setting), device={self.device!r})"
                         + (f", fitting steps overridden to {steps}" if steps is not None else ""))

    def config(self, setting: str) -> CodecConfig:
        return loe_config(setting).with_overrides(steps=self.steps)

    def check_setting(self, setting: str) -> None:
        loe_config(setting)

    def measure(self, image: BenchImage, setting: str, pixels: np.ndarray | None = None) -> Measurement:
        import loe_codec

        reference = image.pixels() if pixels is None else pixels
        cfg = self.config(setting)
        with tempfile.TemporaryDirectory(prefix="loe-bench-") as tmp:
            out = Path(tmp) / f"{image.name}.loe"
            t0 = time.perf_counter()
            loe_codec.encode(image.path, out, config=cfg, device=self.device, measure_psnr=False)
            t1 = time.perf_counter()
            with loe_codec.open(out) as img:
                decoded = img.decode(device=self.device)
            t2 = time.perf_counter()
            size = out.stat().st_size
        return Measurement.create(image, self.name, setting, size, psnr(reference, decoded), t1 - t0, t2 - t1)
