"""The `.loe` container: one safetensors file.

Layout (format version 4):

* ``__metadata__["loe"]``: a JSON header: format name and version, the source
  image (width, height, channels, bit depth), the tile grid, the full
  :class:`~loe_codec.config.CodecConfig` and encoder stats.
* ``tiles``: ``uint8 [n]``, every tile's blob back to back (its layout is in
  :mod:`loe_codec.tileblob`: quantization steps, biases, range-coded weights);
* ``tile_offsets``: ``int64 [tiles + 1]``, where each blob starts (and the end);
* ``tile_crc32``: ``int64 [tiles]``, the CRC-32 of every blob.

Format 3 (read only) is format 4 without unit masks (``QuantConfig.unit_ladder``
is ``(1.0,)``: every tile keeps all its units). Format 2 (read only) is format 3
without weight references: its tiles code the
weights themselves (``QuantConfig.reference`` is ``"none"``). Format 1 (read only) held one ``uint8`` tensor ``tile.{k}`` per tile of a fixed
size (raw int8 weights) and the CRC-32s in the JSON header.

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
from safetensors.torch import save, save_file

from .config import REFERENCES, CodecConfig
from .errors import FormatError
from .files import atomic_output, require_file
from .tileblob import TileParameters, Units, int8_bytes, stored_units, units_prefix_bytes, unpack_tile
from .tiling import TileGrid

FORMAT_NAME = "loe-codec"
FORMAT_VERSION = 4
FIRST_REFERENCE_VERSION = 3  # image files code weights against a reference from here on
FIRST_UNITS_VERSION = 4  # image tiles may drop hidden units (QuantConfig.unit_ladder) from here on
METADATA_KEY = "loe"
MAX_SIDE = 1 << 24  # pixels per side a header may claim


def load_header_json(text: str) -> dict:
    """The JSON object of a `.loe` header (image or video); :class:`FormatError` if it is not one."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"the header is not valid JSON ({exc})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT_NAME:
        raise FormatError("not a loe-codec file (the header names another format)")
    return d


def checked_version(d: dict, newest: int, what: str = "format") -> int:
    """The header's integer ``version``; :class:`FormatError` if it is invalid or newer than ``newest``."""
    version = d.get("version")
    if not isinstance(version, int) or version < 1:
        raise FormatError(f"invalid {what} version {version!r}")
    if version > newest:
        raise FormatError(f"{what} version {version} is newer than this decoder reads "
                          f"(up to {newest}); upgrade loe-codec")
    return version


def config_from_header(config: dict, with_reference: bool, with_units: bool) -> CodecConfig:
    """The codec config of a header's ``config`` object; files of a format from before weight
    references (``with_reference`` False) code the weights themselves, files from before unit masks
    (``with_units`` False) keep every unit. :class:`FormatError` names a reference this decoder does
    not have; ``ValueError`` for other invalid configs."""
    quant = config["quant"]
    if not isinstance(quant, dict):
        raise ValueError("the quantization config must be an object")
    if not with_units:
        quant = {**quant, "unit_ladder": (1.0,)}
    if not with_reference:
        quant = {**quant, "reference": "none"}
    elif quant.get("reference") not in REFERENCES:
        raise FormatError(f"this file's weights are coded against the reference {quant.get('reference')!r}, "
                          f"which this decoder does not have (it has {', '.join(REFERENCES)}); upgrade loe-codec")
    return CodecConfig.from_dict({**config, "quant": quant})


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
            **({"tile_crc32": self.tile_crc32} if self.version == 1 else {}),
            "stats": self.stats,
            "encoder": self.encoder,
        }, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Header":
        d = load_header_json(text)
        version = checked_version(d, FORMAT_VERSION)
        if d.get("kind") != "image":
            raise FormatError(f"unsupported content kind {d.get('kind')!r}")
        try:
            source = SourceInfo(**d["source"])
            config_dict = d["config"]
            if version == 1:  # format 1 predates the scheme field: its weights are raw int8
                config_dict = {**config_dict, "quant": {**config_dict["quant"], "scheme": "int8"}}
            config = config_from_header(config_dict, version >= FIRST_REFERENCE_VERSION,
                                        version >= FIRST_UNITS_VERSION)
            crcs = [int(c) for c in d["tile_crc32"]] if version == 1 else []
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
        expected = (grid.cols, grid.rows, len(grid))  # sizes are bounded by MAX_SIDE above
        if version == 1 and len(crcs) != len(grid):
            raise FormatError("the header's tile checksums do not match its tile grid")
        if version > 1 and config.quant.scheme != "laplace":
            raise FormatError(f"format {version} files hold laplace-coded tiles, not {config.quant.scheme!r}")
        if (tiles.get("cols"), tiles.get("rows"), tiles.get("count")) != expected:
            raise FormatError("the header's tile grid (or its tile checksums) does not match the image size "
                              "and tile config")
        return header


