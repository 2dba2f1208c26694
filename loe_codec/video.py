"""Video: encode a clip into space-time blocks of 3-D LoE networks, decode any frames, region, size and rate.

Example::

    from loe_codec import video

    result = video.encode_video("clip.mp4", "clip.loe", preset="video")
    with video.LoeVideo("clip.loe") as clip:
        frames = clip.decode(frames=(0, 10), region=(0, 0, 64, 48))     # uint8 [10, 48, 64, 3]
        clip.decode_to_file("slow.mp4", fps=clip.fps * 4)               # 4x slow motion at the source rate

The source's first audio stream is kept untouched (:mod:`loe_codec.audio`) and written back beside
decoded frames.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time as _time
import warnings
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterator

import numpy as np

from . import __version__
from .config import CodecConfig
from .decode import TileCache
from .encode import BlobSource, StageProgressFn, overshoot_note, with_channels
from .audio import AudioTrack, AudioWarning, copy_audio
from .errors import UsageError
from .files import check_output_location
from .fitcache import FitCache
from .motion import camera_path, followed_path
from .video_container import VideoHeader, VideoInfo, VideoReader, write_video_codec
from .video_encode import fit_and_pack_video, placeholder_stats, with_config
from .video_presets import VIDEO_PRESETS, VideoConfig, blocks_for_rate, video_preset  # noqa: F401 (public names)
from .video_render import VideoRenderer, VideoRequest, compare
from .videoio import VideoSource, as_rate, check_video_output, write_video

Region = tuple[int, int, int, int]


class AudioDroppedWarning(AudioWarning):
    """The input had audio the `.loe` file does not keep (a second audio stream, or one that cannot be copied)."""


@dataclass(frozen=True)
class VideoEncodeResult:
    """What a video encode produced. ``bpp`` is bits per pixel per frame of the pictures (the file without
    its ``audio_bytes``)."""

    path: str
    bytes: int
    bpp: float
    psnr: float | None
    frames: int
    fps: float
    blocks: int
    audio: str
    seconds: float
    notes: tuple[str, ...] = ()
    """Things the user should know (e.g. a PSNR target beyond what the preset's networks reach)."""
    audio_bytes: int = 0
    motion: str = "none"
    """What the blocks follow: ``"global"`` (the camera path) or ``"none"`` (what ``"auto"`` chose)."""


def bits_per_voxel(size_bytes: int, width: int, height: int, frames: int) -> float:
    """Bits of a file per pixel per frame."""
    return size_bytes * 8.0 / (width * height * frames)


# --- encoding -----------------------------------------------------------------------------------------

def encode_video(source: str | os.PathLike, output: str | os.PathLike, preset: str = "video", *,
                 config: VideoConfig | None = None, steps: int | None = None, tile: int | None = None,
                 seed: int | None = None, chunk: int | None = None, bpp: float | None = None,
                 psnr: float | None = None, quality: int | None = None, device: str = "auto",
                 progress: StageProgressFn | None = None, measure_psnr: bool = True,
                 cache_dir: str | os.PathLike | None = None, resume: bool = False,
                 audio: bool = True, motion: str | None = None) -> VideoEncodeResult:
    """Encode the video at ``source`` into the `.loe` file ``output``.

    ``preset`` names a :data:`VIDEO_PRESETS` entry (or pass a full ``config``);
    ``steps``, ``tile``, ``seed``, ``chunk`` (frames per block) and ``motion`` (``"global"``: fit the
    blocks along the camera's estimated pan; ``"none"``: do not; ``"auto"``: where the camera pans;
    :attr:`VideoConfig.motion`) override it.
    At most one rate choice, as for images (:func:`loe_codec.encode`): ``bpp``
    (the file's bits per pixel per frame; unless ``chunk`` is given, a preset with
    ``bits_per_parameter`` then sizes the blocks for it: :func:`blocks_for_rate`), ``psnr`` (the smallest file whose
    estimated mean per-frame PSNR reaches it) or ``quality`` (0..100, the
    images' ladder of slopes); the slope it resolves to is stored in the
    file's config; ``bpp`` counts the pictures' bits (the file without its audio). With ``audio`` the
    source's first audio stream is copied into the file untouched; further audio streams, or one that
    cannot be copied, are dropped with an :class:`AudioDroppedWarning` (``audio=False``: every audio
    stream is dropped, silently). With ``measure_psnr`` the encoder decodes
    what it wrote and reports the mean per-frame PSNR. ``cache_dir`` keeps every fitted batch
    there, with snapshots of the batch being fitted (as for images): an encode of the same clip at
    another rate skips the fits, a killed one run again goes on where it stopped. ``resume`` does that
    with a folder next to the output (``<output>.fits``), removed once the file is written.
    """
    from .api import rate_choice, resolve_device, resume_cache

    started = _time.perf_counter()
    vcfg = config if config is not None else video_preset(preset)
    for name, value in (("steps", steps), ("tile", tile), ("seed", seed), ("chunk", chunk)):
        if value is not None and value < (1 if name == "chunk" else 0):
            raise UsageError(f"{name} must be >= {1 if name == 'chunk' else 0}, got {value}")
    vcfg = vcfg.with_overrides(steps=steps, tile=tile, seed=seed, chunk=chunk, motion=motion)
    codec_cfg, target = rate_choice(vcfg.codec, bpp, psnr, quality)
    vcfg = dataclasses.replace(vcfg, codec=codec_cfg)
    if vcfg.codec.model.dims != 3:
        raise UsageError(f"video needs a 3-D model (dims=3), the config has dims={vcfg.codec.model.dims}")
    output = str(output)
    if not output.endswith(".loe"):
        raise UsageError(f"{output}: the output of encode must end in .loe")
    check_output_location(output)
    device = resolve_device(device)
    src = VideoSource(source)
    if bpp is not None and chunk is None and vcfg.bits_per_parameter is not None:
        vcfg = blocks_for_rate(vcfg, src.width, src.height, src.frames, bpp)
    track = _copied_audio(src) if audio and src.audio_streams else None
    config_ = with_channels(vcfg.codec, src.channels)
    info = VideoInfo(src.width, src.height, src.frames, src.fps.numerator, src.fps.denominator,
                     audio="dropped" if src.audio_streams else "none")
    header = VideoHeader(info, config_, vcfg.time, [], placeholder_stats(measure_psnr),
                         encoder=f"loe-codec {__version__}")
    if track is not None:
        header = header.with_audio(track.describe())
    if vcfg.motion != "none":
        stage = (lambda done, total: progress("motion", done, total)) if progress is not None else None
        path = followed_path(vcfg.motion, camera_path(src.iter_frames(), src.frames, stage),
                             [header.grid.time.window(c) for c in header.grid.time.chunks()])
        if path is not None:
            header = header.with_motion(path)
    grid = header.grid
    notes: list[str] = []
    if src.irregular_intervals is not None:
        shortest, longest = src.irregular_intervals
        notes.append(f"the source's frame rate varies (frames {1000 * shortest:.4g} to {1000 * longest:.4g} ms "
                     f"apart); the file holds its {src.frames} frames at a constant {float(src.fps):.6g} fps")
    cache_dir, temporary_cache = resume_cache(output, cache_dir, resume)
    cache = FitCache(cache_dir) if cache_dir is not None else None
    blobs, config_ = fit_and_pack_video(src, header, device, progress, target, notes, cache, vcfg.block_sizes)
    header = with_config(header, config_, {})
    psnr = None
    if measure_psnr:
        stage = (lambda done, total: progress("measure", done, total)) if progress is not None else None
        renderer = VideoRenderer(TileCache(BlobSource(config_, blobs), len(grid.space) * 3), grid, header.motion)
        errors = compare(renderer, grid, src, device, stage)
        psnr = errors.psnr()
        header.stats = {k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v)
                        for k, v in errors.summary().items() if k != "psnr_per_frame"}
    size = write_video_codec(output, header, blobs, None if track is None else track.data)
    if temporary_cache:
        shutil.rmtree(cache_dir, ignore_errors=True)
    sound = 0 if track is None else len(track.data)
    bpp_ = bits_per_voxel(size - sound, src.width, src.height, src.frames)
    header_bpp = bits_per_voxel(size - sound - sum(b.numel() for b in blobs), src.width, src.height, src.frames)
    note = overshoot_note(target, bpp_, header_bpp, config_.preset, "video")
    return VideoEncodeResult(output, size, bpp_, psnr,
                             src.frames, float(src.fps), len(grid), header.source.audio,
                             _time.perf_counter() - started, tuple(notes + ([note] if note else [])), sound,
                             "none" if header.motion is None else "global")


