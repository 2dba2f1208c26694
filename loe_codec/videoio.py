"""Video input and output through PyAV (ffmpeg).

Input: any container and codec ffmpeg decodes (mp4, mkv, webm, mov, y4m, ...).
Frames are decoded one by one and converted to RGB uint8; the whole video is
never held in memory. The first video stream is used; the first audio stream
is copied untouched by the encoder (:mod:`loe_codec.audio`), other streams are
dropped.

Output: the container follows the extension (``.mp4`` H.264, ``.mkv`` FFV1
lossless RGB, ``.webm`` VP9, ``.mov`` H.264; ``codec=`` picks another
encoder), or a numbered image sequence when the path holds a ``%d``-style
pattern (``frame_%04d.png``). Files are written under a temporary name and
renamed on success; a failed sequence removes the frames it wrote.
"""

from __future__ import annotations

import os
import re
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .audio import AudioMuxer, AudioTrack, AudioWarning
from .errors import CodecRuntimeError, FormatError, UsageError
from .files import atomic_output, check_output_location, require_file

try:
    import av
except Exception as exc:  # pragma: no cover - depends on the installation
    raise ImportError(f"PyAV is required for video ({exc}); pip install av") from exc

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".y4m", ".mpg", ".mpeg", ".ts", ".mts",
                  ".m2ts", ".flv", ".wmv", ".ogv", ".3gp", ".nut"}
# Default encoder and pixel format per output container.
WRITERS = {".mp4": ("libx264", "yuv420p"), ".m4v": ("libx264", "yuv420p"), ".mov": ("libx264", "yuv420p"),
           ".mkv": ("ffv1", "bgr0"), ".webm": ("libvpx-vp9", "yuv420p")}
# Pixel formats that keep RGB exactly, preferred for lossless codecs chosen with ``codec=``.
_RGB_FORMATS = ("bgr0", "gbrp", "rgb24")
_PATTERN = re.compile(r"%0?\d*d")
_IMAGE_DEMUXERS = ("image2", "_pipe", "gif", "apng", "webp")


def is_sequence_pattern(path: str | os.PathLike) -> bool:
    """True when ``path`` names a numbered image sequence (holds ``%d`` or ``%04d``)."""
    return _PATTERN.search(Path(path).name) is not None


def looks_like_video(path: str | os.PathLike) -> bool:
    """Whether an encode input is a video: by extension, else by probing the container with ffmpeg.

    Still images (and animated GIF/WebP, which libvips reads) count as images.
    """
    path = Path(path)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return True
    if not path.is_file():
        return False
    try:
        with av.open(str(path)) as container:
            name = container.format.name or ""
            if any(k in name for k in _IMAGE_DEMUXERS):
                return False
            return bool(container.streams.video)
    except Exception:  # not something ffmpeg reads: let the image reader report it
        return False


class VideoSource:
    """A video file opened for streaming frame reads.

    Attributes: ``width``, ``height``, ``channels`` (3: RGB), ``frames``,
    ``fps`` (a :class:`~fractions.Fraction`), ``duration`` (seconds, ``frames / fps``),
    ``audio_streams`` (how many audio streams the file holds), ``start_time`` (seconds, a
    :class:`~fractions.Fraction`: the video stream's first timestamp, where its audio lines up),
    ``irregular_intervals`` (a variable frame rate: the shortest and longest time between two frames,
    in seconds, where one is half a frame or more off ``1 / fps``; None for a constant rate or where
    the stream has no timestamps). Frames are counted as they come, at ``fps``.
    """

    channels = 3

    def __init__(self, path: str | os.PathLike):
        self.path = require_file(path)
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise UsageError(f"{self.path}: no video stream")
                stream = container.streams.video[0]
                self.width, self.height = int(stream.width), int(stream.height)
                rate = stream.average_rate or stream.guessed_rate or stream.base_rate
                self.audio_streams = len(container.streams.audio)
                start = stream.start_time if stream.start_time is not None else 0
                self.start_time = Fraction(start) * Fraction(stream.time_base or 0)
                # Count by decoding: container frame counts are missing (mkv, webm) or off (edit lists).
                stamps = [frame.pts for frame in container.decode(stream)]
                self.frames = len(stamps)
                time_base = Fraction(stream.time_base or 0)
        except UsageError:
            raise
        except Exception as exc:  # av.error.* for unreadable or damaged files
            raise UsageError(f"cannot read {self.path} as a video ({_first_line(exc)})") from None
        if not rate or rate <= 0:
            raise UsageError(f"{self.path}: the video stream has no frame rate")
        if self.width < 1 or self.height < 1 or self.frames < 1:
            raise UsageError(f"{self.path}: the video stream holds no decodable frames")
        self.fps = Fraction(rate)
        self.duration = float(self.frames / self.fps)
        self.irregular_intervals = _irregular_intervals(stamps, time_base, self.fps)

    def iter_frames(self) -> Iterator[np.ndarray]:
        """Every frame in order, as uint8 RGB ``[height, width, 3]`` (one in memory at a time)."""
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                count = 0
                for frame in container.decode(stream):
                    if count == self.frames:
                        break
                    if (frame.width, frame.height) != (self.width, self.height):
                        raise UsageError(f"{self.path}: the frame size changes mid-stream "
                                         f"({frame.width}x{frame.height} at frame {count}); not supported")
                    yield frame.to_ndarray(format="rgb24")
                    count += 1
        except UsageError:
            raise
        except Exception as exc:
            raise UsageError(f"cannot decode {self.path} ({_first_line(exc)})") from None
        if count != self.frames:
            raise CodecRuntimeError(f"{self.path}: decoded {count} frames, {self.frames} were counted")


