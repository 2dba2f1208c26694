"""The `.loe` container: one safetensors file.

Layout (format version 1):

* ``__metadata__["loe"]``: a JSON header: format name and version, the source
  image (width, height, channels, bit depth), the tile grid, the full
  :class:`~loe_codec.config.CodecConfig`, a CRC-32 per tile and encoder stats.
* one ``uint8`` tensor ``tile.{k}`` per tile: for every layer, in order, the
  int8 weights ``[banks, in, out]``, the float16 scales ``[banks, out]`` and the
  bias ``[out]`` (``quant.bias_dtype``), little-endian, back to back. Its byte
  size follows from the config, so the reader checks it exactly.

A decoder opens the file lazily and reads only the tiles a region needs.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .config import CodecConfig
from .errors import FormatError
from .files import atomic_output, require_file
from .quantize import QuantizedTensor, dequantize_weight
from .tiling import TileGrid

FORMAT_NAME = "loe-codec"
FORMAT_VERSION = 1
METADATA_KEY = "loe"
MAX_SIDE = 1 << 24  # pixels per side a header may claim


@dataclass(frozen=True)
class SourceInfo:
    """The image that was encoded."""

    width: int
    height: int
    channels: int
    bit_depth: int = 8


@dataclass
class Header:
    """Everything in the JSON header of a `.loe` file."""

    source: SourceInfo
    config: CodecConfig
    tile_crc32: list[int]
    stats: dict = field(default_factory=dict)
    encoder: str = ""
    version: int = FORMAT_VERSION

    @property
    def grid(self) -> TileGrid:
        return TileGrid(self.source.width, self.source.height, self.config.tile.size, self.config.tile.margin)

    def to_json(self) -> str:
        grid = self.grid
        return json.dumps({
            "format": FORMAT_NAME,
            "version": self.version,
            "kind": "image",
            "source": vars(self.source),
            "tiles": {"cols": grid.cols, "rows": grid.rows, "count": len(grid)},
            "config": self.config.to_dict(),
            "tile_crc32": self.tile_crc32,
            "stats": self.stats,
            "encoder": self.encoder,
        }, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Header":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FormatError(f"the header is not valid JSON ({exc})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT_NAME:
            raise FormatError("not a loe-codec file (the header names another format)")
        version = d.get("version")
        if not isinstance(version, int) or version < 1:
            raise FormatError(f"invalid format version {version!r}")
        if version > FORMAT_VERSION:
            raise FormatError(f"format version {version} is newer than this decoder reads "
                              f"(up to {FORMAT_VERSION}); upgrade loe-codec")
        if d.get("kind") != "image":
            raise FormatError(f"unsupported content kind {d.get('kind')!r}")
        try:
            source = SourceInfo(**d["source"])
            config = CodecConfig.from_dict(d["config"])
            crcs = [int(c) for c in d["tile_crc32"]]
            stats = dict(d.get("stats", {}))
            tiles = d["tiles"]
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"invalid header: {exc}") from None
        if not all(isinstance(v, int) and 0 < v <= MAX_SIDE for v in (source.width, source.height)) or \
                source.channels not in (1, 2, 3, 4):
            raise FormatError("invalid source dimensions in the header")
        if config.model.dims != 2:
            raise FormatError(f"an image file needs a 2-D model, this one has dims={config.model.dims}")
        if not isinstance(tiles, dict):
            raise FormatError("invalid header: 'tiles' must be an object")
        if source.channels != config.model.out_channels or source.bit_depth != 8:
            raise FormatError("the header's channel count or bit depth does not match its model")
        header = cls(source, config, crcs, stats, str(d.get("encoder", "")), version)
        grid = header.grid
        expected = (grid.cols, grid.rows, len(grid), len(grid))  # sizes are bounded by MAX_SIDE above
        if (tiles.get("cols"), tiles.get("rows"), tiles.get("count"), len(crcs)) != expected:
            raise FormatError("the header's tile grid (or its tile checksums) does not match the image size "
                              "and tile config")
        return header


def tile_layout(config: CodecConfig) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
    """(part name, dtype, shape) of every part of one tile blob, in storage order."""
    parts = []
    bias_dtype = np.dtype(config.quant.bias_dtype).newbyteorder("<")
    for i, ((fan_in, fan_out), nb) in enumerate(zip(config.model.layer_shapes(), config.model.bank_counts())):
        parts.append((f"layer{i}.weight", np.dtype("i1"), (nb, fan_in, fan_out)))
        parts.append((f"layer{i}.scale", np.dtype("<f2"), (nb, fan_out)))
        parts.append((f"layer{i}.bias", bias_dtype, (fan_out,)))
    return parts


def tile_bytes(config: CodecConfig) -> int:
    """Exact byte size of one tile blob."""
    return sum(dt.itemsize * int(np.prod(shape)) for _, dt, shape in tile_layout(config))


def pack_tile(config: CodecConfig, weights: list[QuantizedTensor], biases: list[torch.Tensor]) -> torch.Tensor:
    """Serialise one tile's quantized layers into a ``uint8`` ``[tile_bytes]`` tensor."""
    arrays = []
    for q, b in zip(weights, biases):
        arrays += [q.values.numpy(), q.scale.numpy(), b.numpy()]
    chunks = []
    for (name, dt, shape), a in zip(tile_layout(config), arrays):
        if tuple(a.shape) != shape:
            raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
        chunks.append(np.ascontiguousarray(a, dtype=dt).tobytes())
    return torch.frombuffer(bytearray(b"".join(chunks)), dtype=torch.uint8)


