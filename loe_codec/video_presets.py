"""Video presets and the rate rule: the frames per block and network width a ``bpp`` target gets.

:class:`VideoConfig` is a video encode's whole config (the codec's, plus the time chunks and the rate
rule's target); :data:`VIDEO_PRESETS` are the named ones; :func:`blocks_for_rate` sizes the blocks for a
rate.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .block_sizes import BLOCK_SIZES
from .config import CodecConfig, FitConfig, ModelConfig, QuantConfig, TileConfig
from .errors import UsageError
from .motion import MOTION_CHOICES
from .tiling import TileGrid
from .video_container import TimeConfig


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
    motion: str = "none"
    """``"global"``: estimate the camera's pan (one translation per frame, :mod:`loe_codec.motion`) and
    fit every block along it, so that the networks see the scene hold still; ``"none"``: pixel coordinates;
    ``"auto"``: estimate the path, and follow it where it pans (some block's frames shift
    :data:`~loe_codec.motion.PAN_PIXELS` (8) pixels or more from their mean: Big Buck Bunny's first 60 frames 21.5,
    gaining 1.6-2 dB at 0.01-0.05 bpp), not where the camera only shakes (carphone: 4.8, where the path
    cost 0.46 / 0.26 dB at 0.02 / 0.03 bpp and gained 0.15 / 0.56 at 0.06 / 0.1)."""
    block_sizes: str = "equal"
    """``"equal"``: every block gets the same network; ``"pilot"``: a short pilot fit of every block sets
    its share of the bits, and so its width (:mod:`loe_codec.block_sizes`; the file stores the widest
    network and every block's unit masks). At 0.1 bpp on Big Buck Bunny's first 60 frames +0.24 dB at the
    same bytes (35.90 against 35.66 with equal blocks), on their top half +0.26 (benchmarks/README.md);
    ``video-best`` uses it, for a pilot of 1/32 of its steps."""

    def __post_init__(self) -> None:
        if self.block_sizes not in BLOCK_SIZES:
            raise UsageError(f"unknown block_sizes {self.block_sizes!r}; choose one of {', '.join(BLOCK_SIZES)}")
        if self.motion not in MOTION_CHOICES:
            raise UsageError(f"unknown motion {self.motion!r}; choose one of {', '.join(MOTION_CHOICES)}")
        if self.bits_per_parameter is not None and not self.bits_per_parameter > 0:
            raise UsageError(f"bits_per_parameter must be > 0, got {self.bits_per_parameter}")
        if self.max_width is not None and self.max_width < self.codec.model.width:
            raise UsageError(f"max_width ({self.max_width}) must be at least the model's width "
                             f"({self.codec.model.width})")

    def with_overrides(self, *, steps: int | None = None, tile: int | None = None, seed: int | None = None,
                       chunk: int | None = None, motion: str | None = None) -> "VideoConfig":
        cfg = dataclasses.replace(self, codec=self.codec.with_overrides(steps=steps, tile=tile, seed=seed),
                                  motion=self.motion if motion is None else motion)
        if chunk is not None:
            margin = min(cfg.time.margin, max(0, (chunk - 1) // 2))
            cfg = dataclasses.replace(cfg, time=TimeConfig(chunk=chunk, margin=margin))
        return cfg


def _video_preset(name: str, model: ModelConfig, fit: FitConfig, tile: TileConfig, time: TimeConfig,
                  bits_per_parameter: float | None = None, max_width: int | None = None,
                  qat_steps: int | None = None, motion: str = "none", block_sizes: str = "equal",
                  qat_learning_rate: float = QuantConfig.qat_learning_rate) -> VideoConfig:
    # The images' quality-50 slope and (unless given) 1/16 of the fit's steps of quantization-aware
    # fine-tuning, at the quantization's default learning rate unless given.
    qat = fit.steps // 16 if qat_steps is None else qat_steps
    quant = QuantConfig(slope=1e-3, qat_steps=qat, qat_learning_rate=qat_learning_rate)
    return VideoConfig(CodecConfig(model=model, fit=fit, quant=quant, tile=tile, preset=name), time,
                       bits_per_parameter, max_width, motion, block_sizes)


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
    # and its crops (sky +1.36 dB, grass +0.15 at 0.02 bpp); carphone is one tile either way. Both follow the
    # camera's path where it pans (motion "auto", VideoConfig.motion: Big Buck Bunny's first 60 frames +1.6 to
    # +2 dB at 0.01-0.05 bpp with video-best), not where it shakes (carphone); video-fast does not (not measured).
    # The fine-tuning after quantization at a peak learning rate of 3e-5, as video-best's, instead of the
    # images' 1e-3: carphone +0.60 / +0.75 dB at 0.02 / 0.03 bpp, +0.07 to +0.28 at 0.045-0.25 (0.1 bpp:
    # 31.56 / 31.66 / 31.71 / 31.71 / 31.64 dB at 1e-3 / 3e-4 / 1e-4 / 3e-5 / 1e-5); benchmarks/README.md.
    "video": _video_preset(
        "video", _VIDEO_MODEL, FitConfig(steps=32000, samples_per_tile=4096, learning_rate=1e-2),
        TileConfig(size=512, margin=4), TimeConfig(chunk=60, margin=2), bits_per_parameter=5.0, max_width=72,
        motion="auto", qat_learning_rate=3e-5),
    # `video` with 640-pixel tiles, networks up to width 110 (now 134, below), twice the fit steps (the QAT
    # steps stay 2000, as measured): on Big Buck Bunny's first 60 frames (4 blocks of 640x360x60) 27.17 / 29.62 / 30.48
    # dB at 0.01 / 0.02 / 0.03 bpp (x264 medium 28.24 / 32.04 / 34.03; `video`: 26.58 / 28.69 / 29.89;
    # 640-pixel tiles at 32 000 steps: 28.75 / 30.36 at 0.02 / 0.03: the width-81 networks of 0.03 bpp gain
    # little from the steps). Blocks that large are far from converged at 32 000 steps of 4096 samples (each
    # voxel sampled ~9.5 times). About twice the encode time of `video`; not measured on carphone (one tile
    # either way, but wider networks at high rates). Samples drawn where the error is (loe_codec.sampling)
    # gave 27.30 / 29.32 / 31.09 dB at 0.01 / 0.02 / 0.03 bpp (+0.13 / -0.30 / +0.61), on a 640x360 block of
    # it -0.35 / +0.36 / -0.60 at 0.02 / 0.03 / 0.05 bpp and -0.09 with another seed (which moved a uniform
    # fit by 0.23): no consistent gain for 12% more encode time, so uniform samples. A second seed of the whole
    # clip at 0.03 bpp: uniform 30.66, error-driven 30.93 (+0.27; both seeds' mean 3.02 dB behind x264): a gain
    # at 0.03 on two seeds, against one seed's loss at 0.02 and the block's at 0.05.
    # At 0.05 bpp (4 x width 105) the whole clip reached only 29.09 dB (x264: 36.25): the top-right block's fit
    # blew up at the peak learning rate (26.4 dB; alone, at 32 000 steps, it reached 36.3). Under the fit's
    # spike guard (loe_codec.fit.SpikeGuard) it is rolled back once: 31.70 dB (-4.55).
    # A network size per block from a 2000-step pilot (block_sizes "pilot": more bits to the textured
    # blocks, fewer to the sky): at 0.1 bpp the whole clip 35.90 dB against 35.66 with equal blocks, its
    # top half +0.26 (at 32 000 steps); lower rates modelled (+0.1-0.2 at 0.03), not measured. The
    # fine-tuning after quantization at a peak learning rate of 3e-5 instead of the images' 1e-3: at 0.1
    # bpp the whole clip 35.90 / 36.06 / 36.18 / 36.28 / 36.24 dB at 1e-3 / 3e-4 / 1e-4 / 3e-5 / 1e-5 (the
    # float networks 36.22), its top half +0.11 / +0.12 at 3e-4 (equal / sized blocks). Lower rates not
    # measured with it, but at 0.05 bpp both together (4 blocks of 60 frames, pilot width 121): 33.39 dB
    # against 33.71 with equal blocks at 1e-3 (2026-12-07; not yet split into the two causes).
    # max_width 134 (110 until 2026-12-07): at 0.161 bpp (x264's CRF 18: 40.49 dB) the
    # rate rule gives 8 blocks of 30 frames (width 134 before the pilot sizes them) instead of 12 of 20
    # (width 110): 38.03 dB against 37.33. 0.01-0.1 bpp and carphone keep the blocks measured; from 137 on,
    # 0.1 bpp would become one 60-frame block per tile (-1.02 dB on its top-left quadrant).
    "video-best": _video_preset(
        "video-best", _VIDEO_MODEL, FitConfig(steps=64000, samples_per_tile=4096, learning_rate=1e-2),
        TileConfig(size=640, margin=4), TimeConfig(chunk=60, margin=2), bits_per_parameter=5.0, max_width=134,
        qat_steps=2000, motion="auto", block_sizes="pilot", qat_learning_rate=3e-5),
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
