"""Fitting, quantizing and packing the space-time blocks of a video, with the images' rate control.

Blocks are fitted ``tiles_per_batch`` at a time, chunk after chunk, with frames
streamed through a window (one chunk plus its margins in memory). They then go
through the images' format-3 coding (:mod:`loe_codec.encode`): per-layer steps
from the blocks' sensitivities at one rate–distortion slope, fine-tuning with
the quantizer in the loop, range coding. A :class:`~loe_codec.encode.RateTarget`
picks that slope for the whole video with the images' code
(:func:`~loe_codec.encode.slope_for_target`): ``bpp`` counts the file's bits per
pixel per frame, ``psnr`` the mean per-frame PSNR.
"""

from __future__ import annotations

import copy
import dataclasses
import zlib
from typing import Iterator

import numpy as np
import torch

from .config import CodecConfig, ModelConfig
from .encode import (SECOND_PASS_FACTOR, PsnrFn, RateTarget, StageProgressFn, add_rungs, finish_batch, keep_units,
                     retune, slope_after_finetuning, slope_for_target)
from .reference import tile_seed
from .fitcache import FitCache
from .fitted import PSNR_PROBE_SAMPLES, FittedBatch
from .pruning import SHORT_QAT_FRACTION
from .metrics import psnr_from_mse
from .motion import CameraPath
from .rate import Probe, layer_sensitivity
from .video_container import VideoHeader, video_overhead_bytes
from .video_fit import BlockTarget, _VoxelPool, fit_blocks
from .block_sizes import bit_ratios, block_widths, pilot_steps, sized_config, widened
from .video_tiling import Block, SpaceTimeGrid
from .videoio import FrameWindows, VideoSource

CachedFits = tuple[FitCache, str, dict]  # the cache, the source's path, what else keys a fit (time chunks, motion)

# Stats the encoder writes after measuring (placeholders of the same width count in the header's size).
MEASURED_STATS = ("psnr", "psnr_min_frame", "psnr_chunk_borders", "psnr_chunk_interiors",
                  "temporal_diff_rmse_chunk_borders", "temporal_diff_rmse_interiors", "psnr_seams", "psnr_interior")


def block_target(frames: torch.Tensor, first_frame: int, grid: SpaceTimeGrid, block: Block,
                 seed: int, path: CameraPath | None = None) -> BlockTarget:
    """Fit target of one block; ``frames`` ``[n, H, W, C]`` holds the chunk's window from ``first_frame``;
    with a camera ``path`` each frame's pixels are shifted by the path (:meth:`CameraPath.shifts`) and the
    domain grown to hold them (:meth:`CameraPath.block_domain`)."""
    wx, wy, ww, wh = grid.space.window(block.tile)
    f0, f1 = grid.time.window(block.chunk)
    dx, dy, ex, ey = grid.space.domain(block.tile) if path is None else path.block_domain(
        grid.space.domain(block.tile), (wx, wy, ww, wh), f0, f1)
    t0, te = grid.time.domain(block.chunk)
    voxels = frames[f0 - first_frame:f1 - first_frame, wy:wy + wh, wx:wx + ww].contiguous()
    shift = None if path is None else path.shifts(f0, f1, torch.arange(f0, f1, dtype=torch.float64) + 0.5).float()
    return BlockTarget(voxels, (wx, wy, f0), (dx, dy, t0), (ex, ey, te), tile_seed(seed, block.index), shift)


def block_voxels(block: Block) -> int:
    """Voxels of the video a block stands for: its core tile times its core frames."""
    return (block.tile.x1 - block.tile.x0) * (block.tile.y1 - block.tile.y0) * (block.chunk.f1 - block.chunk.f0)


def video_batches(source: VideoSource, grid: SpaceTimeGrid, config: CodecConfig, path: CameraPath | None = None
                  ) -> Iterator[tuple[list[Block], list[BlockTarget]]]:
    """The blocks ``tiles_per_batch`` at a time in block order, with their fit targets (frames streamed;
    shifted along the camera ``path`` where there is one)."""
    windows = FrameWindows(source.iter_frames())
    per_batch = config.fit.tiles_per_batch
    for chunk in grid.time.chunks():
        f0, f1 = grid.time.window(chunk)
        frames = torch.from_numpy(windows.window(f0, f1))
        blocks = grid.blocks_of_chunk(chunk)
        for start in range(0, len(blocks), per_batch):
            part = blocks[start:start + per_batch]
            yield part, [block_target(frames, f0, grid, b, config.fit.seed, path) for b in part]


