"""Audio passthrough: the first audio stream copied into the `.loe` file and written back on decode.

A 1-second 32x16 clip at 25 fps with an AAC tone is made here; the networks are fitted for two steps
(the pictures do not matter, the audio's packets do).
"""

from __future__ import annotations

import hashlib
import json

import av
import numpy as np
import pytest
from typer.testing import CliRunner

import loe_codec
from cli.main import app
from loe_codec.audio import AudioTrack, AudioWarning, copy_audio
from loe_codec.errors import FormatError
from loe_codec.video import AudioDroppedWarning, LoeVideo, encode_video
from loe_codec.video_container import VideoHeader, VideoReader, video_overhead_bytes
from loe_codec.videoio import VideoSource
from support import rewrite_loe_header
from test_video import tiny_video_config

RATE = 8000


def clip_with_audio(path, audio_streams: int = 1, frames: int = 25):
    """A 32x16 clip of ``frames`` frames at 25 fps with ``audio_streams`` one-second AAC tones (440 Hz, 660 Hz...)."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 32, 16, "yuv420p"
        tones = [out.add_stream("aac", rate=RATE) for _ in range(audio_streams)]
        for k in range(frames):
            for p in video.encode(av.VideoFrame.from_ndarray(np.full((16, 32, 3), 9 * k, np.uint8), format="rgb24")):
                out.mux(p)
        t = np.arange(RATE, dtype=np.float32) / RATE
        for n, stream in enumerate(tones):
            wave = 0.3 * np.sin(2 * np.pi * 220 * (n + 2) * t)
            for s in range(0, RATE, 1024):
                frame = av.AudioFrame.from_ndarray(wave[None, s:s + 1024].astype(np.float32), format="fltp",
                                                   layout="mono")
                frame.sample_rate, frame.pts = RATE, s
                for p in stream.encode(frame):
                    out.mux(p)
        for stream in (video, *tones):
            for p in stream.encode():
                out.mux(p)
    return path


def audio_packets(path, stream: int = 0) -> list[tuple[float, str]]:
    """(start in seconds, MD5 of the bytes) of every packet of audio stream ``stream`` of a media file."""
    with av.open(str(path)) as c:
        if len(c.streams.audio) <= stream:
            return []
        s = c.streams.audio[stream]
        return [(float(p.pts * s.time_base), hashlib.md5(bytes(p)).hexdigest()) for p in c.demux(s)
                if p.dts is not None]


def kept(packets: list[tuple[float, str]], start: float, stop: float) -> list[tuple[float, str]]:
    """What a decode of ``[start, stop)`` seconds keeps: the packets that start in it and the last one before
    it (the sound at ``start``, or the codec's priming), times shifted by ``-start``."""
    before = [p for p in packets if p[0] < start - 1e-6][-1:]
    return [(t - start, h) for t, h in before + [p for p in packets if start - 1e-6 <= p[0] < stop]]


def decoded_samples(path) -> int:
    """Audio samples (per channel) ffmpeg decodes from a media file's first audio stream."""
    with av.open(str(path)) as c:
        return sum(f.samples for f in c.decode(c.streams.audio[0]))


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio")
    clip = clip_with_audio(folder / "tone.mp4")
    result = encode_video(clip, folder / "tone.loe", config=tiny_video_config(steps=2), device="cpu",
                          measure_psnr=False)
    return clip, folder / "tone.loe", result


def test_the_first_audio_stream_is_copied_and_not_counted_in_bpp(encoded):
    clip, path, result = encoded
    info = loe_codec.info(path)
    assert (result.audio, info["audio"], info["format_version"]) == ("copied", "copied", 5)
    track = info["audio_track"]
    assert (track["codec"], track["sample_rate"], track["packets"]) == ("aac", RATE, len(audio_packets(clip)))
    assert track["duration"] == pytest.approx(1.0, abs=0.15)
    assert result.audio_bytes == info["audio_bytes"] == track["bytes"] > 0
    assert info["bytes"] == result.bytes == path.stat().st_size
    pictures = result.bytes - result.audio_bytes
    assert result.bpp == pytest.approx(pictures * 8 / (32 * 16 * 25)) == info["bpp"]
    assert sum(info["rate_split"].values()) == info["bytes"] and info["rate_split"]["audio"] == result.audio_bytes
    with VideoReader(path) as reader:  # the rate control's overhead leaves out exactly the audio's bytes
        blobs = sum(len(reader.tile_blob(k)) for k in range(len(reader.header.grid)))
        overhead = video_overhead_bytes(reader.header, blobs / len(reader.header.grid))
        assert abs(blobs + overhead - pictures) <= 2 * len(reader.header.grid)  # offsets' digits may differ


def test_decode_writes_the_packets_back_untouched(encoded, tmp_path):
    clip, path, _ = encoded
    source = audio_packets(clip)
    with LoeVideo(path) as video:
        for name in ("all.mp4", "all.mov", "all.mkv"):
            video.decode_to_file(tmp_path / name, device="cpu")
            out = audio_packets(tmp_path / name)
            assert [h for _, h in out] == [h for _, h in source], name
            if name != "all.mkv":  # Matroska has no edit list: its players also play the AAC priming samples
                assert decoded_samples(tmp_path / name) == decoded_samples(clip)
        starts = [t for t, _ in audio_packets(tmp_path / "all.mp4")]
        assert starts == pytest.approx([t for t, _ in source], abs=1e-3)
        # twice the frame rate: the same span, so the same audio
        video.decode_to_file(tmp_path / "fast.mp4", device="cpu", fps=50)
        assert [h for _, h in audio_packets(tmp_path / "fast.mp4")] == [h for _, h in source]


def test_a_time_span_gets_the_packets_that_overlap_it(encoded, tmp_path):
    clip, path, _ = encoded
    source = audio_packets(clip)
    with LoeVideo(path) as video:
        video.decode_to_file(tmp_path / "cut.mp4", device="cpu", frames=(10, 20))  # 0.4 s .. 0.8 s
    out = audio_packets(tmp_path / "cut.mp4")
    wanted = kept(source, 0.4, 0.8)
    assert [h for _, h in out] == [h for _, h in wanted] and len(wanted) >= 3 and wanted[0][0] < 0
    assert [t for t, _ in out] == pytest.approx([t for t, _ in wanted], abs=1e-3)


def test_containers_without_the_codec_and_image_sequences_get_a_warning(encoded, tmp_path):
    _, path, _ = encoded
    with LoeVideo(path) as video:
        with pytest.warns(AudioWarning, match="webm"):
            video.decode_to_file(tmp_path / "v.webm", device="cpu", frames=(0, 3))
        assert audio_packets(tmp_path / "v.webm") == [] and VideoSource(tmp_path / "v.webm").frames == 3
        with pytest.warns(AudioWarning, match="image sequence"):
            video.decode_to_file(tmp_path / "f_%02d.png", device="cpu", frames=(0, 2))
        assert sorted(p.name for p in tmp_path.glob("f_*.png")) == ["f_00.png", "f_01.png"]
        video.decode_to_file(tmp_path / "mute.mp4", device="cpu", audio=False)
        assert audio_packets(tmp_path / "mute.mp4") == []


def test_no_audio_drops_it_and_writes_the_older_format(tmp_path, recwarn):
    clip = clip_with_audio(tmp_path / "tone.mp4", frames=8)
    result = encode_video(clip, tmp_path / "mute.loe", config=tiny_video_config(steps=2), device="cpu",
                          measure_psnr=False, audio=False)
    assert not [w for w in recwarn if issubclass(w.category, AudioWarning)]
    info = loe_codec.info(tmp_path / "mute.loe")
    assert (result.audio, info["audio"], info["format_version"], info["audio_bytes"]) == ("dropped", "dropped", 4, 0)
    assert "audio_track" not in info


def test_only_the_first_of_two_audio_streams_is_kept(tmp_path):
    clip = clip_with_audio(tmp_path / "two.mp4", audio_streams=2, frames=8)
    with pytest.warns(AudioDroppedWarning, match="first of its 2 audio streams"):
        encode_video(clip, tmp_path / "two.loe", config=tiny_video_config(steps=2), device="cpu", measure_psnr=False)
    with LoeVideo(tmp_path / "two.loe") as video:
        video.decode_to_file(tmp_path / "two.mkv", device="cpu")
    kept = [h for t, h in audio_packets(clip) if t < 8 / 25]  # the 8 frames' span of the first stream
    assert [h for _, h in audio_packets(tmp_path / "two.mkv")] == kept and len(kept) >= 2
    assert audio_packets(tmp_path / "two.mkv", 1) == []


def test_audio_lines_up_with_a_video_that_starts_late(tmp_path):
    # The video's first frame at 0.48 s, the audio from 0 s: the decode starts at the first frame, with the
    # audio packet that ends there (priming) and the ones after it.
    path = tmp_path / "late.mkv"
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 32, 16, "yuv420p"
        tone = out.add_stream("aac", rate=RATE, layout="mono")
        for k in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((16, 32, 3), 20 * k, np.uint8), format="rgb24")
            frame.pts = k + 12
            for p in video.encode(frame):
                out.mux(p)
        for p in video.encode():
            out.mux(p)
        wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)).astype(np.float32)
        samples = av.AudioFrame.from_ndarray(wave[None], format="fltp", layout="mono")
        samples.sample_rate, samples.pts = RATE, 0
        for p in [*tone.encode(samples), *tone.encode()]:
            out.mux(p)
    start = float(VideoSource(path).start_time)
    assert start == pytest.approx(0.48)
    encode_video(path, tmp_path / "late.loe", config=tiny_video_config(steps=2), device="cpu", measure_psnr=False)
    with LoeVideo(tmp_path / "late.loe") as clip:
        clip.decode_to_file(tmp_path / "back.mkv", device="cpu")
    wanted = kept(audio_packets(path), start, start + 0.4)
    out = audio_packets(tmp_path / "back.mkv")
    assert [h for _, h in out] == [h for _, h in wanted] and len(wanted) >= 3
    # Matroska moves a first timestamp below 0 up to 0 (keeping the gaps): compare the gaps
    assert np.diff([t for t, _ in out]) == pytest.approx(np.diff([t for t, _ in wanted]), abs=2e-3)


