"""The small public Python API: encode an image, open a `.loe` file, decode, inspect, evaluate.

Example::

    import loe_codec

    result = loe_codec.encode("photo.png", "photo.loe", preset="balanced")
    print(result.bpp, result.psnr)
    with loe_codec.open("photo.loe") as img:
        crop = img.decode(region=(800, 400, 512, 512), scale=2)   # uint8 [1024, 1024, 3]
        img.decode_to_file("thumb.jpg", width=256)
    print(loe_codec.info("photo.loe"))
"""

from __future__ import annotations

import math
import os
import shutil
from typing import Callable

import numpy as np
import torch

from . import distributed
from .config import CodecConfig, config_for_quality, preset as named_preset
from .container import CodecReader
from .decode import DecodeRequest, TileCache, cache_capacity, iter_strips, render
from .encode import EncodeResult, RateTarget, StageProgressFn, encode_image, measure
from .errors import UsageError
from .files import check_output_location
from .metrics import bits_per_pixel
from .imageio import ImageSource, check_output_path, check_output_size, write_strips
from .tileblob import laplace_fixed_bytes

Region = tuple[int, int, int, int]
RESUME_SUFFIX = ".fits"  # folder next to an output where a resumable encode keeps finished fits


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is present, else ``cpu``; refuse ``cuda`` without one."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is available")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"device must be auto, cpu or cuda, got {device!r}")
    return device


def rate_choice(config: CodecConfig, bpp: float | None, psnr: float | None,
                quality: int | None) -> tuple[CodecConfig, RateTarget]:
    """The config and rate target of at most one rate choice (images and video alike): ``quality``
    sets the config's slope from the ladder, ``bpp`` / ``psnr`` become a :class:`RateTarget`
    (checked here, before any work)."""
    if sum(v is not None for v in (bpp, psnr, quality)) > 1:
        raise UsageError("give at most one of bpp, psnr and quality")
    if quality is not None:
        config = config_for_quality(config, quality)
    return config, RateTarget(bpp=bpp, psnr=psnr)


def encode(source: str | os.PathLike, output: str | os.PathLike, preset: str = "balanced", *,
           config: CodecConfig | None = None, steps: int | None = None, tile: int | None = None,
           seed: int | None = None, bpp: float | None = None, psnr: float | None = None,
           quality: int | None = None, device: str = "auto",
           progress: StageProgressFn | None = None, measure_psnr: bool = True,
           cache_dir: str | os.PathLike | None = None, resume: bool = False) -> EncodeResult:
    """Encode the image at ``source`` into the `.loe` file ``output``.

    ``preset`` names a :data:`~loe_codec.config.PRESETS` entry (or pass a full
    ``config``); ``steps``, ``tile`` and ``seed`` override it. At most one rate
    choice: ``bpp`` asks for a file of that many bits per pixel, ``psnr`` for
    the smallest file whose PSNR reaches that many dB, ``quality`` (0..100)
    for a point on a fixed ladder of rate–distortion slopes (default: the
    preset's slope) and, above quality 60 for ``balanced`` and ``best``, a wider
    network (:data:`~loe_codec.config.QUALITY_LADDERS`); ``bpp`` and ``psnr``
    keep the preset's network and set the quantization steps. With ``measure_psnr`` the encoder decodes what it
    wrote and reports its PSNR. ``cache_dir`` keeps every fitted batch there, and a
    snapshot of the batch being fitted every few minutes
    (:data:`~loe_codec.fitcache.SNAPSHOT_SECONDS`): an encode restarted with the same
    cache (after a crash, or at another rate) skips the fits it already has and takes
    up the one it was killed in from its snapshot (the same file as an encode that never
    stopped). ``resume`` does that with a folder next to the output (``<output>.fits``),
    removed once the file is written.

    Under ``torchrun`` (several processes, GPUs or nodes) every process calls this with the
    same arguments: they share the tiles (NCCL between GPUs, each on ``cuda:LOCAL_RANK``; gloo
    on CPUs), rank 0 alone calls ``progress`` and writes the file (the same file as one
    process would write), and every process returns the same result or raises the same error.
    The source must be readable, and ``cache_dir`` shared, by every process.
    """
    ranks, device = distributed.join(resolve_device(device))
    with ranks.sharing_failures():  # under torchrun: an error on any rank stops every rank
        cfg = config if config is not None else named_preset(preset)
        for name, value in (("steps", steps), ("tile", tile), ("seed", seed)):
            if value is not None and value < 0:
                raise UsageError(f"{name} must be >= 0, got {value}")
        cfg = cfg.with_overrides(steps=steps, tile=tile, seed=seed)
        cfg, target = rate_choice(cfg, bpp, psnr, quality)
        if cfg.model.dims != 2:
            raise UsageError(f"images need a 2-D model (dims=2), the config has dims={cfg.model.dims}")
        output = str(output)
        if not output.endswith(".loe"):
            raise UsageError(f"{output}: the output of encode must end in .loe")
        if ranks.main:  # the one that writes it
            check_output_location(output)
        cache_dir, temporary_cache = resume_cache(output, cache_dir, resume)
        result = encode_image(str(source), output, cfg, device, progress, measure_psnr, target, cache_dir, ranks)
    if temporary_cache and ranks.main:  # every rank is done with it
        shutil.rmtree(cache_dir, ignore_errors=True)
    return result


