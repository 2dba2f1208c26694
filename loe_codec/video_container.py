"""The `.loe` container for video: one safetensors file of kind ``"video"``.

Layout (video format version 7, written only for a file whose networks follow a camera path; a file
without one is written as version 5 where it keeps its source's audio, else as version 4, which lacks
only the audio and which decoders from before audio read; version 6, read only, stores the camera path
as float32; version 3, read only, has no time banks
(every model's banks tile space and time alike); version 2, read only, has no unit masks either: its
blocks keep every hidden unit; version 1, read only, has no weight references either: see
:mod:`loe_codec.reference`):

* ``__metadata__["loe"]``: a JSON header: ``format`` ("loe-codec"), ``kind``
  ("video"), ``version``, the source (width, height, channels, bit depth,
  frames, frame rate as a fraction, duration, what happened to audio: ``"none"``,
  ``"dropped"`` or, from version 5, ``"copied"``), the audio track's description (version 5,
  ``"audio_track"``: codec, sample rate, channels, packets, duration, bytes, CRC-32), the
  time chunking, the block grid, the full codec config (a 3-D model), a CRC-32
  per block and encoder stats.
* one ``uint8`` tensor ``block.{k}`` per space-time block, ``k = chunk *
  tiles_per_frame + tile``: the block network exactly as
  :meth:`loe_codec.fitted.FittedBatch.pack` packs an image tile, read back with
  :func:`loe_codec.tileblob.unpack_tile`. Blobs are opaque and may differ in size.
* version 5 with audio ``"copied"``: one ``uint8`` tensor ``audio``, the source's first audio
  stream stream-copied into a Matroska file (:mod:`loe_codec.audio`).
* version 7 with ``"motion": "global"`` in the header: one ``uint8`` tensor ``motion``, the camera path
  (:class:`loe_codec.motion.CameraPath`) range-coded on a 1/16-pixel grid (:mod:`loe_codec.path_coding`),
  and ``"motion_crc32"`` in the header, its CRC-32: every block network is evaluated at its pixels shifted
  by the path. Version 6 (read only) held the path as one ``float32`` tensor ``motion`` ``[frames, 2]``.

A decoder opens the file lazily and reads only the blocks a request touches.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save, save_file

from .config import CodecConfig
from .container import FORMAT_NAME, MAX_SIDE, METADATA_KEY, _first_line, checked_version, config_from_header, \
    load_header_json, open_loe
from .audio import AudioTrack
from .tileblob import Units, stored_units, unpack_tile, units_prefix_bytes
from .errors import FormatError
from .files import atomic_output
from .motion import MOTIONS, CameraPath
from .path_coding import on_grid, pack_path, unpack_path
from .video_tiling import SpaceTimeGrid

VIDEO_FORMAT_VERSION = 7  # the newest version this decoder reads
NO_AUDIO_VERSION = 4  # what a file without audio is written as
FIRST_AUDIO_VERSION = 5  # files may keep their source's audio (the ``audio`` tensor) from here on
FIRST_REFERENCE_VERSION = 2  # video blocks code weights against a reference from here on
FIRST_UNITS_VERSION = 3  # video blocks may drop hidden units (QuantConfig.unit_ladder) from here on
FIRST_TIME_BANKS_VERSION = 4  # models may count their banks along time apart (ModelConfig.time_banks)
FIRST_MOTION_VERSION = 6  # blocks may follow a camera path (the ``motion`` tensor) from here on
CODED_PATH_VERSION = 7  # the camera path is range-coded (loe_codec.path_coding) from here on
MAX_FRAMES = 1 << 24
AUDIO_TENSOR = "audio"
MOTION_TENSOR = "motion"


@dataclass(frozen=True)
class VideoInfo:
    """The video that was encoded."""

    width: int
    height: int
    frames: int
    fps_num: int
    fps_den: int
    channels: int = 3
    bit_depth: int = 8
    audio: str = "none"  # "none", "dropped" or "copied"

    @property
    def fps(self) -> Fraction:
        return Fraction(self.fps_num, self.fps_den)

    @property
    def duration(self) -> float:
        return float(self.frames / self.fps)


@dataclass(frozen=True)
class TimeConfig:
    """Chunking of the time axis: nominal chunk length and the blended margin, in frames."""

    chunk: int = 16
    margin: int = 2

    def __post_init__(self) -> None:
        from .errors import UsageError

        if self.chunk < 1 or self.margin < 0 or (self.margin and 2 * self.margin >= self.chunk):
            raise UsageError("the time chunk must be >= 1 frame and its margin smaller than half of it")


@dataclass
class VideoHeader:
    """Everything in the JSON header of a video `.loe` file."""

    source: VideoInfo
    config: CodecConfig
    time: TimeConfig
    block_crc32: list[int]
    stats: dict = field(default_factory=dict)
    encoder: str = ""
    version: int = NO_AUDIO_VERSION
    audio_track: dict | None = None
    """The stored audio's description (:meth:`loe_codec.audio.AudioTrack.describe`) where audio is ``"copied"``."""
    motion: CameraPath | None = None
    """The camera path the blocks follow (the file's ``motion`` tensor); None: none."""

    def with_audio(self, description: dict) -> "VideoHeader":
        """This header for a file that keeps the audio track ``description``, at the version it needs."""
        return dataclasses.replace(self, audio_track=dict(description), version=max(self.version, FIRST_AUDIO_VERSION),
                                   source=dataclasses.replace(self.source, audio="copied"))

    def with_motion(self, path: CameraPath) -> "VideoHeader":
        """This header for a file whose blocks follow the camera ``path`` as the file stores it (rounded onto
        :data:`loe_codec.path_coding.PATH_STEP`: fit the blocks along *this* header's path), at the version
        it needs."""
        if path.frames != self.source.frames:
            raise ValueError(f"a camera path of {path.frames} frames for a video of {self.source.frames}")
        return dataclasses.replace(self, motion=on_grid(path), version=max(self.version, CODED_PATH_VERSION))

    def motion_blob(self) -> np.ndarray | None:
        """The ``motion`` tensor a file written with this header holds: its coded path; None without one."""
        return None if self.motion is None else pack_path(self.motion)

    @property
    def grid(self) -> SpaceTimeGrid:
        s, c = self.source, self.config
        return SpaceTimeGrid.of(s.width, s.height, s.frames, c.tile.size, c.tile.margin, self.time.chunk,
                                self.time.margin)

    def to_json(self) -> str:
        grid = self.grid
        s = self.source
        return json.dumps({
            "format": FORMAT_NAME,
            "kind": "video",
            "version": self.version,
            "source": {"width": s.width, "height": s.height, "channels": s.channels, "bit_depth": s.bit_depth,
                       "frames": s.frames, "fps": [s.fps_num, s.fps_den], "duration": s.duration,
                       "audio": s.audio},
            "time": {"chunk": self.time.chunk, "margin": self.time.margin},
            "blocks": {"cols": grid.space.cols, "rows": grid.space.rows, "chunks": len(grid.time),
                       "count": len(grid)},
            "config": self.config.to_dict(),
            "block_crc32": self.block_crc32,
            "stats": self.stats,
            "encoder": self.encoder,
            **({"audio_track": self.audio_track} if self.audio_track is not None else {}),
            **({"motion": "global"} if self.motion is not None else {}),
            **({"motion_crc32": zlib.crc32(self.motion_blob().tobytes())}
               if self.motion is not None and self.version >= CODED_PATH_VERSION else {}),
        }, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, camera_path: Callable[[int, int | None], CameraPath] | None = None
                  ) -> "VideoHeader":
        """The header in ``text``. Where it says its blocks follow a camera path, ``camera_path(frames, crc)``
        reads that path (a tensor of the file, not of the header; ``crc``: the CRC-32 the header gives its
        coded path, None for version 6's float32 one); without it such a header is refused."""
        d = load_header_json(text)
        if d.get("kind") != "video":
            raise FormatError(f"not a video .loe file (its content kind is {d.get('kind')!r})")
        version = checked_version(d, VIDEO_FORMAT_VERSION, "video format")
        try:
            s = d["source"]
            num, den = (int(v) for v in s["fps"])
            source = VideoInfo(int(s["width"]), int(s["height"]), int(s["frames"]), num, den,
                               int(s["channels"]), int(s["bit_depth"]), str(s.get("audio", "none")))
            config = config_from_header(d["config"], version >= FIRST_REFERENCE_VERSION,
                                        version >= FIRST_UNITS_VERSION)
            time = TimeConfig(**d["time"])
            crcs = [int(c) for c in d["block_crc32"]]
            blocks = dict(d["blocks"])
            stats = dict(d.get("stats", {}))
            audio_track = d.get("audio_track")
            if audio_track is not None:
                audio_track = dict(audio_track)
            path_crc = int(d["motion_crc32"]) if version >= CODED_PATH_VERSION and "motion" in d else None
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"invalid video header: {exc}") from None
        if not (0 < source.width <= MAX_SIDE and 0 < source.height <= MAX_SIDE and 0 < source.frames <= MAX_FRAMES
                and num > 0 and den > 0):
            raise FormatError("invalid video dimensions, frame count or frame rate in the header")
        if config.model.dims != 3:
            raise FormatError(f"a video file needs a 3-D model, this one has dims={config.model.dims}")
        if config.model.time_banks is not None and version < FIRST_TIME_BANKS_VERSION:
            raise FormatError(f"a video format {version} file cannot have time banks")
        if source.channels != config.model.out_channels or source.bit_depth != 8:
            raise FormatError("the header's channel count or bit depth does not match its model")
        if source.audio not in ("none", "dropped", "copied"):
            raise FormatError(f"unknown audio state {source.audio!r} in the header")
        if (source.audio == "copied") != (audio_track is not None) or (
                source.audio == "copied" and version < FIRST_AUDIO_VERSION):
            raise FormatError(f"the header's audio ({source.audio!r}) and its audio track do not match "
                              f"(video format {version})")
        motion = d.get("motion", "none")
        if motion not in MOTIONS or (motion == "global" and version < FIRST_MOTION_VERSION):
            raise FormatError(f"unknown motion {motion!r} in the header (video format {version})")
        if motion == "global" and camera_path is None:
            raise FormatError("the header's blocks follow a camera path, which is a tensor of its file")
        path = camera_path(source.frames, path_crc) if motion == "global" else None
        header = cls(source, config, time, crcs, stats, str(d.get("encoder", "")), version, audio_track, path)
        grid = header.grid
        expected = (grid.space.cols, grid.space.rows, len(grid.time), len(grid), len(grid))
        if (blocks.get("cols"), blocks.get("rows"), blocks.get("chunks"), blocks.get("count"), len(crcs)) != expected:
            raise FormatError("the header's block grid (or its checksums) does not match the video size and "
                              "tile/time config")
        return header