def fit_batch(part: list[Block], targets: list[BlockTarget], config: CodecConfig, device: str,
              progress=None, cache: CachedFits | None = None, within: ModelConfig | None = None) -> FittedBatch:
    """Fit a batch of blocks, with their layers' sensitivities and a probe of their voxels
    (or load it from ``cache``, ``(FitCache, source path, key extras)``: :func:`fit_key_extra`; new fits are
    stored); ``within``: the networks start inside that wider one (:func:`loe_codec.block_sizes.initialised_within`)."""
    key = ""
    if cache is not None:
        store, path, extra = cache
        if within is not None:
            extra = {**extra, "within": within.width}
        key = store.key(path, config, [b.index for b in part], device, extra)
        found = store.load(key, config)
        if found is not None:
            return FittedBatch.of(part, *found, config)
    model = fit_blocks(config.model, config.fit, targets, device, progress,
                       cache[0].snapshots(key) if cache is not None else None, within)
    probe = Probe.of(targets, [block_voxels(b) for b in part], pool_type=_VoxelPool)
    batch = FittedBatch.of(part, model, layer_sensitivity(model, probe), probe.subset(PSNR_PROBE_SAMPLES), config)
    if cache is not None:
        cache[0].store(key, batch.model, batch.sensitivity, batch.probe)
    return batch


def fit_sized_batch(part: list[Block], targets: list[BlockTarget], widths: list[int], config: CodecConfig,
                    device: str, progress_of=None, cache: CachedFits | None = None) -> FittedBatch:
    """Fit every block of a batch at its own width (blocks of one width together), then widen them into
    ``config``'s network (the widest), each keeping its first units (:func:`loe_codec.block_sizes.widened`).
    The layers' sensitivities are the narrow networks' (a widened network's zero weights would dilute them);
    ``progress_of(done, n)``: the fit progress callback of ``n`` blocks after ``done`` of the batch's."""
    fitted: list[tuple[FittedBatch, int] | None] = [None] * len(part)
    done = 0
    for width in sorted(set(widths), reverse=True):
        picked = [k for k, w in enumerate(widths) if w == width]
        narrow = dataclasses.replace(config, model=dataclasses.replace(config.model, width=width))
        sub = fit_batch([part[k] for k in picked], [targets[k] for k in picked], narrow, device,
                        None if progress_of is None else progress_of(done, len(picked)), cache, config.model)
        done += len(picked)
        for j, k in enumerate(picked):
            fitted[k] = (sub, j)
    model, units = widened([(sub.model, j) for sub, j in fitted], config.model)
    sensitivity = torch.stack([sub.sensitivity[j] for sub, j in fitted])
    probe = Probe.of(targets, [block_voxels(b) for b in part], pool_type=_VoxelPool).subset(PSNR_PROBE_SAMPLES)
    return FittedBatch.of(part, model, sensitivity, probe, config, units)


def pilot_widths(source: VideoSource, header: VideoHeader, device: str, progress: StageProgressFn | None = None,
                 cache: FitCache | None = None) -> list[int]:
    """Every block's width from a short pilot fit of every block at the config's width
    (:func:`loe_codec.block_sizes.pilot_steps`): its error sets its share of the bits
    (:func:`loe_codec.block_sizes.bit_ratios`), its share its width."""
    config, grid = header.config, header.grid
    pilot = config.with_overrides(steps=pilot_steps(config.fit.steps))
    total, seen = float(len(grid) * pilot.fit.steps), 0
    mse: list[float] = []
    voxels: list[int] = []
    for part, targets in video_batches(source, grid, pilot, header.motion):
        def report(step: int, steps: int, loss: float, before: int = seen, n: int = len(part)) -> None:
            if progress is not None:
                progress("pilot", before * steps + step * n, total)
        batch = fit_batch(part, targets, pilot, device, report,
                          None if cache is None else (cache, source.path, fit_key_extra(header)))
        mse += (batch.probe.squared_error(batch.model) / batch.probe.pixels).tolist()
        voxels += [block_voxels(b) for b in part]
        seen += len(part)
    return block_widths(config.model, bit_ratios(mse, voxels))


def fit_key_extra(header: VideoHeader) -> dict:
    """What keys a block's fit besides the source and the config: the time chunks, and the camera path
    (its CRC-32) where there is one."""
    extra: dict = {"time": [header.time.chunk, header.time.margin]}
    if header.motion is not None:
        extra["motion"] = zlib.crc32(header.motion.offsets.numpy().tobytes())
    return extra


def video_psnr(grid: SpaceTimeGrid) -> PsnrFn:
    """Estimated mean per-frame PSNR: each chunk's MSE (its blocks' squared errors over its voxels) stands
    for each of its frames."""
    frame_pixels = grid.space.width * grid.space.height

    def psnr_of(batches: list[FittedBatch], errors: list[torch.Tensor]) -> float:
        sse = np.zeros(len(grid.time))
        for batch, error in zip(batches, errors):
            for block, e in zip(batch.tiles, error.tolist()):
                sse[block.chunk.index] += e
        chunks = grid.time.chunks()
        frames = np.array([c.f1 - c.f0 for c in chunks], dtype=np.float64)
        psnrs = [psnr_from_mse(s / (frame_pixels * n), peak=1.0) for s, n in zip(sse, frames)]
        return float(np.dot(psnrs, frames) / frames.sum())
    return psnr_of


