"""Audio passthrough: a video's first audio stream copied into the `.loe` file untouched, restored on decode.

The networks code pictures only. The audio stream's packets are stream-copied (never decoded or
re-encoded) into a small in-memory Matroska file, which the `.loe` file keeps as one ``uint8`` tensor
(:mod:`loe_codec.video_container`); Matroska holds nearly every audio codec with its parameters, so
the same bytes come back out. Timestamps are shifted once, at encode, so that 0 s is the source's first
video frame; Matroska keeps them to the millisecond.

On decode the packets of the requested time range are muxed beside the video, shifted to start with
it; a container that cannot hold the codec (AAC in WebM, say) gets none, with a warning.
"""

from __future__ import annotations

import io
import math
import os
import zlib
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import av

from .errors import FormatError

STORE_FORMAT = "matroska"


class AudioWarning(UserWarning):
    """Audio could not be kept (an encode) or written (a decode); the pictures are unaffected."""


@dataclass(frozen=True)
class AudioTrack:
    """One audio stream stream-copied into Matroska bytes (``data``), aligned to the video's first frame."""

    data: bytes
    codec: str
    sample_rate: int
    channels: int
    packets: int
    duration: float  # seconds, from 0 (the first video frame) to the end of the last packet

    def describe(self) -> dict:
        """The header's description of the track (everything but the bytes' content)."""
        return {"codec": self.codec, "sample_rate": self.sample_rate, "channels": self.channels,
                "packets": self.packets, "duration": round(self.duration, 6), "bytes": len(self.data),
                "crc32": zlib.crc32(self.data), "container": STORE_FORMAT}

    @classmethod
    def described(cls, data: bytes, description: dict) -> "AudioTrack":
        """The track of stored ``data`` and the header's ``description`` of it (checked against each other)."""
        try:
            track = cls(data, str(description["codec"]), int(description["sample_rate"]),
                        int(description["channels"]), int(description["packets"]), float(description["duration"]))
            size, crc, container = int(description["bytes"]), int(description["crc32"]), description["container"]
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"invalid audio description in the header: {exc}") from None
        if container != STORE_FORMAT:
            raise FormatError(f"the stored audio is in {container!r}; this decoder reads {STORE_FORMAT!r}")
        if size != len(data) or crc != zlib.crc32(data):
            raise FormatError("the stored audio is corrupted (its size or checksum does not match the header)")
        return track

    def open(self) -> av.container.InputContainer:
        """The stored Matroska file, opened for demuxing."""
        try:
            return av.open(io.BytesIO(self.data), format=STORE_FORMAT)
        except Exception as exc:
            raise FormatError(f"the stored audio cannot be read ({exc})") from None


def _packet_start(packet: av.Packet) -> int:
    """A packet's start in its time base (its decode time where it has no presentation time)."""
    return packet.pts if packet.pts is not None else packet.dts


def _move_earlier(packet: av.Packet, ticks: int) -> None:
    """Move a packet ``ticks`` of its time base earlier."""
    packet.pts = None if packet.pts is None else packet.pts - ticks
    packet.dts -= ticks


def copy_audio(path: str | os.PathLike, video_start: Fraction) -> AudioTrack:
    """Stream-copy the first audio stream of the media file ``path`` into an :class:`AudioTrack`,
    its timestamps shifted by ``-video_start`` seconds (the first video frame's time)."""
    out_buffer = io.BytesIO()
    with av.open(str(path)) as source:
        stream = source.streams.audio[0]
        ctx = stream.codec_context
        base = stream.time_base
        shift = round(video_start / base)
        count, end = 0, -math.inf
        with av.open(out_buffer, "w", format=STORE_FORMAT,
                     container_options={"avoid_negative_ts": "disabled"}) as out:
            copied = out.add_stream_from_template(stream)
            for packet in source.demux(stream):
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                _move_earlier(packet, shift)
                end = max(end, float((_packet_start(packet) + (packet.duration or 0)) * base))
                packet.stream = copied
                out.mux(packet)
                count += 1
        track = AudioTrack(out_buffer.getvalue(), ctx.name, int(ctx.sample_rate or 0), int(ctx.channels or 0), count,
                           max(0.0, end) if count else 0.0)
    if not count:
        raise ValueError("the audio stream holds no packets")
    return track


class AudioMuxer:
    """Writes a track's packets of ``[start, stop)`` seconds into ``output`` beside its video, in time order.

    :meth:`until` muxes the packets that start before a time (call it as the video advances, so that
    the container interleaves without buffering the whole video); :meth:`finish` the rest; :meth:`close`
    when done.
    The packets kept are those that start in ``[start, stop)`` and the last one before ``start``
    (it holds the sound at ``start``, or is the priming a decoder needs before its first sample, as an
    AAC stream's first packet before 0 s is; stored durations are not reliable enough to tell);
    times are shifted by ``-start``, so the first packet may start before 0 s, as priming packets do.
    """

    def __init__(self, track: AudioTrack, output: av.container.OutputContainer, start: float, stop: float):
        self._source = track.open()
        stream = self._source.streams.audio[0]
        self.stream = output.add_stream_from_template(stream)  # ValueError where the container cannot hold it
        self._base = stream.time_base
        self._packets: Iterator[av.Packet] = self._source.demux(stream)
        self._ticks = round(Fraction(start) / self._base)
        self._start, self._stop = start, stop
        self._output = output
        self._pending: av.Packet | None = None
        self._kept = self._in_range()

    def _in_range(self) -> Iterator[av.Packet]:
        before = None
        for packet in self._packets:
            if packet.dts is None:  # the demuxer's end-of-stream marker
                continue
            t = float(_packet_start(packet) * self._base)
            if t < self._start:
                before = packet
                continue
            if t >= self._stop:
                break
            if before is not None:
                yield before
                before = None
            yield packet

    def until(self, seconds: float) -> None:
        """Mux every kept packet that starts before ``seconds`` (output time)."""
        while True:
            if self._pending is None:
                self._pending = next(self._kept, None)
                if self._pending is None:
                    return
            p = self._pending
            if float((_packet_start(p) - self._ticks) * self._base) >= seconds:
                return
            _move_earlier(p, self._ticks)
            p.stream = self.stream
            self._output.mux(p)
            self._pending = None

    def finish(self) -> None:
        """Mux the rest of the kept packets."""
        self.until(math.inf)

    def close(self) -> None:
        self._source.close()