def probe_kind(path: str | os.PathLike) -> str | None:
    """The content kind (``"image"``, ``"video"``) a `.loe` file declares; ``None`` if it cannot be read."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return json.loads(meta[METADATA_KEY]).get("kind")
    except Exception:
        return None


def write_video_codec(path: str | os.PathLike, header: VideoHeader, blobs: list[torch.Tensor],
                      audio: bytes | None = None) -> int:
    """Write a video `.loe` file atomically, with the stored ``audio`` where its header describes one.
    Returns its size in bytes."""
    path = Path(path)
    if len(blobs) != len(header.grid) or any(b.dtype != torch.uint8 or b.dim() != 1 or b.numel() == 0
                                             for b in blobs):
        raise ValueError("one non-empty 1-D uint8 blob per block is required")
    if (audio is None) != (header.audio_track is None) or (
            audio is not None and (len(audio) != header.audio_track["bytes"] or header.version < FIRST_AUDIO_VERSION)):
        raise ValueError("the audio bytes must match the header's audio track (VideoHeader.with_audio)")
    if header.motion is not None and header.version < CODED_PATH_VERSION:
        raise ValueError("a camera path needs video format 7 (VideoHeader.with_motion)")
    header.block_crc32 = [zlib.crc32(b.numpy().tobytes()) for b in blobs]
    tensors = {f"block.{k}": b.contiguous() for k, b in enumerate(blobs)}
    if header.motion is not None:
        tensors[MOTION_TENSOR] = torch.from_numpy(header.motion_blob())
    if audio is not None:
        tensors[AUDIO_TENSOR] = torch.frombuffer(bytearray(audio), dtype=torch.uint8)
    with atomic_output(path) as tmp:
        save_file(tensors, tmp, metadata={METADATA_KEY: header.to_json()})
    return path.stat().st_size


def video_overhead_bytes(header: VideoHeader, blob_bytes: int) -> int:
    """Bytes a video file with ``header`` holds besides its block blobs and its audio (JSON header,
    tensor table), for blobs of about ``blob_bytes`` bytes each (their offsets' digits count too)."""
    count = len(header.grid)
    header = dataclasses.replace(header, block_crc32=[0xFFFFFFFF] * count)  # the widest checksums
    size = max(1, int(blob_bytes))
    tensors = {f"block.{k}": torch.zeros(size, dtype=torch.uint8) for k in range(count)}
    audio = 0
    if header.audio_track is not None:
        audio = int(header.audio_track["bytes"])
        tensors[AUDIO_TENSOR] = torch.zeros(audio, dtype=torch.uint8)
    if header.motion is not None:  # the path counts as overhead
        tensors[MOTION_TENSOR] = torch.from_numpy(header.motion_blob())
    return len(save(tensors, metadata={METADATA_KEY: header.to_json()})) - count * size - audio


class VideoReader:
    """A video `.loe` file opened lazily: the header at once, blocks on demand, each validated.

    ``blocks_read`` records the indices of the blocks read so far.
    """

    def __init__(self, path: str | os.PathLike):
        self.path, self._file, header, keys = open_loe(path)
        self.header = VideoHeader.from_json(header, self._camera_path)
        self.size_bytes = self.path.stat().st_size
        count = len(self.header.grid)
        expected = {f"block.{k}" for k in range(count)}
        if self.header.audio_track is not None:
            expected.add(AUDIO_TENSOR)
        if self.header.motion is not None:
            expected.add(MOTION_TENSOR)
        if keys != expected:
            raise FormatError(f"{self.path} holds {len(keys)} tensors that do not match its {count} blocks"
                              + (" and its audio" if self.header.audio_track is not None else "")
                              + (" and its camera path" if self.header.motion is not None else ""))
        for name in expected - {MOTION_TENSOR}:
            sl = self._file.get_slice(name)
            if sl.get_dtype() != "U8" or len(sl.get_shape()) != 1:
                raise FormatError(f"tensor {name} has dtype {sl.get_dtype()} and shape {sl.get_shape()}, "
                                  "expected a 1-D U8 blob")
        self.blocks_read: list[int] = []

    @property
    def config(self) -> CodecConfig:
        return self.header.config

    def _camera_path(self, frames: int, crc: int | None) -> CameraPath:
        """The file's camera path: its coded ``uint8`` tensor, checked against the header's CRC-32 ``crc``
        (version 7), or (``crc`` None: version 6) a finite float32 ``[frames, 2]`` tensor."""
        try:
            sl = self._file.get_slice(MOTION_TENSOR)
        except Exception:  # a missing tensor: safetensors raises its own error type
            raise FormatError(f"{self.path}: its header names a camera path, but the file holds none") from None
        dtype, shape = sl.get_dtype(), list(sl.get_shape())
        odd = (dtype, shape) != ("F32", [frames, 2]) if crc is None else (dtype != "U8" or len(shape) != 1)
        if odd:
            raise FormatError(f"{self.path}: its camera path has dtype {sl.get_dtype()} and shape {sl.get_shape()}, "
                              f"expected " + (f"F32 [{frames}, 2]" if crc is None else "a 1-D U8 blob"))
        stored = self._file.get_tensor(MOTION_TENSOR)
        if crc is not None:
            blob = stored.numpy()
            if zlib.crc32(blob.tobytes()) != crc:
                raise FormatError(f"{self.path}: its camera path is corrupted (checksum mismatch)")
            try:
                return unpack_path(blob, frames)
            except FormatError as exc:
                raise FormatError(f"{self.path}: {exc}") from None
        try:
            return CameraPath(stored.clone(), widens=False)
        except ValueError as exc:
            raise FormatError(f"{self.path}: invalid camera path ({exc})") from None

    def read_tile(self, index: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Dequantized weights and biases of block ``index`` (checksum verified)."""
        blob = self.tile_blob(index)
        self.blocks_read.append(index)
        try:
            return unpack_tile(self.config, blob, index)
        except FormatError:
            raise
        except Exception as exc:
            raise FormatError(f"block {index} of {self.path} cannot be unpacked ({_first_line(exc)})") from None

    def tile_blob(self, index: int) -> np.ndarray:
        """The stored bytes of block ``index``, uint8 ``[n]`` (checksum verified)."""
        if not 0 <= index < len(self.header.block_crc32):
            raise IndexError(f"block {index} out of range")
        if self._file is None:
            raise ValueError(f"{self.path} is closed")
        try:
            blob = self._file.get_tensor(f"block.{index}").numpy()
        except Exception as exc:
            raise FormatError(f"cannot read block {index} of {self.path} ({_first_line(exc)})") from None
        if zlib.crc32(blob.tobytes()) != self.header.block_crc32[index]:
            raise FormatError(f"block {index} of {self.path} is corrupted (checksum mismatch)")
        return np.ascontiguousarray(blob)

    def audio(self) -> AudioTrack | None:
        """The stored audio track; None if the file keeps none."""
        if self.header.audio_track is None:
            return None
        if self._file is None:
            raise ValueError(f"{self.path} is closed")
        try:
            data = self._file.get_tensor(AUDIO_TENSOR).numpy().tobytes()
        except Exception as exc:
            raise FormatError(f"cannot read the audio of {self.path} ({_first_line(exc)})") from None
        return AudioTrack.described(data, self.header.audio_track)

    def audio_bytes(self) -> int:
        """Bytes of the stored audio (0 without)."""
        if self.header.audio_track is None:
            return 0
        return int(np.prod(self._file.get_slice(AUDIO_TENSOR).get_shape()))

    def tile_units(self, index: int) -> Units | None:
        """The hidden units block ``index`` keeps (bool ``[width]`` per hidden layer), read from the start of
        its blob alone (no checksum: for reports); None if the file's blocks keep every unit."""
        if not self.config.quant.prunes_units:
            return None
        prefix = self._file.get_slice(f"block.{index}")[:units_prefix_bytes(self.config)].numpy()
        return stored_units(self.config, prefix)

    def payload_bytes(self) -> int:
        return sum(int(np.prod(self._file.get_slice(f"block.{k}").get_shape()))
                   for k in range(len(self.header.block_crc32)))

    def close(self) -> None:
        self._file = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

