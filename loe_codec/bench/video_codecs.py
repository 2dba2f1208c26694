"""The codecs of a video benchmark: loe video, its plain-MLP baseline, loe images frame by frame, x264, x265.

Each measures one :class:`~loe_codec.bench.videos.BenchVideo` at one setting: the
whole clip coded, its bytes (bpp per pixel per frame) and the mean per-frame
PSNR of its decode against the reference frames ``[F, H, W, 3]``.

* ``loe``: :func:`loe_codec.video.encode_video`, settings ``PRESET[/STEPS][@qN|@bppX]``
  (video presets); one fit per clip and preset shared by its rate points (a fit cache).
* ``mlp``: the same with the preset's network as a plain MLP of (at most) equal
  parameters (:func:`~loe_codec.config.mlp_baseline`: every bank 1, width grown), fitted at
  its own learning rate (:data:`MLP_LEARNING_RATE`).
* ``frames``: every frame an independent loe image (:func:`loe_codec.encode`, image
  presets), bytes summed over the frames' files.
* ``x264`` / ``x265``: libx264 / libx265 through PyAV, preset medium, yuv420p, a CRF sweep.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import PRESETS, mlp_baseline
from ..errors import UsageError
from ..files import adopted
from .codecs import Codec, Measurement
from .loe import LoeCodec, LoeSetting, loe_setting
from .videos import BenchVideo, identity, legacy_identity, mean_frame_psnr

if TYPE_CHECKING:
    from ..video_presets import VideoConfig


# The `video` preset's width-40 network as a plain MLP is 108 wide: at lr 2e-2 (the former preset's), and at
# 1e-2, it does not train (carphone: a constant picture, 11.5 dB); at 2e-3 it does (24.8 dB after
# 4000 steps). See benchmarks/README.md.
MLP_LEARNING_RATE = 2e-3


def mlp_video_config(config: VideoConfig) -> VideoConfig:
    """``config`` with a plain MLP of the LoE network's parameters (at :data:`MLP_LEARNING_RATE`); its
    ``max_width`` is that of the MLP matching LoE's widest network, so both have equal parameters at
    every rate :func:`loe_codec.video_presets.blocks_for_rate` sizes them for."""
    codec = mlp_baseline(config.codec, MLP_LEARNING_RATE)
    widest = None
    if config.max_width is not None:
        wide = dataclasses.replace(config.codec, model=dataclasses.replace(config.codec.model, width=config.max_width))
        widest = mlp_baseline(wide).model.width
    return dataclasses.replace(config, codec=codec, max_width=widest)


class LoeVideoCodec(LoeCodec):
    """loe video (or, with ``mlp``, its plain-MLP baseline of equal parameters)."""

    settings = ("video@bpp0.06", "video@bpp0.1", "video@bpp0.16")

    def __init__(self, device: str = "auto", steps: int | None = None, mlp: bool = False,
                 cache: str | os.PathLike | None = None):
        super().__init__(device, steps, cache)
        self.mlp = mlp
        self.name, self.label = ("mlp", "plain MLP") if mlp else ("loe", "loe video")
        as_mlp = f" as a plain MLP of equal parameters at lr {MLP_LEARNING_RATE:g}" if mlp else ""
        self.describe = (f"loe_codec.video.encode_video(src, out.loe, config=<video preset{as_mlp}>, "
                         f"device={self.device!r})"
                         + (f", fitting steps overridden to {steps}" if steps is not None else ""))

    def parse(self, setting: str) -> LoeSetting:
        from ..video_presets import VIDEO_PRESETS

        return LoeSetting.parse(setting, VIDEO_PRESETS, self.name)

    def check_setting(self, setting: str) -> None:
        self.parse(setting)

    def measure(self, video: BenchVideo, setting: str, pixels: np.ndarray | None = None) -> Measurement:
        from ..video import LoeVideo, encode_video
        from ..video_presets import video_preset

        reference = video.pixels() if pixels is None else pixels
        s = self.parse(setting)
        config = video_preset(s.preset)
        if self.mlp:
            config = mlp_video_config(config)
        steps = self.steps if self.steps is not None else s.steps
        with tempfile.TemporaryDirectory(prefix="loe-bench-") as tmp:
            out = Path(tmp) / f"{video.name}.loe"
            t0 = time.perf_counter()
            encode_video(video.path, out, config=config, steps=steps, bpp=s.bpp, quality=s.quality,
                         device=self.device, measure_psnr=False, cache_dir=self.fits, progress=self.progress,
                         audio=False)  # pictures only, as the x264 / x265 files hold
            t1 = time.perf_counter()
            with LoeVideo(out) as clip:
                quality = mean_frame_psnr(clip.iter_frames(device=self.device), reference)
            t2 = time.perf_counter()
            size = out.stat().st_size
        return Measurement.create(video, self.name, setting, size, quality, t1 - t0, t2 - t1)


class FramesCodec(LoeCodec):
    """Every frame coded as an independent loe image (image presets; bytes of all the frames' files)."""

    name = "frames"
    label = "loe image per frame"
    settings = ("fast@q30", "fast@q60")

    def __init__(self, device: str = "auto", steps: int | None = None, cache: str | os.PathLike | None = None):
        super().__init__(device, steps, cache)
        # The PNGs stay while the codec's folder does (the fit cache keys them by path and time): with a
        # cache folder, for later runs.
        self.frames = self.folder / "frames"
        self.describe = (f"loe_codec.encode(frame.png, out.loe, config=loe_config(setting), "
                         f"device={self.device!r}) for every frame, bytes summed")

    def check_setting(self, setting: str) -> None:
        LoeSetting.parse(setting, PRESETS, self.name)

    def frame_files(self, video: BenchVideo, reference: np.ndarray) -> list[Path]:
        """The frames as PNG files, written once per video (the same files for every setting and, with
        a cache folder, every later run on the same file: the folder is named after its identity)."""
        from ..imageio import write_image

        folder = adopted(self.frames / f"{video.name}_{identity(video.path)}",
                         self.frames / f"{video.name}_{legacy_identity(video.path)}")
        paths = [folder / f"{k:06d}.png" for k in range(len(reference))]
        if not folder.is_dir():
            partial = folder.with_name(f".{folder.name}.partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            for path, frame in zip(paths, reference):
                write_image(frame, partial / path.name)
            os.replace(partial, folder)
        return paths

    def measure(self, video: BenchVideo, setting: str, pixels: np.ndarray | None = None) -> Measurement:
        import loe_codec

        reference = video.pixels() if pixels is None else pixels
        config, bpp = self.config(setting), loe_setting(setting)[1]
        size, encode_s, decode_s, decoded = 0, 0.0, 0.0, []
        with tempfile.TemporaryDirectory(prefix="loe-bench-") as tmp:
            files = self.frame_files(video, reference)
            for k, frame in enumerate(files):
                out = Path(tmp) / f"{k}.loe"
                t0 = time.perf_counter()
                loe_codec.encode(frame, out, config=config, bpp=bpp, device=self.device, measure_psnr=False,
                                 cache_dir=self.fits, progress=self._frame_progress(k, len(files)))
                t1 = time.perf_counter()
                with loe_codec.open(out) as img:
                    decoded.append(img.decode(device=self.device))
                decode_s += time.perf_counter() - t1
                encode_s += t1 - t0
                size += out.stat().st_size
        return Measurement.create(video, self.name, setting, size, mean_frame_psnr(decoded, reference),
                                  encode_s, decode_s)

    def _frame_progress(self, frame: int, frames: int):
        """The runner's stage progress with the frame named (each frame's encode has its own stages)."""
        if self.progress is None:
            return None
        outer = self.progress
        return lambda stage, done, total: outer(f"frame {frame + 1}/{frames} {stage}", done, total)


class X26xCodec(Codec):
    """libx264 / libx265 through PyAV (preset medium, yuv420p, .mp4); a setting is a CRF."""

    settings = ("18", "23", "28", "33", "38", "43")

    def __init__(self, library: str):
        self.library = library
        self.name = library.removeprefix("lib")
        self.label = self.name
        self.describe = f"PyAV {library}, preset medium, pix_fmt yuv420p, crf=setting, .mp4"

    def check_setting(self, setting: str) -> None:
        if not (setting.isdigit() and 0 <= int(setting) <= 51):
            raise UsageError(f"{self.name}: a setting is a CRF in 0..51, got {setting!r}")

    def measure(self, video: BenchVideo, setting: str, pixels: np.ndarray | None = None) -> Measurement:
        from ..videoio import VideoSource, write_video

        reference = video.pixels() if pixels is None else pixels
        options = {"crf": setting, "preset": "medium"}
        if self.library == "libx265":
            options["x265-params"] = "log-level=error"
        with tempfile.TemporaryDirectory(prefix="loe-bench-") as tmp:
            out = Path(tmp) / f"{video.name}.mp4"
            t0 = time.perf_counter()
            write_video(iter(reference), out, video.fps, self.library, options)
            t1 = time.perf_counter()
            decoded = list(VideoSource(out).iter_frames())
            t2 = time.perf_counter()
            size = out.stat().st_size
        return Measurement.create(video, self.name, setting, size, mean_frame_psnr(decoded, reference),
                                  t1 - t0, t2 - t1)


VIDEO_CODEC_NAMES = ("loe", "mlp", "frames", "x264", "x265")
DEFAULT_VIDEO_CODECS = ("loe", "x264", "x265")


def make_video_codec(name: str, device: str, steps: int | None, cache: str | os.PathLike | None = None) -> Codec:
    """The video codec called ``name`` (``cache``: the loe codecs' folder for fits and frames, see
    :class:`~loe_codec.bench.loe.LoeCodec`)."""
    if name in ("loe", "mlp"):
        return LoeVideoCodec(device, steps, mlp=name == "mlp", cache=cache)
    if name == "frames":
        return FramesCodec(device, steps, cache)
    if name in ("x264", "x265"):
        return X26xCodec(f"lib{name}")
    raise UsageError(f"unknown video codec {name!r}; choose from {', '.join(VIDEO_CODEC_NAMES)}")
