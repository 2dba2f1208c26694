"""The encode pipeline: read tiles, fit them in batches, quantize, pack, measure, write."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from . import __version__
from .config import CodecConfig
from .container import Header, SourceInfo, overhead_bytes, write_codec
from .decode import DecodeProgressFn, DecodeRequest, TileCache, TileSource, iter_blocks
from .distributed import SINGLE, Ranks
from .errors import UsageError
from .fit import TileTarget, _PixelPool, finetune_quantized, fit_tiles
from .fitcache import FitCache
from .imageio import ImageSource
from .fitted import PSNR_PROBE_SAMPLES, FittedBatch, batch_size_estimate, batch_steps, pack_batch
from .metrics import ErrorAccumulator, bits_per_pixel, psnr_from_mse
from .prefetch import prefetched
from .pruning import SHORT_QAT_FRACTION, tune_rungs
from .rate import SLOPE_RANGE, Probe, layer_sensitivity, solve_slope
from .reference import tile_seed
from .tileblob import TileParameters, unpack_tile
from .tiling import Tile, TileGrid

CEILING_MARGIN_DB = 0.1  # an unreachable PSNR target codes this far below the network's ceiling

StageProgressFn = Callable[[str, float, float], None]
"""``progress(stage, done, total)`` with stage ``"fit"``, ``"quantize"`` or ``"measure"``."""



@dataclass(frozen=True)
class RateTarget:
    """What the encoder aims at: the config's slope (both ``None``), a file size in bits per pixel,
    or a PSNR in dB (the lowest rate whose estimated PSNR reaches it)."""

    bpp: float | None = None
    psnr: float | None = None

    def __post_init__(self) -> None:
        if self.bpp is not None and self.psnr is not None:
            raise UsageError("give a bpp target or a PSNR target, not both")
        if self.bpp is not None and not (0 < self.bpp < 64):
            raise UsageError(f"the bpp target must be a number in (0, 64), got {self.bpp}")
        if self.psnr is not None and not (0 < self.psnr < 100):
            raise UsageError(f"the PSNR target must be a number of dB in (0, 100), got {self.psnr}")


OVERSHOOT_NOTE = 1.1  # a file this much above its bpp target says why


def overshoot_note(target: RateTarget, bpp: float, header_bpp: float, preset: str, what: str) -> str | None:
    """What to tell the user when a file of ``bpp`` came out well above the ``bpp`` target (its header
    and tables alone ``header_bpp``): the coarsest quantization of the preset's networks still costs more
    than the target on a source this small. None where the target was met."""
    if target.bpp is None or bpp <= OVERSHOOT_NOTE * target.bpp:
        return None
    return (f"{target.bpp:g} bpp cannot be reached: at its coarsest the {preset} preset codes this {what} in "
            f"{bpp:.3g} bpp, {header_bpp:.3g} of them the file's header and tables (which weigh less on a "
            "larger source)")


@dataclass(frozen=True)
class EncodeResult:
    """What an encode produced."""

    path: str
    bytes: int
    bpp: float
    psnr: float | None
    tiles: int
    seconds: float
    notes: tuple[str, ...] = ()
    """Things the user should know (e.g. a PSNR target beyond what the preset's network reaches)."""


class BlobSource:
    """Packed tiles held in memory, readable like a file (see :class:`~loe_codec.decode.TileSource`)."""

    def __init__(self, config: CodecConfig, blobs: list[np.ndarray]):
        self.config = config
        self.blobs = blobs

    def read_tile(self, index: int) -> TileParameters:
        return unpack_tile(self.config, np.asarray(self.blobs[index]), index)


def tile_targets(image: ImageSource, grid: TileGrid, config: CodecConfig,
                 tiles: list[Tile] | None = None) -> list[TileTarget]:
    """Fit targets of ``tiles`` (default: all tiles) of an image, tile ``k`` seeded from ``(seed, k)``."""
    targets = []
    for t in grid.tiles() if tiles is None else tiles:
        wx, wy, ww, wh = grid.window(t)
        dx, dy, ex, ey = grid.domain(t)
        pixels = torch.from_numpy(image.read(wx, wy, ww, wh).copy())
        targets.append(TileTarget(pixels, wx, wy, dx, dy, ex, ey, tile_seed(config.fit.seed, t.index)))
    return targets


def make_header(image: ImageSource, config: CodecConfig, stats: dict | None = None) -> Header:
    """The header of a file holding ``image`` coded with ``config`` (checksums are added on write)."""
    return Header(SourceInfo(image.width, image.height, image.channels, 8), config, [], stats or {},
                  encoder=f"loe-codec {__version__}")


def with_channels(config: CodecConfig, channels: int) -> CodecConfig:
    """``config`` with the model's output channels set to the image's band count."""
    return dataclasses.replace(config, model=dataclasses.replace(config.model, out_channels=channels))


def batches_of(grid: TileGrid, config: CodecConfig, ranks: Ranks = SINGLE) -> list[list[Tile]]:
    """The tiles ``tiles_per_batch`` at a time, in tile order: the batches this rank fits."""
    tiles, per_batch = grid.tiles(), config.fit.tiles_per_batch
    chunks = [tiles[start:start + per_batch] for start in range(0, len(tiles), per_batch)]
    return [chunk for b, chunk in enumerate(chunks) if ranks.owns(b)]


PREFETCH_BATCHES = 1  # batches of pixels read ahead on a background thread while a batch fits


def fit_batches(image: ImageSource, grid: TileGrid, config: CodecConfig, device: str,
                progress: StageProgressFn | None = None, cache: FitCache | None = None,
                ranks: Ranks = SINGLE, prefetch: int = PREFETCH_BATCHES):
    """Fit the tiles ``tiles_per_batch`` at a time; yields ``(FittedBatch, targets)`` per batch
    (of this rank's batches: batch ``b`` belongs to rank ``b % ranks.size``).

    With a ``cache``, batches found there are not fitted again, and new fits are stored. The pixels
    of the next ``prefetch`` batches are read on a background thread while a batch fits (0: none).
    """
    chunks = batches_of(grid, config, ranks)
    starts = list(itertools.accumulate((len(chunk) for chunk in chunks), initial=0))  # tiles before each
    total = float(starts[-1] * config.fit.steps)
    reads = prefetched((tile_targets(image, grid, config, chunk) for chunk in chunks), prefetch)
    # ``reads`` first: zip then drains it, so its thread has ended when the loop does.
    for targets, chunk, start in zip(reads, chunks, starts):
        def fit_progress(step: int, steps: int, loss: float, done_before: int = start) -> None:
            if progress is not None:
                progress("fit", done_before * steps + step * len(chunk), total)

        key = cache.key(image.path, config, [t.index for t in chunk], device) if cache is not None else ""
        stored = cache.load(key, config) if cache is not None else None
        if stored is not None:
            fit_progress(config.fit.steps, config.fit.steps, 0.0)
            yield FittedBatch.of(chunk, *stored, config), targets
            continue
        model = fit_tiles(config.model, config.fit, targets, device=device, progress=fit_progress,
                          snapshots=cache.snapshots(key) if cache is not None else None)
        probe = Probe.of(targets, [(t.x1 - t.x0) * (t.y1 - t.y0) for t in chunk])
        batch = FittedBatch.of(chunk, model, layer_sensitivity(model, probe), probe.subset(PSNR_PROBE_SAMPLES), config)
        if cache is not None:
            cache.store(key, batch.model, batch.sensitivity, batch.probe)
        yield batch, targets


def add_rungs(batch: FittedBatch, targets: list, config: CodecConfig, device: str,
              progress: Callable[[int, int, float], None] | None = None, pool_type: type = _PixelPool) -> None:
    """If the config prunes units and the batch has not chosen its sizes: its candidate sizes
    (:func:`~loe_codec.pruning.tune_rungs`), fine-tuned at the config's slope."""
    if config.quant.prunes_units and batch.units is None and batch.rungs is None:
        batch.rungs = tune_rungs(batch, batch_steps(batch, config.quant.slope), config, targets, device, progress,
                                 pool_type)


def finish_batch(batch: FittedBatch, targets: list[TileTarget], config: CodecConfig, device: str,
                 progress: Callable[[int, int, float], None] | None = None,
                 pool_type: type = _PixelPool,
                 size_progress: Callable[[int, int, float], None] | None = None) -> list[np.ndarray]:
    """Quantization-aware fine-tuning of a batch at the config's slope, then its packed blobs.

    If the config prunes units, each tile first takes the size of least cost at the slope
    (:meth:`FittedBatch.selected`, candidates from :func:`add_rungs`) and its fine-tuning goes on
    from that candidate's; the units stay chosen (a later re-solved slope only changes the steps)."""
    slope = config.quant.slope
    add_rungs(batch, targets, config, device, size_progress, pool_type)
    if batch.rungs is not None:
        chosen = batch.selected(slope, config)
        batch.model, batch.units, batch.rungs = chosen.model, chosen.units, None
    steps = batch_steps(batch, slope)
    if config.quant.qat_steps > 0:
        batch.model = finetune_quantized(batch.model, steps, config.fit, config.quant, targets, device, progress,
                                         pool_type, batch.offsets, batch.units)
    return [batch.pack(k, steps[k], config) for k in range(len(batch.tiles))]


PsnrFn = Callable[[list[FittedBatch], list[torch.Tensor]], float]
"""``psnr_of(batches, errors)``: the PSNR (dB) a quality target is about, from each batch's estimated
squared errors ``errors[b]`` ``[T]`` (summed over the pixels each tile stands for, peak 1)."""


def image_psnr(pixels: int) -> PsnrFn:
    """PSNR of an image of ``pixels`` pixels: the mean squared error over all of them."""
    return lambda batches, errors: psnr_from_mse(sum(float(e.sum()) for e in errors) / pixels, peak=1.0)


def estimated_psnr(batches: list[FittedBatch], slope: float, psnr_of: PsnrFn, config: CodecConfig) -> float:
    """The PSNR ``psnr_of`` estimates for ``batches`` quantized at ``slope`` (probe pixels, no more fine-tuning)."""
    return psnr_of(batches, [batch.squared_error(slope, config) for batch in batches])


def slope_for_target(batches: list[FittedBatch], target: RateTarget, config: CodecConfig, budget: float,
                     psnr_of: PsnrFn, notes: list[str] | None = None, what: str = "image") -> float:
    """The one slope of every batch that meets a ``bpp`` or ``psnr`` target (images and video alike).

    ``bpp``: the coarsest slope whose blobs fit in ``budget`` bytes (the file's bytes less its
    header): bisection on the closed-form size estimate, then on exact coded sizes near its
    answer. ``psnr``: the coarsest slope whose estimated ``psnr_of`` reaches the target; a
    target beyond the networks' ceiling codes just below the ceiling and says so in ``notes``.
    """
    if target.bpp is not None:
        def estimate(slope: float) -> float:
            return sum(batch_size_estimate(batch, slope, config) for batch in batches)

        def size(slope: float) -> float:
            return sum(b.size for batch in batches for b in pack_batch(batch, slope, config))

        guess = solve_slope(estimate, budget)
        return solve_slope(size, budget, guess / 2, guess * 2, iterations=12)

    def quality(slope: float) -> float:
        return estimated_psnr(batches, slope, psnr_of, config)
    ceiling = quality(SLOPE_RANGE[0])
    goal = target.psnr
    if ceiling < goal:
        # Unreachable: finer steps would spend many bits for nothing; stop just below the ceiling.
        goal = ceiling - CEILING_MARGIN_DB
        if notes is not None:
            notes.append(f"the {config.preset} network reaches about {ceiling:.2f} dB on this {what}, below "
                         f"the {target.psnr:g} dB asked; coded near that ceiling (a bigger preset may reach it)")
    return solve_slope(quality, goal)


BPP_RETUNE_TOLERANCE = 0.01  # a fine-tuned file this close to its bpp budget is kept as it is


def retune(tuned: list[FittedBatch], blobs: list[np.ndarray], target: RateTarget, config: CodecConfig,
           budget: float, psnr_of: PsnrFn) -> tuple[list[np.ndarray], CodecConfig]:
    """After fine-tuning ``tuned`` at the config's slope for a rate target: the blobs and config to keep.

    ``psnr``: fine-tuning gained quality the estimate did not count; spend it on the coarsest slope
    (>= the config's) whose quality, measured on the fine-tuned networks, still meets the target. If
    the fine-tuned networks fall short (tiles that dropped units may), the finest slope (<= the
    config's) that reaches the target, or just below the networks' ceiling.
    ``bpp``: fine-tuning moved the weights (and their distance from the reference), so the size
    moved too; if it left ``budget`` bytes by more than :data:`BPP_RETUNE_TOLERANCE`, re-solve
    the slope on the exact sizes of the fine-tuned networks.
    """
    slope = config.quant.slope
    if config.quant.qat_steps == 0 or (target.bpp is None and target.psnr is None):
        return blobs, config
    if target.psnr is not None:
        def quality(s: float) -> float:
            return estimated_psnr(tuned, s, psnr_of, config)
        current = quality(slope)
        if current >= target.psnr:
            new = solve_slope(quality, target.psnr, low=slope, iterations=20)
        else:  # e.g. tiles that dropped units lost more than the estimate before fine-tuning knew
            goal = min(target.psnr, quality(SLOPE_RANGE[0]) - CEILING_MARGIN_DB)
            new = solve_slope(quality, goal, high=slope, iterations=20) if goal > current else slope
        if new == slope:
            return blobs, config
    else:
        if abs(sum(b.size for b in blobs) - budget) <= BPP_RETUNE_TOLERANCE * budget:
            return blobs, config

        def size(s: float) -> float:
            return sum(b.size for batch in tuned for b in pack_batch(batch, s, config))
        new = solve_slope(size, budget, iterations=20)
    config = config.with_overrides(slope=new)
    return [b for batch in tuned for b in pack_batch(batch, new, config)], config


def slope_after_finetuning(fitted: list[FittedBatch], tuned: list[FittedBatch], slope: float, goal: float,
                           config: CodecConfig, psnr_of: PsnrFn) -> float:
    """For a PSNR target: the slope at which the batches, fine-tuned there, should reach ``goal``.

    ``slope`` was solved on the estimate before fine-tuning, which fine-tuning beats (by the gain
    ``tuned`` shows there over ``fitted``, the same batches before it), so the target is met at a
    coarser slope. Assuming the same gain at coarser slopes (it grows as steps coarsen, so this
    errs on the fine side), the coarsest slope ``>= slope`` where the estimate plus the gain
    meets ``goal``; ``slope`` itself if fine-tuning gained nothing.
    """
    gain = estimated_psnr(tuned, slope, psnr_of, config) - estimated_psnr(fitted, slope, psnr_of, config)
    if gain <= 0:
        return slope
    return solve_slope(lambda s: estimated_psnr(fitted, s, psnr_of, config) + gain, goal, low=slope, iterations=20)


SECOND_PASS_FACTOR = 1.2  # a PSNR target fine-tunes again if the slope after fine-tuning is this much coarser


def keep_units(fitted: list[FittedBatch], tuned: list[FittedBatch]) -> None:
    """The fits ``fitted`` (copies made before fine-tuning) keep the units ``tuned`` chose, for a second
    fine-tuning: chosen where the target was estimated reachable, so it stays reachable at the finer
    end (re-choosing at the coarser slope dropped more units than the target allowed on kodim23)."""
    for f, t in zip(fitted, tuned):
        f.units, f.rungs = t.units, None


def fit_and_pack(image: ImageSource, grid: TileGrid, config: CodecConfig, device: str,
                 progress: StageProgressFn | None = None, target: RateTarget = RateTarget(),
                 cache: FitCache | None = None, ranks: Ranks = SINGLE,
                 notes: list[str] | None = None) -> tuple[list[np.ndarray], CodecConfig]:
    """Fit, quantize and pack every tile; returns the blobs in tile order and the config they were
    coded with (a rate target resolves to a slope).

    With the config's slope each batch is finished as soon as it is fitted. A ``bpp`` or
    ``psnr`` target needs every tile's fit first (kept in memory), one slope solved for the
    whole image (from the exact coded sizes, or the PSNR estimated on probe pixels before
    fine-tuning, which only improves it), and a second pass that re-reads each batch's pixels
    for the quantization-aware fine-tuning; a ``psnr`` target then solves the slope once more
    with the gain fine-tuning showed, and fine-tunes the fits again there if that is much
    coarser (:func:`slope_after_finetuning`). If the config prunes units, a pass in between
    fine-tunes every batch's candidate sizes at that slope and the slope is solved again with
    each tile's choice of size counted (so the choice and the target agree).

    With several ``ranks`` every rank fits and fine-tunes its own batches and the blobs are
    gathered (rank 0 returns them all, the others none); with a rate target the fitted batches
    are gathered first and rank 0 alone solves the slope. A batch's fit depends only on its
    tiles, so the blobs are those of one process.
    """
    tiles_here = sum(len(chunk) for chunk in batches_of(grid, config, ranks))
    qat_total = float(tiles_here * config.quant.qat_steps)
    size_total = float(tiles_here * len(config.quant.unit_ladder) * (config.quant.qat_steps // SHORT_QAT_FRACTION))

    def qat_progress(done_before: int, size: int, stage: str = "quantize", total: float = qat_total):
        def report(step: int, steps: int, loss: float) -> None:
            if progress is not None:
                progress(stage, done_before * steps + step * size, total)
        return report

    def size_progress(done_before: int, size: int):  # the candidates of a batch: one tile per tile and rung
        rungs = len(config.quant.unit_ladder)
        return qat_progress(done_before * rungs, size * rungs, "sizes", size_total)

    def in_tile_order(per_rank: list[list[list[np.ndarray]]]) -> list[np.ndarray]:
        return [blob for blobs in ranks.in_batch_order(per_rank) for blob in blobs]

    done = 0  # tiles finished here
    if target.bpp is None and target.psnr is None:
        finished = []  # blobs of each of this rank's batches
        for batch, targets in fit_batches(image, grid, config, device, progress, cache, ranks):
            finished.append(finish_batch(batch, targets, config, device, qat_progress(done, len(batch.tiles)),
                                         size_progress=size_progress(done, len(batch.tiles))))
            done += len(batch.tiles)
        per_rank = ranks.gather(finished)
        return in_tile_order(per_rank) if ranks.main else [], config
    mine = [batch for batch, _ in fit_batches(image, grid, config, device, progress, cache, ranks)]
    batches = ranks.in_batch_order(ranks.gather(mine))
    pixels = grid.width * grid.height
    psnr_of = image_psnr(pixels)
    slope, budget = None, 0.0
    pruning = config.quant.prunes_units
    if ranks.main:
        header = make_header(image, config.with_overrides(slope=1.0), {"psnr": 99.9999})
        budget = target.bpp * pixels / 8 - overhead_bytes(header) if target.bpp is not None else 0.0
        slope = slope_for_target(batches, target, config, budget, psnr_of, None if pruning else notes, "image")
    del batches  # rank 0 solved the slope: each rank now needs its own batches only
    config = config.with_overrides(slope=ranks.from_main(slope))
    if pruning:  # candidate sizes at that slope, then the slope again with every tile's choice counted
        reads = prefetched((tile_targets(image, grid, config, batch.tiles) for batch in mine), PREFETCH_BATCHES)
        for targets, batch in zip(reads, mine):
            add_rungs(batch, targets, config, device, size_progress(done, len(batch.tiles)))
            done += len(batch.tiles)
        batches = ranks.in_batch_order(ranks.gather(mine))
        if ranks.main:
            slope = slope_for_target(batches, target, config, budget, psnr_of, notes, "image")
        del batches
        config = config.with_overrides(slope=ranks.from_main(slope))

    def finish_all(batches: list[FittedBatch], cfg: CodecConfig, stage: str = "quantize") -> list[list[np.ndarray]]:
        blobs, finished_here = [], 0
        reads = prefetched((tile_targets(image, grid, cfg, batch.tiles) for batch in batches), PREFETCH_BATCHES)
        for targets, batch in zip(reads, batches):
            blobs.append(finish_batch(batch, targets, cfg, device,
                                      qat_progress(finished_here, len(batch.tiles), stage)))
            finished_here += len(batch.tiles)
        return blobs

    second_pass = target.psnr is not None and config.quant.qat_steps > 0
    fitted = copy.deepcopy(mine) if second_pass else None
    finished = finish_all(mine, config)
    if second_pass:  # fine-tuning beat the estimate the slope was solved on: solve again, fine-tune there
        keep_units(fitted, mine)
        both = ranks.gather((fitted, mine))
        new = None
        if ranks.main:
            new = slope_after_finetuning(ranks.in_batch_order([f for f, _ in both]),
                                         ranks.in_batch_order([t for _, t in both]), config.quant.slope,
                                         target.psnr, config, psnr_of)
        new = ranks.from_main(new)
        if new > SECOND_PASS_FACTOR * config.quant.slope:
            config = config.with_overrides(slope=new)
            mine = fitted
            finished = finish_all(mine, config, "quantize again")
    # The fine-tuned networks meet on rank 0 too, which may re-solve the slope on them.
    per_rank = ranks.gather((finished, mine if config.quant.qat_steps > 0 else None))
    if not ranks.main:
        return [], config
    blobs = in_tile_order([blobs for blobs, _ in per_rank])
    if config.quant.qat_steps > 0:
        tuned = ranks.in_batch_order([tuned for _, tuned in per_rank])
        blobs, config = retune(tuned, blobs, target, config, budget, psnr_of)
    return blobs, config


def measure(source: TileSource | TileCache, grid: TileGrid, image: ImageSource, device: str,
            progress: DecodeProgressFn | None = None) -> ErrorAccumulator:
    """Decode the whole image at scale 1 and accumulate its error against ``image``."""
    acc = ErrorAccumulator(grid)
    req = DecodeRequest(0, 0, grid.width, grid.height, grid.width, grid.height)
    for ox, oy, pixels in iter_blocks(source, grid, req, device, progress=progress):
        h, w = pixels.shape[:2]
        acc.add(ox, oy, pixels, image.read(ox, oy, w, h))
    return acc


def encode_image(source_path: str, output_path: str, config: CodecConfig, device: str = "cpu",
                 progress: StageProgressFn | None = None, measure_psnr: bool = True,
                 target: RateTarget = RateTarget(), cache_dir: str | None = None,
                 ranks: Ranks = SINGLE) -> EncodeResult:
    """Encode an image file into a `.loe` file. See :func:`loe_codec.encode` for the public entry point.

    With several ``ranks`` every rank calls it: they share the fitting, rank 0 alone reports
    ``progress``, measures and writes the file, and every rank returns rank 0's result.
    """
    started = time.perf_counter()
    image = ImageSource(source_path)
    config = with_channels(config, image.channels)
    grid = TileGrid(image.width, image.height, config.tile.size, config.tile.margin)
    cache = FitCache(cache_dir) if cache_dir is not None else None
    ranks.gather(None)  # every rank got this far (else all stop here, before fitting in vain)
    progress = progress if ranks.main else None
    notes: list[str] = []
    blobs, config = fit_and_pack(image, grid, config, device, progress, target, cache, ranks, notes)
    result = None
    if ranks.main:  # holds every blob
        stats: dict = {}
        psnr = None
        if measure_psnr:
            stage = (lambda done, total: progress("measure", done, total)) if progress is not None else None
            errors = measure(BlobSource(config, blobs), grid, image, device, stage)
            psnr = errors.psnr()
            stats["psnr"] = round(psnr, 4)
        size = write_codec(output_path, make_header(image, config, stats), blobs)
        bpp = bits_per_pixel(size, image.width, image.height)
        header_bpp = bits_per_pixel(size - sum(b.size for b in blobs), image.width, image.height)
        note = overshoot_note(target, bpp, header_bpp, config.preset, "image")
        result = EncodeResult(str(output_path), size, bpp, psnr, len(grid), time.perf_counter() - started,
                              tuple(notes + ([note] if note else [])))
    return ranks.from_main(result)