def write_codec(path: str | os.PathLike, header: Header, blobs: list[np.ndarray]) -> int:
    """Write a `.loe` file (format 4) atomically (temporary name, then rename). Returns its size in bytes.

    ``blobs`` holds one ``uint8`` blob per tile, in tile order.
    """
    path = Path(path)
    if header.version != FORMAT_VERSION:
        raise ValueError(f"only format {FORMAT_VERSION} files are written")
    if len(blobs) != len(header.grid) or any(b.ndim != 1 or b.dtype != np.uint8 or b.size == 0 for b in blobs):
        raise ValueError("one non-empty uint8 blob per tile is required")
    sizes = np.array([b.size for b in blobs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    crcs = np.array([zlib.crc32(b.tobytes()) for b in blobs], dtype=np.int64)
    header.tile_crc32 = crcs.tolist()
    tensors = {
        "tiles": torch.from_numpy(np.concatenate(blobs)),
        "tile_offsets": torch.from_numpy(offsets),
        "tile_crc32": torch.from_numpy(crcs),
    }
    with atomic_output(path) as tmp:
        save_file(tensors, tmp, metadata={METADATA_KEY: header.to_json()})
    return path.stat().st_size


def overhead_bytes(header: Header) -> int:
    """Bytes a format-2/3/4 file with ``header`` holds besides its tile blobs (JSON header, tile tables).

    Exact up to the few digits of offsets that grow with the blobs (allowed for).
    """
    count = len(header.grid)
    tensors = {"tiles": torch.zeros(1, dtype=torch.uint8), "tile_offsets": torch.zeros(count + 1, dtype=torch.int64),
               "tile_crc32": torch.zeros(count, dtype=torch.int64)}
    return len(save(tensors, metadata={METADATA_KEY: header.to_json()})) - 1 + 16


def open_loe(path: str | os.PathLike):
    """Open a `.loe` file lazily: ``(path, safetensors handle, header JSON text, tensor names)``;
    :class:`FormatError` if it is not a safetensors file with a loe header."""
    path = require_file(path)
    try:
        handle = safe_open(str(path), framework="pt")
        meta = handle.metadata() or {}
        keys = set(handle.keys())
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise FormatError(f"{path} is not a readable .loe file ({_first_line(exc)})") from None
    if METADATA_KEY not in meta:
        raise FormatError(f"{path} is a safetensors file but not a .loe file (no loe header)")
    return path, handle, meta[METADATA_KEY], keys


class CodecReader:
    """A `.loe` file opened lazily: the header at once, tiles on demand, each validated."""

    def __init__(self, path: str | os.PathLike):
        self.path, self._file, header, keys = open_loe(path)
        self.header = Header.from_json(header)
        self.size_bytes = self.path.stat().st_size
        if self.header.version == 1:
            self._check_v1(keys)
        else:
            self._check_v2(keys)

    def _check_v1(self, keys: set[str]) -> None:
        count = len(self.header.grid)
        expected = {f"tile.{k}" for k in range(count)}
        if keys != expected:
            raise FormatError(f"{self.path} holds {len(keys)} tensors that do not match its {count} tiles")
        size = int8_bytes(self.header.config)
        for name in expected:
            sl = self._file.get_slice(name)
            if sl.get_dtype() != "U8" or list(sl.get_shape()) != [size]:
                raise FormatError(f"tensor {name} has dtype {sl.get_dtype()} and shape {sl.get_shape()}, "
                                  f"expected U8 [{size}]")

    def _check_v2(self, keys: set[str]) -> None:
        count = len(self.header.grid)
        if keys != {"tiles", "tile_offsets", "tile_crc32"}:
            raise FormatError(f"{self.path} does not hold the tensors of a format-{self.header.version} file "
                              f"({sorted(keys)})")
        shapes = {name: (self._file.get_slice(name).get_dtype(), list(self._file.get_slice(name).get_shape()))
                  for name in keys}
        if shapes["tile_offsets"] != ("I64", [count + 1]) or shapes["tile_crc32"] != ("I64", [count]) or \
                shapes["tiles"][0] != "U8" or len(shapes["tiles"][1]) != 1:
            raise FormatError(f"{self.path}: tile tables do not match its {count} tiles ({shapes})")
        offsets = self._file.get_tensor("tile_offsets").numpy()
        if offsets[0] != 0 or offsets[-1] != shapes["tiles"][1][0] or (np.diff(offsets) <= 0).any():
            raise FormatError(f"{self.path}: the tile offsets are inconsistent")
        self._offsets = offsets
        self.header.tile_crc32 = [int(c) for c in self._file.get_tensor("tile_crc32").numpy()]

    def tile_size(self, index: int) -> int:
        """Stored bytes of tile ``index``."""
        if self.header.version == 1:
            return int8_bytes(self.config)
        return int(self._offsets[index + 1] - self._offsets[index])

    @property
    def config(self) -> CodecConfig:
        return self.header.config

    def tile_units(self, index: int) -> Units | None:
        """The hidden units tile ``index`` keeps (bool ``[width]`` per hidden layer), read from the start of
        its blob alone (no checksum: for reports); None if the file's tiles keep every unit."""
        if not self.config.quant.prunes_units:
            return None
        start = int(self._offsets[index])
        return stored_units(self.config, self._file.get_slice("tiles")[start:start + units_prefix_bytes(self.config)]
                            .numpy())

    def read_tile(self, index: int) -> TileParameters:
        """Dequantized weights and biases of tile ``index`` (checksum verified)."""
        return unpack_tile(self.config, self.tile_blob(index), index)

    def tile_blob(self, index: int) -> np.ndarray:
        """The stored bytes of tile ``index``, uint8 ``[n]`` (checksum verified)."""
        if not 0 <= index < len(self.header.tile_crc32):
            raise IndexError(f"tile {index} out of range")
        if self._file is None:
            raise ValueError(f"{self.path} is closed")
        try:
            if self.header.version == 1:
                blob = self._file.get_tensor(f"tile.{index}").numpy()
            else:
                start, end = int(self._offsets[index]), int(self._offsets[index + 1])
                blob = self._file.get_slice("tiles")[start:end].numpy()
        except Exception as exc:
            raise FormatError(f"cannot read tile {index} of {self.path} ({_first_line(exc)})") from None
        if zlib.crc32(blob.tobytes()) != self.header.tile_crc32[index]:
            raise FormatError(f"tile {index} of {self.path} is corrupted (checksum mismatch)")
        return blob

    def close(self) -> None:
        self._file = None

    def __enter__(self) -> "CodecReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