def resume_cache(output: str, cache_dir: str | os.PathLike | None, resume: bool) -> tuple[str | None, bool]:
    """The fit cache folder of an encode and whether it is a temporary one: with ``resume`` and no
    ``cache_dir``, ``<output>.fits`` (removed by the caller once the file is written)."""
    if resume and cache_dir is None:
        return output + RESUME_SUFFIX, True
    return (None if cache_dir is None else str(cache_dir)), False


class LoeImage:
    """An opened `.loe` image. Reads tiles lazily; use as a context manager or call :meth:`close`."""

    picture = "image"  # what a region lies in, for messages

    def __init__(self, path: str | os.PathLike):
        self._reader = CodecReader(path)
        self.header = self._reader.header
        self.grid = self.header.grid
        self._tiles = TileCache(self._reader, cache_capacity(self.grid))  # kept across decodes
        self.width = self.header.source.width
        self.height = self.header.source.height
        self.channels = self.header.source.channels

    @property
    def config(self) -> CodecConfig:
        return self.header.config

    def request(self, region: Region | None = None, scale: float | None = None,
                width: int | None = None, height: int | None = None) -> DecodeRequest:
        """Validate a region (source pixels ``x, y, w, h``) and output size; see :meth:`decode`."""
        x, y, w, h = region if region is not None else (0, 0, self.width, self.height)
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > self.width or y + h > self.height:
            raise UsageError(f"region {x},{y},{w},{h} does not lie inside the {self.width}x{self.height} {self.picture}")
        if scale is not None and (width is not None or height is not None):
            raise UsageError("give either a scale or an output width/height, not both")
        if scale is not None:
            if not (math.isfinite(scale) and scale > 0):
                raise UsageError(f"scale must be a number > 0, got {scale}")
            out_w, out_h = max(1, round(w * scale)), max(1, round(h * scale))
        elif width is not None or height is not None:
            if (width is not None and width <= 0) or (height is not None and height <= 0):
                raise UsageError("output width and height must be > 0")
            out_w = width if width is not None else max(1, round(w * height / h))
            out_h = height if height is not None else max(1, round(h * width / w))
        else:
            out_w, out_h = w, h
        if out_w * out_h > 1 << 31:
            raise UsageError(f"an output of {out_w}x{out_h} pixels is too large")
        return DecodeRequest(x, y, w, h, out_w, out_h)

    def decode(self, region: Region | None = None, scale: float | None = None, width: int | None = None,
               height: int | None = None, device: str = "auto",
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Decode a region (default: the whole image) at a scale or output size.

        Returns uint8 ``[out_height, out_width, channels]``. For ``scale < 1`` every
        output pixel averages several samples over its footprint (antialiased).
        """
        req = self.request(region, scale, width, height)
        return render(self._tiles, self.grid, req, resolve_device(device), progress)

    def decode_to_file(self, output: str | os.PathLike, region: Region | None = None,
                       scale: float | None = None, width: int | None = None, height: int | None = None,
                       device: str = "auto", progress: Callable[[int, int], None] | None = None,
                       pyramid: bool = False) -> tuple[int, int]:
        """Decode and write an image file (format from the extension). Returns ``(width, height)``.

        Streams: strips of output rows are rendered while libvips writes them, so the
        output is never whole in memory. ``.dzi`` writes a Deep Zoom pyramid
        (``name.dzi`` and ``name_files/``); ``pyramid=True`` with ``.tif`` a tiled
        pyramidal BigTIFF. Same pixels as :meth:`decode` (before any format's own
        compression). Atomic: a failure leaves no output behind.
        """
        check_output_path(output, pyramid)
        req = self.request(region, scale, width, height)
        check_output_size(output, req.out_width, req.out_height)  # before any decoding
        strips = (pixels for _, pixels in iter_strips(self._tiles, self.grid, req, resolve_device(device),
                                                      progress=progress))
        write_strips(strips, req.out_width, req.out_height, self.channels, output, pyramid)
        return req.out_width, req.out_height

    def info(self) -> dict:
        """Dimensions, tiles, model, quantization, bytes and bits per pixel."""
        cfg = self.config
        size = self._reader.size_bytes
        weights_bytes = sum(self._reader.tile_size(k) for k in range(len(self.grid)))
        units = [self._reader.tile_units(k) for k in range(len(self.grid))] if cfg.quant.prunes_units else None
        return {
            "path": str(self._reader.path),
            "format_version": self.header.version,
            "encoder": self.header.encoder,
            "width": self.width,
            "height": self.height,
            "channels": self.channels,
            "bit_depth": self.header.source.bit_depth,
            "tiles": {"count": len(self.grid), "cols": self.grid.cols, "rows": self.grid.rows,
                      "size": cfg.tile.size, "margin": cfg.tile.margin},
            "preset": cfg.preset,
            "model": {**cfg.to_dict()["model"], "parameters_per_tile": cfg.model.parameter_count()},
            "fit": cfg.to_dict()["fit"],
            "quantization": cfg.to_dict()["quant"],
            "bytes": size,
            "payload_bytes": weights_bytes,
            "header_bytes": size - weights_bytes,
            "rate_split": rate_split(cfg, len(self.grid), weights_bytes, size, units),
            **({} if units is None else {"units_kept": units_kept(cfg, units)}),
            "bpp": bits_per_pixel(size, self.width, self.height),
            "stats": self.header.stats,
        }

    def evaluate(self, reference: str | os.PathLike, device: str = "auto",
                 progress: Callable[[int, int], None] | None = None) -> dict:
        """bpp and PSNR (all channels, 8-bit, peak 255) of the full decode against ``reference``.

        Also the PSNR in a band along interior tile borders and in tile interiors.
        """
        ref = ImageSource(reference)
        if (ref.width, ref.height, ref.channels) != (self.width, self.height, self.channels):
            raise UsageError(f"{reference} is {ref.width}x{ref.height}x{ref.channels}, the codec holds "
                             f"{self.width}x{self.height}x{self.channels}")
        acc = measure(self._tiles, self.grid, ref, resolve_device(device), progress)
        size = self._reader.size_bytes
        return {
            "bytes": size,
            "bpp": bits_per_pixel(size, self.width, self.height),
            "psnr": acc.psnr(),
            "psnr_seams": acc.psnr_seams(),
            "psnr_interior": acc.psnr_interior(),
            "seam_band_px": acc.half_width,
        }

    def close(self) -> None:
        self._tiles = TileCache(self._reader, cache_capacity(self.grid))
        self._reader.close()

    def __enter__(self) -> "LoeImage":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def rate_split(config: CodecConfig, tiles: int, payload: int, size: int,
               units: list[list[np.ndarray]] | None = None) -> dict:
    """Bytes of a file by what they hold: coded weights, biases, per-layer steps and entropy models
    (with the unit masks of tiles that may drop units: ``units``, per tile), and the header and tables
    (formats 2 to 4; format 1 stores raw int8 weights with their scales)."""
    if config.quant.scheme != "laplace":
        return {"weights_and_scales": payload, "header": size - payload}
    all_biases = sum(o for _, o in config.model.layer_shapes())
    counts = [all_biases] * tiles if units is None else \
        [sum(int(u.sum()) for u in kept) + config.model.out_channels for kept in units]
    biases = sum(counts) * np.dtype(config.quant.bias_dtype).itemsize
    models = sum(laplace_fixed_bytes(config, c) for c in counts) - biases
    return {"weights": payload - biases - models, "biases": biases, "steps_and_models": models,
            "header": size - payload}


def units_kept(config: CodecConfig, units: list[list[np.ndarray]]) -> dict:
    """How many tiles keep each fraction of the hidden units (``"1.0"``: all) and the mean fraction kept."""
    fractions = [sum(int(u.sum()) for u in kept) / (config.model.width * len(kept)) for kept in units]
    tiles: dict[str, int] = {}
    for f in fractions:
        tiles[f"{f:.3g}"] = tiles.get(f"{f:.3g}", 0) + 1
    return {"tiles_by_fraction": dict(sorted(tiles.items(), reverse=True)),
            "mean_fraction": sum(fractions) / len(fractions)}


def open(path: str | os.PathLike):  # noqa: A001 - mirrors the builtin on purpose
    """Open a `.loe` file for decoding: a :class:`LoeImage`, or a :class:`~loe_codec.video.LoeVideo`
    for a video file."""
    from .video_container import probe_kind

    if probe_kind(path) == "video":
        from .video import LoeVideo

        return LoeVideo(path)
    return LoeImage(path)


def info(path: str | os.PathLike) -> dict:
    """``info()`` of the image or video `.loe` file at ``path``."""
    with open(path) as img:
        return img.info()


def evaluate(codec: str | os.PathLike, reference: str | os.PathLike, device: str = "auto") -> dict:
    """``evaluate()`` of the file at ``codec`` against the image (or video) at ``reference``."""
    with open(codec) as img:
        return img.evaluate(reference, device)