IRREGULAR_INTERVAL = 0.5  # a frame interval this many frames off 1 / fps makes a stream variable-rate


def _irregular_intervals(stamps: list[int | None], time_base: Fraction,
                         fps: Fraction) -> tuple[float, float] | None:
    """``(shortest, longest)`` seconds between consecutive frames where the stream's rate varies, else None."""
    if len(stamps) < 2 or not time_base or any(s is None for s in stamps):
        return None
    gaps = np.diff(np.asarray(stamps, dtype=np.int64)) * float(time_base)
    if np.abs(gaps * float(fps) - 1).max() < IRREGULAR_INTERVAL:
        return None
    return float(gaps.min()), float(gaps.max())


class FrameWindows:
    """Hands out windows ``[start, stop)`` of frames of a stream, in increasing order.

    Frames are pulled from ``frames`` as needed and dropped once no later window
    can need them (windows must not start before the previous one), so memory
    holds one window (plus the overlap) at a time.
    """

    def __init__(self, frames: Iterable[np.ndarray]):
        self._iter = iter(frames)
        self._buffer: list[np.ndarray] = []
        self._first = 0  # frame index of _buffer[0]

    def window(self, start: int, stop: int) -> np.ndarray:
        """Frames ``[start, stop)`` as uint8 ``[stop - start, h, w, C]``."""
        if start < self._first:
            raise ValueError("windows must not move backwards")
        del self._buffer[:start - self._first]
        self._first = start
        while self._first + len(self._buffer) < stop:
            try:
                self._buffer.append(next(self._iter))
            except StopIteration:
                raise CodecRuntimeError(f"the video ended before frame {stop - 1}") from None
        return np.stack(self._buffer[:stop - start])


def as_rate(fps: float | Fraction) -> Fraction:
    """A frame rate as the fraction an encoder wants (29.97 -> 2997/100, 30000/1001 kept)."""
    return Fraction(fps).limit_denominator(1001000) if not isinstance(fps, Fraction) else fps


def check_video_output(path: str | os.PathLike, codec: str | None = None) -> Path:
    """Refuse an output path (or codec) this writer cannot produce, before any work is done."""
    path = Path(path)
    if is_sequence_pattern(path):
        from .imageio import check_output_path

        check_output_path(path.with_name(_PATTERN.sub("0", path.name)))
        if codec is not None:
            raise UsageError("--codec applies to video containers, not to an image sequence")
        return path
    suffix = path.suffix.lower()
    if suffix not in WRITERS:
        raise UsageError(f"{path}: a video output must end in {', '.join(sorted(WRITERS))}, or be an image "
                         "sequence pattern such as frame_%04d.png")
    if codec is not None and codec not in av.codecs_available:
        raise UsageError(f"unknown video codec {codec!r} (ffmpeg has no such encoder)")
    if codec is not None and av.codec.Codec(codec, "w").type != "video":
        raise UsageError(f"{codec!r} is not a video encoder")
    return check_output_location(path)


