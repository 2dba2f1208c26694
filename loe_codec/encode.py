"""The encode pipeline: read tiles, fit them in batches, quantize, pack, measure, write."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

import torch

from . import __version__
from .config import CodecConfig
from .container import Header, SourceInfo, pack_tile, unpack_tile, write_codec
from .decode import DecodeProgressFn, DecodeRequest, TileCache, TileSource, iter_blocks
from .fit import TileTarget, fit_tiles, tile_seed
from .imageio import ImageSource
from .metrics import ErrorAccumulator, bits_per_pixel
from .model import TiledLoE
from .quantize import quantize_bias, quantize_weight
from .tiling import Tile, TileGrid

StageProgressFn = Callable[[str, float, float], None]
"""``progress(stage, done, total)`` with stage ``"fit"`` or ``"measure"``."""


@dataclass(frozen=True)
class EncodeResult:
    """What an encode produced."""

    path: str
    bytes: int
    bpp: float
    psnr: float | None
    tiles: int
    seconds: float


class BlobSource:
    """Packed tiles held in memory, readable like a file (see :class:`~loe_codec.decode.TileSource`)."""

    def __init__(self, config: CodecConfig, blobs: list[torch.Tensor]):
        self.config = config
        self.blobs = blobs

    def read_tile(self, index: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return unpack_tile(self.config, self.blobs[index].numpy())


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


def pack_fitted(model: TiledLoE, index: int, config: CodecConfig) -> torch.Tensor:
    """Quantize and pack tile network ``index`` of a fitted model into its blob."""
    weights = [quantize_weight(w[index], config.quant) for w in model.weights]
    biases = [quantize_bias(b[index], config.quant) for b in model.biases]
    return pack_tile(config, weights, biases)


def make_header(image: ImageSource, config: CodecConfig, stats: dict | None = None) -> Header:
    """The header of a file holding ``image`` coded with ``config`` (checksums are added on write)."""
    return Header(SourceInfo(image.width, image.height, image.channels, 8), config, [], stats or {},
                  encoder=f"loe-codec {__version__}")


def with_channels(config: CodecConfig, channels: int) -> CodecConfig:
    """``config`` with the model's output channels set to the image's band count."""
    return dataclasses.replace(config, model=dataclasses.replace(config.model, out_channels=channels))


def fit_and_pack(image: ImageSource, grid: TileGrid, config: CodecConfig, device: str,
                 progress: StageProgressFn | None = None) -> list[torch.Tensor]:
    """Fit every tile (``tiles_per_batch`` at a time) and return their packed blobs, in tile order."""
    tiles = grid.tiles()
    batch = config.fit.tiles_per_batch
    blobs: list[torch.Tensor] = []
    total = float(len(tiles) * config.fit.steps)
    for start in range(0, len(tiles), batch):
        chunk = tiles[start:start + batch]

        def fit_progress(step: int, steps: int, loss: float, done_before: int = start) -> None:
            if progress is not None:
                progress("fit", done_before * steps + step * len(chunk), total)

        model = fit_tiles(config.model, config.fit, tile_targets(image, grid, config, chunk), device=device,
                          progress=fit_progress)
        blobs += [pack_fitted(model, k, config) for k in range(len(chunk))]
    if progress is not None:
        progress("fit", total, total)
    return blobs


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
                 progress: StageProgressFn | None = None, measure_psnr: bool = True) -> EncodeResult:
    """Encode an image file into a `.loe` file. See :func:`loe_codec.encode` for the public entry point."""
    started = time.perf_counter()
    image = ImageSource(source_path)
    config = with_channels(config, image.channels)
    grid = TileGrid(image.width, image.height, config.tile.size, config.tile.margin)
    blobs = fit_and_pack(image, grid, config, device, progress)
    stats: dict = {}
    psnr = None
    if measure_psnr:
        stage = (lambda done, total: progress("measure", done, total)) if progress is not None else None
        errors = measure(BlobSource(config, blobs), grid, image, device, stage)
        psnr = errors.psnr()
        stats["psnr"] = round(psnr, 4)
    size = write_codec(output_path, make_header(image, config, stats), blobs)
    return EncodeResult(str(output_path), size, bits_per_pixel(size, image.width, image.height), psnr,
                        len(grid), time.perf_counter() - started)

