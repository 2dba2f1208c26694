"""Video: encode a clip into space-time blocks of 3-D LoE networks, decode any frames, region, size and rate.

Example::

    from loe_codec import video

    result = video.encode_video("clip.mp4", "clip.loe", preset="video")
    with video.LoeVideo("clip.loe") as clip:
        frames = clip.decode(frames=(0, 10), region=(0, 0, 64, 48))     # uint8 [10, 48, 64, 3]
        clip.decode_to_file("slow.mp4", fps=clip.fps * 4)               # 4x slow motion at the source rate
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
import torch

from . import __version__
from .config import CodecConfig, FitConfig, ModelConfig, QuantConfig, TileConfig
from .decode import BLOCK, DecodeRequest, TileCache, _axis_positions, support
from .encode import BlobSource, StageProgressFn, with_channels
from .errors import UsageError
from .files import check_output_location
from .fitcache import FitCache
from .metrics import ErrorAccumulator, psnr_from_mse
from .video_container import TimeConfig, VideoHeader, VideoInfo, VideoReader, write_video_codec
from .video_encode import fit_and_pack_video, placeholder_stats, with_config
from .tiling import TileGrid
from .video_tiling import SpaceTimeGrid
from .videoio import VideoSource, as_rate, check_video_output, write_video

MAX_SAMPLES_PER_GROUP = 1 << 18
Region = tuple[int, int, int, int]


class AudioDroppedWarning(UserWarning):
    """The input had audio; a `.loe` video holds pictures only."""


@dataclass(frozen=True)
class VideoConfig:
    """A video encode: the codec config (3-D model, fitting, quantization, spatial tiles) and the time chunks."""

    codec: CodecConfig
    time: TimeConfig = TimeConfig()
    bits_per_parameter: float | None = None
    """With a ``bpp`` target and no chunk asked for: frames per block chosen so that every block's share
    of the bits is about this many bits per network parameter, with a narrower network where even the
    longest block falls short and a wider one (up to ``max_width``) where it has bits to spare
    (:func:`blocks_for_rate`); None: always ``time.chunk`` and the model."""
    max_width: int | None = None
    """The widest network :func:`blocks_for_rate` may choose (None: the model's width)."""

    def __post_init__(self) -> None:
        if self.bits_per_parameter is not None and not self.bits_per_parameter > 0:
            raise UsageError(f"bits_per_parameter must be > 0, got {self.bits_per_parameter}")
        if self.max_width is not None and self.max_width < self.codec.model.width:
            raise UsageError(f"max_width ({self.max_width}) must be at least the model's width "
                             f"({self.codec.model.width})")

    def with_overrides(self, *, steps: int | None = None, tile: int | None = None, seed: int | None = None,
                       chunk: int | None = None) -> "VideoConfig":
        cfg = dataclasses.replace(self, codec=self.codec.with_overrides(steps=steps, tile=tile, seed=seed))
        if chunk is not None:
            margin = min(cfg.time.margin, max(0, (chunk - 1) // 2))
            cfg = dataclasses.replace(cfg, time=TimeConfig(chunk=chunk, margin=margin))
        return cfg


def _video_preset(name: str, model: ModelConfig, fit: FitConfig, tile: TileConfig, time: TimeConfig,
                  bits_per_parameter: float | None = None, max_width: int | None = None,
                  qat_steps: int | None = None) -> VideoConfig:
    # The images' quality-50 slope and (unless given) 1/16 of the fit's steps of quantization-aware
    # fine-tuning (not tuned on video yet).
    qat = fit.steps // 16 if qat_steps is None else qat_steps
    quant = QuantConfig(slope=1e-3, qat_steps=qat, qat_learning_rate=1e-3)
    return VideoConfig(CodecConfig(model=model, fit=fit, quant=quant, tile=tile, preset=name), time,
                       bits_per_parameter, max_width)


# The network of the `video` and `video-best` presets (the rate rule widens it).
_VIDEO_MODEL = ModelConfig(dims=3, width=40, banks=(1, 2, 2, 2, 1), pe_frequencies=6, time_banks=(1, 1, 1, 1, 1))

# Measured on carphone (176x144, 120 frames) on a 2-core CPU: see benchmarks/README.md.
VIDEO_PRESETS: dict[str, VideoConfig] = {
    "video-fast": _video_preset(
        "video-fast", ModelConfig(dims=3, width=16, banks=(1, 2, 2, 1)),
        FitConfig(steps=300, samples_per_tile=2048, learning_rate=3e-2), TileConfig(size=256, margin=4),
        TimeConfig(chunk=8, margin=2)),
    # On carphone (whole clip, 2-core CPU; benchmarks/README.md). Longer blocks win at low rates and more
    # parameters at high rates, but below ~4 bits per parameter the quantized networks collapse (two
    # 60-frame width-40 blocks: 24.07 dB at 0.06 bpp; one 120-frame block: 28.99), hence the blocks follow
    # the rate: about 5 bits per parameter, by the width (narrower at low rates; 56 at high rates, where
    # one 120-frame width-56 block reached 30.34 dB at 0.1 bpp and the width-40 network 29.88), then by
    # the frames per block. 32 000 steps at lr 1e-2 beat 16 000 at 2e-2 (width 40, one block: 29.09 /
    # 29.88 dB vs 29.00 / 29.44 at 0.06 / 0.1 bpp; width 56 at 1e-2: 31.39 vs 30.73 at 0.16); width 56
    # trained best at 1e-2 (16 000 steps, 0.16 bpp: 30.73 dB; 5e-3: 30.29; 2e-2: ~27), width 72 gained
    # nothing (30.81 dB at 0.16 bpp, 29.85 at 0.13 where width 56 reached 30.61); at 32 000 steps lr
    # 2e-2 lost 1-1.6 dB (two width-40 blocks: 29.64 dB at 0.16 bpp). Banks over space only
    # (time_banks 1: each bank holds its block's whole time span, half the parameters per width) won
    # everywhere tried: carphone 0.06 bpp 29.96 dB (29.04), Big Buck Bunny crops +0.3-1.5 dB. With them a
    # wider network pays again: max_width 72 (carphone 0.1 bpp, one width-69 block: 31.57 dB; 30.54 with
    # max_width 56), the rate rule cutting blocks shorter past 6 bits per parameter. 512-pixel tiles (one
    # wider network over more pixels, as in the LoE paper) beat 256 on Big Buck Bunny's first 60 frames
    # (6 blocks instead of 15: 26.58 / 28.69 / 29.89 dB at 0.01 / 0.02 / 0.03 bpp, +0.02 / +0.44 / +0.58)
    # and its crops (sky +1.36 dB, grass +0.15 at 0.02 bpp); carphone is one tile either way.
    "video": _video_preset(
        "video", _VIDEO_MODEL, FitConfig(steps=32000, samples_per_tile=4096, learning_rate=1e-2),
        TileConfig(size=512, margin=4), TimeConfig(chunk=60, margin=2), bits_per_parameter=5.0, max_width=72),
    # `video` with 640-pixel tiles, networks up to width 110 and twice the fit steps (the QAT steps stay
    # 2000, as measured): on Big Buck Bunny's first 60 frames (4 blocks of 640x360x60) 27.17 / 29.62 / 30.48
    # dB at 0.01 / 0.02 / 0.03 bpp (x264 medium 28.24 / 32.04 / 34.03; `video`: 26.58 / 28.69 / 29.89;
    # 640-pixel tiles at 32 000 steps: 28.75 / 30.36 at 0.02 / 0.03: the width-81 networks of 0.03 bpp gain
    # little from the steps). Blocks that large are far from converged at 32 000 steps of 4096 samples (each
    # voxel sampled ~9.5 times). About twice the encode time of `video`; not measured on carphone (one tile
    # either way, but wider networks at high rates). Samples drawn where the error is (loe_codec.sampling)
    # gave 27.30 / 29.32 / 31.09 dB at 0.01 / 0.02 / 0.03 bpp (+0.13 / -0.30 / +0.61), on a 640x360 block of
    # it -0.35 / +0.36 / -0.60 at 0.02 / 0.03 / 0.05 bpp and -0.09 with another seed (which moved a uniform
    # fit by 0.23): no consistent gain for 12% more encode time, so uniform samples.
    "video-best": _video_preset(
        "video-best", _VIDEO_MODEL, FitConfig(steps=64000, samples_per_tile=4096, learning_rate=1e-2),
        TileConfig(size=640, margin=4), TimeConfig(chunk=60, margin=2), bits_per_parameter=5.0, max_width=110,
        qat_steps=2000),
}


AUTO_CHUNKS = (16, 120)  # the frames per block :func:`blocks_for_rate` chooses from
MIN_AUTO_WIDTH = 8  # the narrowest network it falls back to
ENOUGH_BITS = 0.75  # a network is kept while its blocks get this fraction of their bits per parameter
MOST_BITS = 1.2  # blocks are cut shorter while even the widest network would get more than this fraction


def blocks_for_rate(config: VideoConfig, width: int, height: int, frames: int, bpp: float) -> VideoConfig:
    """``config`` with its blocks sized for ``bpp`` (bits per pixel per frame) on a ``width x height x
    frames`` video: about ``config.bits_per_parameter`` bits per network parameter in every block.

    The fewest near-equal blocks of at most ``AUTO_CHUNKS[1]`` frames first, each with the widest network
    (up to ``config.max_width``) that gets the target bits per parameter; the model's width where that
    is narrower but the model still gets :data:`ENOUGH_BITS` of the target; narrower (down to
    :data:`MIN_AUTO_WIDTH`) where not: below ~4 bits per parameter coarse steps wreck the networks
    (carphone at 0.03 bpp, one 120-frame block: width 26 reached 27.08 dB, width 40 23.68). The blocks
    are then cut shorter (one more block at a time, down to ``AUTO_CHUNKS[0]`` frames) while even the
    widest network would get more than :data:`MOST_BITS` of the target: past ~6 bits per parameter finer
    steps buy less than more networks (carphone at 0.16 bpp: one 120-frame width-72 block, 7.4 bits per
    parameter, 32.31 dB; two 60-frame width-56 blocks, 6 bits, 32.91 dB), while at the target a wider
    network beats more blocks (0.1 bpp: one width-69 block, 5 bits, 31.57 dB; two width-56 blocks,
    3.8 bits, 30.54 dB). Rates giving the same blocks share their fits."""
    codec = config.codec
    tiles = len(TileGrid(width, height, codec.tile.size, codec.tile.margin))
    pixels_per_block_frame = width * height / tiles
    target = config.bits_per_parameter
    widest = config.max_width or codec.model.width  # never narrower than the model (VideoConfig checks)
    chunks = math.ceil(frames / AUTO_CHUNKS[1])
    while True:
        length = math.ceil(frames / chunks)
        affordable = bpp * pixels_per_block_frame * length / target  # parameters at the target's bits each
        model = _network_for(codec.model, affordable, widest)
        if affordable <= model.parameter_count() * MOST_BITS or math.ceil(frames / (chunks + 1)) < AUTO_CHUNKS[0]:
            break
        chunks += 1
    sized = config.with_overrides(chunk=length)
    return dataclasses.replace(sized, codec=dataclasses.replace(sized.codec, model=model))


def _network_for(model: ModelConfig, affordable: float, widest: int) -> ModelConfig:
    """The widest ``model`` (up to ``widest``) of at most ``affordable`` parameters; ``model`` itself where
    that is narrower but ``model`` has :data:`ENOUGH_BITS` of them."""
    fitting = model.widest_within(affordable, MIN_AUTO_WIDTH, widest)
    if fitting.width < model.width and model.parameter_count() * ENOUGH_BITS <= affordable:
        return model
    return fitting


def video_preset(name: str) -> VideoConfig:
    """The named video preset (``video-fast``, ``video`` or ``video-best``)."""
    try:
        return VIDEO_PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown video preset {name!r}; choose one of {', '.join(VIDEO_PRESETS)}") from None


@dataclass(frozen=True)
class VideoEncodeResult:
    """What a video encode produced. ``bpp`` is bits per pixel per frame."""

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


def bits_per_voxel(size_bytes: int, width: int, height: int, frames: int) -> float:
    """Bits of a file per pixel per frame."""
    return size_bytes * 8.0 / (width * height * frames)


# --- encoding -----------------------------------------------------------------------------------------

def encode_video(source: str | os.PathLike, output: str | os.PathLike, preset: str = "video", *,
                 config: VideoConfig | None = None, steps: int | None = None, tile: int | None = None,
                 seed: int | None = None, chunk: int | None = None, bpp: float | None = None,
                 psnr: float | None = None, quality: int | None = None, device: str = "auto",
                 progress: StageProgressFn | None = None, measure_psnr: bool = True,
                 cache_dir: str | os.PathLike | None = None, resume: bool = False) -> VideoEncodeResult:
    """Encode the video at ``source`` into the `.loe` file ``output``.

    ``preset`` names a :data:`VIDEO_PRESETS` entry (or pass a full ``config``);
    ``steps``, ``tile``, ``seed`` and ``chunk`` (frames per block) override it.
    At most one rate choice, as for images (:func:`loe_codec.encode`): ``bpp``
    (the file's bits per pixel per frame; unless ``chunk`` is given, a preset with
    ``bits_per_parameter`` then sizes the blocks for it: :func:`blocks_for_rate`), ``psnr`` (the smallest file whose
    estimated mean per-frame PSNR reaches it) or ``quality`` (0..100, the
    images' ladder of slopes); the slope it resolves to is stored in the
    file's config. Audio is not coded: an input with audio gives an
    :class:`AudioDroppedWarning`. With ``measure_psnr`` the encoder decodes
    what it wrote and reports the mean per-frame PSNR. ``cache_dir`` keeps every fitted batch
    there (as for images): an encode of the same clip at another rate skips the fits. ``resume``
    does that with a folder next to the output (``<output>.fits``), removed once the file is written.
    """
    from .api import rate_choice, resolve_device, resume_cache

    started = _time.perf_counter()
    vcfg = config if config is not None else video_preset(preset)
    for name, value in (("steps", steps), ("tile", tile), ("seed", seed), ("chunk", chunk)):
        if value is not None and value < (1 if name == "chunk" else 0):
            raise UsageError(f"{name} must be >= {1 if name == 'chunk' else 0}, got {value}")
    vcfg = vcfg.with_overrides(steps=steps, tile=tile, seed=seed, chunk=chunk)
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
    audio = "dropped" if src.audio_streams else "none"
    if src.audio_streams:
        warnings.warn(f"{src.path}: audio is not coded; its {src.audio_streams} audio stream(s) are dropped",
                      AudioDroppedWarning, stacklevel=2)
    config_ = with_channels(vcfg.codec, src.channels)
    info = VideoInfo(src.width, src.height, src.frames, src.fps.numerator, src.fps.denominator, audio=audio)
    header = VideoHeader(info, config_, vcfg.time, [], placeholder_stats(measure_psnr),
                         encoder=f"loe-codec {__version__}")
    grid = header.grid
    notes: list[str] = []
    cache_dir, temporary_cache = resume_cache(output, cache_dir, resume)
    cache = FitCache(cache_dir) if cache_dir is not None else None
    blobs, config_ = fit_and_pack_video(src, header, device, progress, target, notes, cache)
    header = with_config(header, config_, {})
    psnr = None
    if measure_psnr:
        stage = (lambda done, total: progress("measure", done, total)) if progress is not None else None
        renderer = VideoRenderer(TileCache(BlobSource(config_, blobs), len(grid.space) * 3), grid)
        errors = compare(renderer, grid, src, device, stage)
        psnr = errors.psnr()
        header.stats = {k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v)
                        for k, v in errors.summary().items() if k != "psnr_per_frame"}
    size = write_video_codec(output, header, blobs)
    if temporary_cache:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return VideoEncodeResult(output, size, bits_per_voxel(size, src.width, src.height, src.frames), psnr,
                             src.frames, float(src.fps), len(grid), audio, _time.perf_counter() - started,
                             tuple(notes))


# --- decoding -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VideoRequest:
    """A spatial request, rendered at time positions ``times`` (source frame units, frame ``f`` at ``f + 0.5``)."""

    space: DecodeRequest
    times: tuple[float, ...]
    fps: Fraction


class VideoRenderer:
    """Evaluates the blocks of a :class:`SpaceTimeGrid` at any output pixels and times."""

    def __init__(self, cache: TileCache, grid: SpaceTimeGrid):
        self.cache = cache
        self.grid = grid

    def frame_groups(self, req: VideoRequest) -> int:
        """Output frames rendered together (bounded sample count per pass)."""
        kx, ky = req.space.supersample
        per_frame = min(BLOCK, req.space.out_width) * kx * min(BLOCK, req.space.out_height) * ky
        return max(1, MAX_SAMPLES_PER_GROUP // per_frame)

    def iter_frames(self, req: VideoRequest, device: str | torch.device = "cpu",
                    progress: Callable[[int, int], None] | None = None) -> Iterator[np.ndarray]:
        """Yield the output frames in order, uint8 ``[out_height, out_width, C]``."""
        device = torch.device(device)
        sp = req.space
        group = self.frame_groups(req)
        channels = self.cache.config.model.out_channels
        n = len(req.times)
        for start in range(0, n, group):
            times = torch.tensor(req.times[start:start + group], dtype=torch.float64)
            out = np.zeros((times.numel(), sp.out_height, sp.out_width, channels), dtype=np.uint8)
            for oy in range(0, sp.out_height, BLOCK):
                for ox in range(0, sp.out_width, BLOCK):
                    bw, bh = min(BLOCK, sp.out_width - ox), min(BLOCK, sp.out_height - oy)
                    out[:, oy:oy + bh, ox:ox + bw] = self.render(sp, times, ox, oy, bw, bh, device)
            yield from out
            if progress is not None:
                progress(min(n, start + group), n)

    def render(self, req: DecodeRequest, times: torch.Tensor, ox: int, oy: int, bw: int, bh: int,
               device: torch.device) -> np.ndarray:
        """Output pixels ``[oy, oy+bh) x [ox, ox+bw)`` of ``req`` at time positions ``times``: uint8 ``[nt, bh, bw, C]``."""
        grid = self.grid
        kx, ky = req.supersample
        xs = _axis_positions(req.x, req.width, req.out_width, ox, bw, kx)
        ys = _axis_positions(req.y, req.height, req.out_height, oy, bh, ky)
        tiles = grid.space.tiles_touching(float(xs[0]), float(ys[0]), float(xs[-1]) + 1e-6, float(ys[-1]) + 1e-6)
        chunks = grid.time.touching(float(times.min()), float(times.max()) + 1e-6)
        blocks, parts = [], []
        for chunk in chunks:
            wt = grid.time.weight(chunk, times)
            frames = support(wt)
            t0, te = grid.time.domain(chunk)
            for t in tiles:
                wx, wy = grid.space.weight_x(t, xs), grid.space.weight_y(t, ys)
                cols, rows = support(wx), support(wy)
                dx, dy, ex, ey = grid.space.domain(t)
                axes = [(xs[cols] - dx) / ex, (ys[rows] - dy) / ey, (times[frames] - t0) / te]
                if any(a.numel() == 0 for a in axes):
                    continue
                weight = wt[frames].view(-1, 1, 1) * wy[rows].view(1, -1, 1) * wx[cols].view(1, 1, -1)
                parts.append((len(blocks), (frames, rows, cols), [a.float().to(device) for a in axes],
                              weight.float().to(device)))
                blocks.append(grid.block(t, chunk).index)
        channels = self.cache.config.model.out_channels
        acc = torch.zeros(times.numel(), ys.numel(), xs.numel(), channels, dtype=torch.float32, device=device)
        if parts:
            model = self.cache.model(blocks, device)
            for local, spans, axes, weight in parts:
                acc[spans] += model.forward_grid(local, axes) * weight.unsqueeze(-1)
        acc = acc.view(times.numel(), bh, ky, bw, kx, channels).mean(dim=(2, 4))
        return torch.round((acc + 0.5).clamp(0.0, 1.0) * 255.0).to(torch.uint8).cpu().numpy()


class VideoErrors:
    """Per-frame squared error of a decode against its source, with flicker and seam measures.

    * per-frame PSNR (the mean is the usual video quality figure);
    * frames near an interior chunk border (within the time margin) vs the other frames;
    * the temporal-difference error ``(d[f+1]-d[f]) - (r[f+1]-r[f])`` on frame pairs that straddle a chunk
      border vs all other pairs (a jump at a border shows here as a larger error);
    * spatial tile seams vs tile interiors, over all frames (:class:`~loe_codec.metrics.ErrorAccumulator`).
    """

    def __init__(self, grid: SpaceTimeGrid):
        self.grid = grid
        self.frame_mse: list[float] = []
        self.spatial = ErrorAccumulator(grid.space)
        self.pair_sse = [0.0, 0.0]  # [interior pairs, pairs straddling a chunk border]
        self.pair_count = [0, 0]
        self._prev: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, decoded: np.ndarray, reference: np.ndarray) -> None:
        """Add the next full frame (both uint8 ``[H, W, C]``)."""
        d, r = decoded.astype(np.float64), reference.astype(np.float64)
        self.frame_mse.append(float(np.mean((d - r) ** 2)))
        self.spatial.add(0, 0, decoded, reference)
        f = len(self.frame_mse) - 1
        if self._prev is not None:
            dd = (d - self._prev[0]) - (r - self._prev[1])
            k = 1 if f in self.grid.time.edges[1:-1] else 0
            self.pair_sse[k] += float(np.sum(dd ** 2))
            self.pair_count[k] += dd.size
        self._prev = (d, r)

    def psnr(self) -> float:
        """Mean per-frame PSNR (dB)."""
        return float(np.mean([psnr_from_mse(m) for m in self.frame_mse]))

    def _mean_psnr(self, border: bool) -> float | None:
        vals = [psnr_from_mse(m) for f, m in enumerate(self.frame_mse) if self.grid.time.near_border(f) == border]
        return float(np.mean(vals)) if vals else None

    def summary(self) -> dict:
        rms = [math.sqrt(s / c) if c else None for s, c in zip(self.pair_sse, self.pair_count)]
        per_frame = [psnr_from_mse(m) for m in self.frame_mse]
        return {
            "psnr": self.psnr(),
            "psnr_min_frame": float(min(per_frame)),
            "psnr_chunk_borders": self._mean_psnr(True),
            "psnr_chunk_interiors": self._mean_psnr(False),
            "temporal_diff_rmse_chunk_borders": rms[1],
            "temporal_diff_rmse_interiors": rms[0],
            "psnr_seams": self.spatial.psnr_seams(),
            "psnr_interior": self.spatial.psnr_interior(),
            "psnr_per_frame": per_frame,
        }


def compare(renderer: VideoRenderer, grid: SpaceTimeGrid, reference: VideoSource, device: str,
            progress: Callable[[int, int], None] | None = None) -> VideoErrors:
    """Decode every frame at scale 1 and accumulate its error against ``reference`` (both streamed)."""
    s = grid.space
    req = VideoRequest(DecodeRequest(0, 0, s.width, s.height, s.width, s.height),
                       tuple(f + 0.5 for f in range(grid.time.frames)), Fraction(1))
    errors = VideoErrors(grid)
    for decoded, ref in zip(renderer.iter_frames(req, device, progress), reference.iter_frames()):
        errors.add(decoded, ref)
    return errors


class LoeVideo:
    """An opened video `.loe` file. Reads blocks lazily; use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | os.PathLike):
        self.reader = VideoReader(path)
        self.header = self.reader.header
        self.grid = self.header.grid
        self.width, self.height = self.header.source.width, self.header.source.height
        self.channels = self.header.source.channels
        self.frames = self.header.source.frames
        self.fps = self.header.source.fps
        self.duration = self.header.source.duration
        self._renderer = VideoRenderer(TileCache(self.reader, max(64, 3 * len(self.grid.space))), self.grid)

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
        return VideoRequest(space, times, rate)

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
                       progress: Callable[[int, int], None] | None = None, **selection) -> tuple[int, int, int]:
        """Decode and write a video (container from the extension) or a ``%d`` image sequence, streaming.

        Returns ``(width, height, frames)``.
        """
        check_video_output(output, codec)
        req = self.request(**selection)
        from .api import resolve_device

        count = write_video(self._renderer.iter_frames(req, resolve_device(device), progress), output, req.fps,
                            codec)
        return req.space.out_width, req.space.out_height, count

    def info(self) -> dict:
        """Dimensions, frames, frame rate, blocks, model, bytes (and what they hold) and bits per pixel per frame."""
        from .api import rate_split, units_kept

        cfg = self.config
        size = self.reader.size_bytes
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
            "blocks": {"count": len(g), "cols": g.space.cols, "rows": g.space.rows, "chunks": len(g.time),
                       "tile_size": cfg.tile.size, "tile_margin": cfg.tile.margin,
                       "chunk_frames": self.header.time.chunk, "time_margin": self.header.time.margin},
            "preset": cfg.preset,
            "model": {**cfg.to_dict()["model"], "parameters_per_block": cfg.model.parameter_count()},
            "fit": cfg.to_dict()["fit"],
            "quantization": cfg.to_dict()["quant"],
            "bytes": size,
            "payload_bytes": payload,
            "header_bytes": size - payload,
            "rate_split": rate_split(cfg, len(g), payload, size, units),
            **({} if units is None else {"units_kept": units_kept(cfg, units)}),
            "bpp": bits_per_voxel(size, self.width, self.height, self.frames),
            "stats": self.header.stats,
        }

    def evaluate(self, reference: str | os.PathLike, device: str = "auto",
                 progress: Callable[[int, int], None] | None = None) -> dict:
        """bpp (per pixel per frame) and mean per-frame PSNR of the full decode against the ``reference`` video,
        with the flicker (chunk border) and seam measures of :class:`VideoErrors`."""
        from .api import resolve_device

        ref = VideoSource(reference)
        if (ref.width, ref.height, ref.frames) != (self.width, self.height, self.frames):
            raise UsageError(f"{reference} is {ref.width}x{ref.height}, {ref.frames} frames; the codec holds "
                             f"{self.width}x{self.height}, {self.frames} frames")
        errors = compare(self._renderer, self.grid, ref, resolve_device(device), progress)
        size = self.reader.size_bytes
        return {"bytes": size, "frames": self.frames, "fps": float(self.fps),
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