def _pixel_format(codec_name: str, suffix: str, width: int, height: int) -> str:
    formats = [f.name for f in (av.codec.Codec(codec_name, "w").video_formats or [])]
    default = WRITERS[suffix][1] if WRITERS[suffix][0] == codec_name else None
    wanted = [default] if default else []
    wanted += list(_RGB_FORMATS) if codec_name in ("ffv1", "png", "qtrle", "libx264rgb") else []
    wanted += ["yuv420p", "yuv444p"]
    if width % 2 or height % 2:  # 4:2:0 needs even sizes
        wanted = [f for f in wanted if f != "yuv420p"] + ["yuv444p"]
    for f in wanted:
        if f in formats:
            return f
    if formats:
        return formats[0]
    return "yuv420p"


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float | Fraction,
                codec: str | None = None, options: dict[str, str] | None = None,
                audio: tuple[AudioTrack, float, float] | None = None) -> int:
    """Write uint8 RGB frames ``[h, w, 3]`` to a video file or a numbered image sequence.

    ``options`` go to the encoder (x264/x265 default to CRF 18, preset medium). ``audio``:
    ``(track, start, stop)``, the track's packets of ``[start, stop)`` seconds muxed beside the
    frames (not into an image sequence, nor into a container that cannot hold the codec: those get an
    :class:`~loe_codec.audio.AudioWarning`).
    Returns the number of frames written. Atomic: nothing is left behind on failure.
    """
    path = check_video_output(path, codec)
    if is_sequence_pattern(path):
        if audio is not None:
            warnings.warn(f"{path}: an image sequence has no audio; the {audio[0].codec} track is not written",
                          AudioWarning, stacklevel=2)
        return _write_sequence(frames, path)
    suffix = path.suffix.lower()
    codec_name = codec or WRITERS[suffix][0]
    count = 0
    rate = as_rate(fps)
    with atomic_output(path) as tmp:
        sound = None
        try:
            with av.open(tmp, mode="w") as container:
                stream = None
                for pixels in frames:
                    if stream is None:
                        h, w = pixels.shape[:2]
                        stream = container.add_stream(codec_name, rate=rate)
                        stream.width, stream.height = w, h
                        stream.pix_fmt = _pixel_format(codec_name, suffix, w, h)
                        if codec_name in ("libx264", "libx265"):
                            stream.options = {"crf": "18", "preset": "medium"}
                        stream.options = {**stream.options, **(options or {})}
                        sound = _audio_muxer(audio, container, path)
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels[..., :3]), format="rgb24")
                    for packet in stream.encode(frame):
                        container.mux(packet)
                    count += 1
                    if sound is not None:  # audio up to the end of this frame, interleaved as the video goes
                        sound.until(float(count / rate))
                if stream is None:
                    raise UsageError("no frames to write")
                for packet in stream.encode():
                    container.mux(packet)
                if sound is not None:
                    sound.finish()
        except (UsageError, OSError, FormatError):
            raise
        except Exception as exc:
            raise CodecRuntimeError(f"cannot write {path} with {codec_name} ({_first_line(exc)})") from None
        finally:
            if sound is not None:
                sound.close()
    return count


def _audio_muxer(audio: tuple[AudioTrack, float, float] | None, container, path: Path) -> AudioMuxer | None:
    """A muxer of the audio into ``container``; None (with a warning) where the container cannot hold it."""
    if audio is None:
        return None
    track, start, stop = audio
    try:
        return AudioMuxer(track, container, start, stop)
    except ValueError as exc:
        warnings.warn(f"{path}: the audio ({track.codec}) is not written: {_first_line(exc)}; "
                      "a .mkv output holds any audio codec", AudioWarning, stacklevel=3)
        return None


def _write_sequence(frames: Iterable[np.ndarray], pattern: Path) -> int:
    from .imageio import write_image

    written: list[Path] = []
    try:
        for k, pixels in enumerate(frames):
            name = pattern.with_name(pattern.name % k if "%" in pattern.name else pattern.name)
            write_image(pixels, name)
            written.append(name)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    if not written:
        raise UsageError("no frames to write")
    return len(written)


def read_video_frames(path: str | os.PathLike) -> np.ndarray:
    """All frames of a (small) video as uint8 ``[n, h, w, 3]``: for tests and tools, not for the codec."""
    return np.stack(list(VideoSource(path).iter_frames()))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