def _copied_audio(src: VideoSource) -> AudioTrack | None:
    """The source's first audio stream, copied; None (with an :class:`AudioDroppedWarning`) if it cannot be."""
    try:
        track = copy_audio(src.path, src.start_time)
    except Exception as exc:  # a codec Matroska cannot hold, a damaged stream: the pictures still go on
        warnings.warn(f"{src.path}: its audio cannot be copied ({exc}); it is dropped", AudioDroppedWarning,
                      stacklevel=3)
        return None
    if src.audio_streams > 1:
        warnings.warn(f"{src.path}: only the first of its {src.audio_streams} audio streams is kept",
                      AudioDroppedWarning, stacklevel=3)
    return track


# --- decoding -----------------------------------------------------------------------------------------


class LoeVideo:
    """An opened video `.loe` file. Reads blocks lazily; use as a context manager or call :meth:`close`."""

    picture = "frame"  # what a region lies in, for messages

    def __init__(self, path: str | os.PathLike):
        self.reader = VideoReader(path)
        self.header = self.reader.header
        self.grid = self.header.grid
        self.width, self.height = self.header.source.width, self.header.source.height
        self.channels = self.header.source.channels
        self.frames = self.header.source.frames
        self.fps = self.header.source.fps
        self.duration = self.header.source.duration
        self._renderer = VideoRenderer(TileCache(self.reader, max(64, 3 * len(self.grid.space))), self.grid,
                                       self.header.motion)

    @property
    def config(self) -> CodecConfig:
        return self.header.config

    def request(self, frames: tuple[int, int] | None = None, time: tuple[float, float] | None = None,
                region: Region | None = None, scale: float | None = None, width: int | None = None,
                height: int | None = None, fps: float | None = None) -> VideoRequest:
        """Validate a selection: ``frames=(a, b)`` (end exclusive) or ``time=(s, e)`` seconds (default: all),
        a region/scale/size as for images, and an output frame rate ``fps`` (default: the source's).

        Output frame ``j`` at rate ``F`` shows the video at ``s + (j + 0.5) / F`` seconds (the network is
        continuous in time, so any rate works: slow motion, frame-rate conversion).
        """
        from .api import LoeImage

        space = LoeImage.request(self, region, scale, width, height)  # only uses self.width / self.height
        if frames is not None and time is not None:
            raise UsageError("give either a frame range or a time range, not both")
        if frames is not None:
            a, b = frames
            if not (0 <= a < b <= self.frames):
                raise UsageError(f"frames {a}:{b} must satisfy 0 <= A < B <= {self.frames} (end exclusive)")
            start, stop = Fraction(a) / self.fps, Fraction(b) / self.fps
        elif time is not None:
            s, e = time
            if not (math.isfinite(s) and math.isfinite(e) and 0 <= s < e <= self.duration + 1e-9):
                raise UsageError(f"time {s}:{e} must satisfy 0 <= S < E <= {self.duration:.6g} seconds")
            start, stop = Fraction(s), min(Fraction(e), Fraction(self.frames) / self.fps)
        else:
            start, stop = Fraction(0), Fraction(self.frames) / self.fps
        if fps is not None and not (isinstance(fps, (int, float, Fraction)) and math.isfinite(fps) and fps > 0):
            raise UsageError(f"fps must be a number > 0, got {fps}")
        rate = as_rate(fps) if fps is not None else self.fps
        count = max(1, round((stop - start) * rate))
        if count > 1 << 20:
            raise UsageError(f"{count} output frames are too many")
        times = tuple(min(float((start + (j + Fraction(1, 2)) / rate) * self.fps), self.frames - 1e-6)
                      for j in range(count))
        return VideoRequest(space, times, rate, start, stop)

    def iter_frames(self, device: str = "auto", progress: Callable[[int, int], None] | None = None,
                    **selection) -> Iterator[np.ndarray]:
        """Decoded frames one by one (uint8 ``[h, w, C]``); ``selection`` as for :meth:`request`."""
        from .api import resolve_device

        req = self.request(**selection)
        return self._renderer.iter_frames(req, resolve_device(device), progress)

    def decode(self, device: str = "auto", progress: Callable[[int, int], None] | None = None,
               **selection) -> np.ndarray:
        """All selected frames as uint8 ``[n, h, w, C]`` (in memory: use :meth:`decode_to_file` for long clips)."""
        return np.stack(list(self.iter_frames(device, progress, **selection)))

    def decode_to_file(self, output: str | os.PathLike, codec: str | None = None, device: str = "auto",
                       progress: Callable[[int, int], None] | None = None, audio: bool = True,
                       **selection) -> tuple[int, int, int]:
        """Decode and write a video (container from the extension) or a ``%d`` image sequence, streaming.

        With ``audio``, the file's audio of the selected time span goes beside the frames (an image
        sequence, or a container that cannot hold the audio's codec, gets none: an
        :class:`~loe_codec.audio.AudioWarning`). Returns ``(width, height, frames)``.
        """
        check_video_output(output, codec)
        req = self.request(**selection)
        from .api import resolve_device

        track = self.reader.audio() if audio else None
        sound = None if track is None else (track, float(req.start), float(req.stop))
        count = write_video(self._renderer.iter_frames(req, resolve_device(device), progress), output, req.fps,
                            codec, audio=sound)
        return req.space.out_width, req.space.out_height, count

    def info(self) -> dict:
        """Dimensions, frames, frame rate, blocks, model, bytes (and what they hold) and bits per pixel per frame."""
        from .api import rate_split, units_kept

        cfg = self.config
        sound = self.reader.audio_bytes()
        size = self.reader.size_bytes - sound  # the pictures' bytes
        payload = self.reader.payload_bytes()
        g = self.grid
        units = [self.reader.tile_units(k) for k in range(len(g))] if cfg.quant.prunes_units else None
        return {
            "path": str(self.reader.path),
            "kind": "video",
            "format_version": self.header.version,
            "encoder": self.header.encoder,
            "width": self.width,
            "height": self.height,
            "channels": self.channels,
            "bit_depth": self.header.source.bit_depth,
            "frames": self.frames,
            "fps": float(self.fps),
            "fps_fraction": f"{self.fps.numerator}/{self.fps.denominator}",
            "duration": self.duration,
            "audio": self.header.source.audio,
            **({} if self.header.audio_track is None else {"audio_track": self.header.audio_track}),
            **({} if self.header.motion is None else {
                "motion": "global",
                "camera_path_pixels": [round(float(v), 2) for v in self.header.motion.offsets[-1]]}),
            "blocks": {"count": len(g), "cols": g.space.cols, "rows": g.space.rows, "chunks": len(g.time),
                       "tile_size": cfg.tile.size, "tile_margin": cfg.tile.margin,
                       "chunk_frames": self.header.time.chunk, "time_margin": self.header.time.margin},
            "preset": cfg.preset,
            "model": {**cfg.to_dict()["model"], "parameters_per_block": cfg.model.parameter_count()},
            "fit": cfg.to_dict()["fit"],
            "quantization": cfg.to_dict()["quant"],
            "bytes": size + sound,
            "audio_bytes": sound,
            "payload_bytes": payload,
            "header_bytes": size - payload,
            "rate_split": {**rate_split(cfg, len(g), payload, size, units), **({"audio": sound} if sound else {})},
            **({} if units is None else {"units_kept": units_kept(cfg, units)}),
            "bpp": bits_per_voxel(size, self.width, self.height, self.frames),
            "stats": self.header.stats,
        }

    def evaluate(self, reference: str | os.PathLike, device: str = "auto",
                 progress: Callable[[int, int], None] | None = None) -> dict:
        """bpp (per pixel per frame; ``bytes``: the pictures', without the audio) and mean per-frame PSNR of the
        full decode against the ``reference`` video,
        with the flicker (chunk border) and seam measures of :class:`~loe_codec.video_render.VideoErrors`."""
        from .api import resolve_device

        ref = VideoSource(reference)
        if (ref.width, ref.height, ref.frames) != (self.width, self.height, self.frames):
            raise UsageError(f"{reference} is {ref.width}x{ref.height}, {ref.frames} frames; the codec holds "
                             f"{self.width}x{self.height}, {self.frames} frames")
        errors = compare(self._renderer, self.grid, ref, resolve_device(device), progress)
        sound = self.reader.audio_bytes()
        size = self.reader.size_bytes - sound  # the pictures' bytes
        return {"bytes": size, "audio_bytes": sound, "frames": self.frames, "fps": float(self.fps),
                "bpp": bits_per_voxel(size, self.width, self.height, self.frames), **errors.summary(),
                "seam_band_px": errors.spatial.half_width}

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> "LoeVideo":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_video(path: str | os.PathLike) -> LoeVideo:
    """Open a video `.loe` file for decoding."""
    return LoeVideo(path)