def fit_and_pack_video(source: VideoSource, header: VideoHeader, device: str,
                       progress: StageProgressFn | None = None, target: RateTarget = RateTarget(),
                       notes: list[str] | None = None, cache: FitCache | None = None,
                       block_sizes: str = "equal") -> tuple[list[torch.Tensor], CodecConfig]:
    """Fit, quantize and pack every block; returns the blobs in block order and the config they were coded with.

    ``header`` is the file's header as it will be written (its config, and its stats as
    placeholders: they count in a ``bpp`` target's budget). With the config's slope each batch is
    finished as soon as it is fitted. A rate target fits every block first (the fitted networks,
    not the frames, stay in memory), solves one slope for the whole video, then streams the frames
    again for the fine-tuning with the quantizer, as :func:`~loe_codec.encode.fit_and_pack` does.
    With a ``cache`` the fits found there are not done again (encodes of one clip at several rates).
    ``block_sizes`` ``"pilot"``: every block gets a width of its own from a short pilot fit
    (:func:`pilot_widths`); the config returned is then the widest block's, with unit masks.
    """
    config, grid = header.config, header.grid
    widths = None
    if block_sizes == "pilot":
        widths = pilot_widths(source, header, device, progress, cache)
        if len(set(widths)) > 1:  # else every block keeps the config's network
            config = sized_config(config, widths)
            header = with_config(header, config)
        else:
            widths = None
    total = float(len(grid) * config.fit.steps)
    qat_total = float(len(grid) * config.quant.qat_steps)

    def stage(name: str, done_before: int, n: int, total: float):
        def report(step: int, steps: int, loss: float) -> None:
            if progress is not None:
                progress(name, done_before * steps + step * n, total)
        return report

    rungs = len(config.quant.unit_ladder)
    size_total = float(len(grid) * rungs * (config.quant.qat_steps // SHORT_QAT_FRACTION))

    def sizes(done: int, n: int):  # the candidates of a batch: one block per block and rung
        return stage("sizes", done * rungs, n * rungs, size_total)

    def finish(batch: FittedBatch, targets: list[BlockTarget], done: int, cfg: CodecConfig) -> list[np.ndarray]:
        return finish_batch(batch, targets, cfg, device, stage("quantize", done, len(batch.tiles), qat_total),
                            pool_type=_VoxelPool, size_progress=sizes(done, len(batch.tiles)))

    blobs: list[np.ndarray] = []
    fitted: list[FittedBatch] = []
    seen = 0  # blocks fitted so far
    for part, targets in video_batches(source, grid, config, header.motion):
        cached = None if cache is None else (cache, source.path, fit_key_extra(header))
        if widths is None:
            batch = fit_batch(part, targets, config, device, stage("fit", seen, len(part), total), cached)
        else:
            batch = fit_sized_batch(part, targets, [widths[b.index] for b in part], config, device,
                                    lambda done, n, before=seen: stage("fit", before + done, n, total), cached)
        seen += len(part)
        if target.bpp is None and target.psnr is None:
            blobs += finish(batch, targets, len(blobs), config)
        else:
            fitted.append(batch)
    if progress is not None:
        progress("fit", total, total)
    if fitted:
        psnr_of = video_psnr(grid)
        budget = 0.0
        if target.bpp is not None:
            budget = target.bpp * grid.space.width * grid.space.height * grid.time.frames / 8
            budget -= video_overhead_bytes(header, budget / len(grid))
        pruning = config.quant.prunes_units
        config = config.with_overrides(slope=slope_for_target(fitted, target, config, budget, psnr_of,
                                                              None if pruning else notes, "video"))
        if pruning:  # candidate sizes at that slope, then the slope again with every block's choice counted
            done = 0
            for batch, (_, targets) in zip(fitted, video_batches(source, grid, config, header.motion)):
                add_rungs(batch, targets, config, device, sizes(done, len(batch.tiles)), _VoxelPool)
                done += len(batch.tiles)
            config = config.with_overrides(slope=slope_for_target(fitted, target, config, budget, psnr_of, notes,
                                                                  "video"))
        second_pass = target.psnr is not None and config.quant.qat_steps > 0
        untuned = copy.deepcopy(fitted) if second_pass else None
        for batch, (_, targets) in zip(fitted, video_batches(source, grid, config, header.motion)):
            blobs += finish(batch, targets, len(blobs), config)
        if second_pass:  # as for images: fine-tuning beat the estimate; fine-tune again at a coarser slope
            keep_units(untuned, fitted)
            new = slope_after_finetuning(untuned, fitted, config.quant.slope, target.psnr, config, psnr_of)
            if new > SECOND_PASS_FACTOR * config.quant.slope:
                config, fitted, blobs = config.with_overrides(slope=new), untuned, []
                for batch, (_, targets) in zip(fitted, video_batches(source, grid, config, header.motion)):
                    blobs += finish(batch, targets, len(blobs), config)
        blobs, config = retune(fitted, blobs, target, config, budget, psnr_of)
    return [torch.from_numpy(b.copy()) for b in blobs], config


def placeholder_stats(measure: bool) -> dict:
    """Stats of the width the measured ones will have (for the header's size before measuring)."""
    return {k: 99.9999 for k in MEASURED_STATS} if measure else {}


def with_config(header: VideoHeader, config: CodecConfig, stats: dict | None = None) -> VideoHeader:
    """``header`` with another config (and stats)."""
    return dataclasses.replace(header, config=config, stats=header.stats if stats is None else stats)