def test_copy_audio_aligns_to_the_first_video_frame(tmp_path):
    clip = clip_with_audio(tmp_path / "tone.mp4", frames=8)
    from fractions import Fraction

    plain, shifted = copy_audio(clip, Fraction(0)), copy_audio(clip, Fraction(1, 4))
    with plain.open() as a, shifted.open() as b:
        ta = [float(p.pts * a.streams.audio[0].time_base) for p in a.demux(a.streams.audio[0]) if p.dts is not None]
        tb = [float(p.pts * b.streams.audio[0].time_base) for p in b.demux(b.streams.audio[0]) if p.dts is not None]
    assert tb == pytest.approx([t - 0.25 for t in ta], abs=1e-3)
    assert plain.duration - shifted.duration == pytest.approx(0.25, abs=1e-3)


def test_damaged_or_inconsistent_audio_is_refused(encoded, tmp_path):
    _, path, _ = encoded
    with VideoReader(path) as reader:
        track = reader.audio()
    described = track.describe()
    with pytest.raises(FormatError, match="corrupted"):
        AudioTrack.described(track.data[:-1] + bytes([track.data[-1] ^ 1]), described)
    with pytest.raises(FormatError, match="corrupted"):
        AudioTrack.described(track.data[:-1], described)
    with pytest.raises(FormatError, match="reads 'matroska'"):
        AudioTrack.described(track.data, {**described, "container": "ogg"})
    with pytest.raises(FormatError, match="invalid audio description"):
        AudioTrack.described(track.data, {k: v for k, v in described.items() if k != "codec"})

    for name, edit, message in [
            ("no_track.loe", lambda h: h.pop("audio_track"), "audio track do not match"),
            ("v4.loe", lambda h: h.update(version=4), "audio track do not match"),
            ("state.loe", lambda h: h["source"].update(audio="stereo"), "unknown audio state")]:
        bad = tmp_path / name
        rewrite_loe_header(path, bad, edit)
        with pytest.raises(FormatError, match=message):
            VideoReader(bad)