def unpack_tile(config: CodecConfig, blob: np.ndarray) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Dequantized float32 weights ``[banks, in, out]`` and biases ``[out]`` of one tile blob."""
    weights, biases = [], []
    offset = 0
    parts = {}
    for name, dt, shape in tile_layout(config):
        size = dt.itemsize * int(np.prod(shape))
        parts[name] = np.frombuffer(blob, dtype=dt, count=int(np.prod(shape)), offset=offset).reshape(shape)
        offset += size
    for i in range(config.model.layers):
        q = QuantizedTensor(torch.from_numpy(parts[f"layer{i}.weight"].copy()),
                            torch.from_numpy(parts[f"layer{i}.scale"].astype(np.float16)))
        w = dequantize_weight(q)
        b = torch.from_numpy(parts[f"layer{i}.bias"].astype(np.float32))
        if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
            raise FormatError(f"layer {i} holds non-finite values")
        weights.append(w)
        biases.append(b)
    return weights, biases


def write_codec(path: str | os.PathLike, header: Header, blobs: list[torch.Tensor]) -> int:
    """Write a `.loe` file atomically (temporary name, then rename). Returns its size in bytes."""
    path = Path(path)
    expected = tile_bytes(header.config)
    if len(blobs) != len(header.grid) or any(b.numel() != expected for b in blobs):
        raise ValueError("one blob of the configured size per tile is required")
    header.tile_crc32 = [zlib.crc32(b.numpy().tobytes()) for b in blobs]
    tensors = {f"tile.{k}": b for k, b in enumerate(blobs)}
    with atomic_output(path) as tmp:
        save_file(tensors, tmp, metadata={METADATA_KEY: header.to_json()})
    return path.stat().st_size


class CodecReader:
    """A `.loe` file opened lazily: the header at once, tiles on demand, each validated."""

    def __init__(self, path: str | os.PathLike):
        self.path = require_file(path)
        try:
            self._file = safe_open(str(self.path), framework="pt")
            meta = self._file.metadata() or {}
            keys = set(self._file.keys())
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise FormatError(f"{self.path} is not a readable .loe file ({_first_line(exc)})") from None
        if METADATA_KEY not in meta:
            raise FormatError(f"{self.path} is a safetensors file but not a .loe file (no loe header)")
        self.header = Header.from_json(meta[METADATA_KEY])
        self.size_bytes = self.path.stat().st_size
        count = len(self.header.grid)
        expected = {f"tile.{k}" for k in range(count)}
        if keys != expected:
            raise FormatError(f"{self.path} holds {len(keys)} tensors that do not match its {count} tiles")
        self._tile_bytes = tile_bytes(self.header.config)
        for name in expected:
            sl = self._file.get_slice(name)
            if sl.get_dtype() != "U8" or list(sl.get_shape()) != [self._tile_bytes]:
                raise FormatError(f"tensor {name} has dtype {sl.get_dtype()} and shape {sl.get_shape()}, "
                                  f"expected U8 [{self._tile_bytes}]")

    @property
    def config(self) -> CodecConfig:
        return self.header.config

    def read_tile(self, index: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Dequantized weights and biases of tile ``index`` (checksum verified)."""
        if not 0 <= index < len(self.header.tile_crc32):
            raise IndexError(f"tile {index} out of range")
        if self._file is None:
            raise ValueError(f"{self.path} is closed")
        try:
            blob = self._file.get_tensor(f"tile.{index}").numpy()
        except Exception as exc:
            raise FormatError(f"cannot read tile {index} of {self.path} ({_first_line(exc)})") from None
        if zlib.crc32(blob.tobytes()) != self.header.tile_crc32[index]:
            raise FormatError(f"tile {index} of {self.path} is corrupted (checksum mismatch)")
        return unpack_tile(self.config, blob)

    def close(self) -> None:
        self._file = None

    def __enter__(self) -> "CodecReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