def test_header_round_trip_keeps_the_track(encoded):
    _, path, _ = encoded
    with VideoReader(path) as reader:
        header = reader.header
    back = VideoHeader.from_json(header.to_json())
    assert back.audio_track == header.audio_track and back.version == 5 and back.source.audio == "copied"
    assert json.loads(header.to_json())["audio_track"]["crc32"] == header.audio_track["crc32"]


def test_cli_copies_and_leaves_out_audio(encoded, tmp_path):
    clip, path, _ = encoded
    runner = CliRunner()
    fast = ["--preset", "video-fast", "--steps", "2", "--device", "cpu", "--quiet", "--no-measure"]
    r = runner.invoke(app, ["encode", str(clip), "-o", str(tmp_path / "a.loe"), *fast])
    assert r.exit_code == 0, r.output
    assert "audio copied" in r.stdout and "warning" not in r.stderr
    r = runner.invoke(app, ["info", str(tmp_path / "a.loe")])
    assert r.exit_code == 0 and "audio copied (aac, 8000 Hz" in r.stdout
    r = runner.invoke(app, ["decode", str(path), "-o", str(tmp_path / "a.mp4"), "--device", "cpu", "--quiet"])
    assert r.exit_code == 0 and "with its audio" in r.stdout, r.output
    r = runner.invoke(app, ["decode", str(path), "-o", str(tmp_path / "a.webm"), "--device", "cpu", "--quiet",
                            "--frames", "0:2"])
    assert r.exit_code == 0 and "with its audio" not in r.stdout and "warning:" in r.stderr, r.output
    r = runner.invoke(app, ["decode", str(path), "-o", str(tmp_path / "b.mp4"), "--device", "cpu", "--quiet",
                            "--no-audio"])
    assert r.exit_code == 0 and audio_packets(tmp_path / "b.mp4") == []
    r = runner.invoke(app, ["encode", str(clip), "-o", str(tmp_path / "m.loe"), *fast, "--no-audio"])
    assert r.exit_code == 0 and loe_codec.info(tmp_path / "m.loe")["audio"] == "dropped"
    from support import SAMPLES

    r = runner.invoke(app, ["encode", str(SAMPLES / "kodim23.png"), "-o", str(tmp_path / "i.loe"), "--no-audio"])
    assert r.exit_code == 2 and "video inputs only" in r.output
    assert not (tmp_path / "i.loe").exists()


def test_a_bpp_target_counts_the_pictures_only(tmp_path):
    clip = clip_with_audio(tmp_path / "tone.mp4")
    result = encode_video(clip, tmp_path / "r.loe", config=tiny_video_config(steps=20), device="cpu", bpp=3.0,
                          measure_psnr=False)
    assert result.audio_bytes > 0.3 * result.bytes  # the audio is a large share here: counting it would show
    assert abs(result.bpp - 3.0) / 3.0 < 0.05, result
    assert result.bpp == pytest.approx((result.bytes - result.audio_bytes) * 8 / (32 * 16 * 25))
