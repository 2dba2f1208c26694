"""Video: PyAV input/output, space-time blocks, the video container, decode selections and the CLI.

Everything runs on ``samples/carphone_12f.mp4`` (88x72, 12 frames at 29.97 fps) with tiny
3-D networks fitted for a few steps: quality is irrelevant here, shapes and plumbing are not.
"""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import loe_codec
from cli.main import app
from loe_codec.config import CodecConfig, FitConfig, ModelConfig, QuantConfig, TileConfig
from loe_codec.errors import FormatError, UsageError
from loe_codec.video import LoeVideo, VideoConfig, encode_video
from loe_codec.video_container import TimeConfig, probe_kind
from loe_codec.video_fit import BlockTarget, _VoxelPool
from loe_codec.video_tiling import TimeGrid
from loe_codec.videoio import FrameWindows, VideoSource, looks_like_video, read_video_frames
from support import SAMPLES, read_array, rewrite_loe_header, smooth_image, write_array

CLIP = SAMPLES / "carphone_12f.mp4"


def tiny_video_config(steps: int = 40) -> VideoConfig:
    """3x3 tiles of 32 px (margin 2) x 3 chunks of 4 frames (margin 1) = 27 blocks of a small 3-D network."""
    return VideoConfig(
        CodecConfig(model=ModelConfig(dims=3, width=12, banks=(1, 2, 1), pe_frequencies=3),
                    fit=FitConfig(steps=steps, samples_per_tile=256, learning_rate=2e-2, warmup_steps=5),
                    quant=QuantConfig(), tile=TileConfig(size=32, margin=2)),
        TimeConfig(chunk=4, margin=1))


@pytest.fixture(scope="module")
def encoded_video(tmp_path_factory):
    out = tmp_path_factory.mktemp("video") / "clip.loe"
    result = encode_video(CLIP, out, config=tiny_video_config(), device="cpu")
    return out, result


@pytest.fixture(scope="module")
def full_video(encoded_video) -> np.ndarray:
    with LoeVideo(encoded_video[0]) as clip:
        return clip.decode(device="cpu")


def _source_frames() -> np.ndarray:
    return read_video_frames(CLIP)


# --- input --------------------------------------------------------------------------------------------

def test_source_facts_and_streaming():
    src = VideoSource(CLIP)
    assert (src.width, src.height, src.frames, src.fps, src.audio_streams) == (88, 72, 12, Fraction(30000, 1001), 0)
    assert src.duration == pytest.approx(12 * 1001 / 30000)
    frames = list(src.iter_frames())
    assert len(frames) == 12 and frames[0].shape == (72, 88, 3) and frames[0].dtype == np.uint8


def _write_timed_clip(path, stamps_ms: list[int]) -> None:
    """A 32x24 H.264 clip in Matroska whose frames carry the given timestamps (milliseconds)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for k, pts in enumerate(stamps_ms):
            frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), 20 * k, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_variable_frame_rate_is_noted(tmp_path):
    steady, varying = tmp_path / "steady.mkv", tmp_path / "varying.mkv"
    _write_timed_clip(steady, [0, 40, 80, 121, 160, 200])  # a millisecond of rounding is no variation
    _write_timed_clip(varying, [0, 53, 106, 120, 173, 226])
    assert VideoSource(steady).irregular_intervals is None and VideoSource(CLIP).irregular_intervals is None
    assert VideoSource(varying).irregular_intervals == pytest.approx((0.014, 0.053))
    cfg = tiny_video_config(steps=5)
    result = encode_video(varying, tmp_path / "v.loe", config=cfg, device="cpu", measure_psnr=False)
    assert any("frame rate varies (frames 14 to 53 ms apart)" in n and "6 frames" in n for n in result.notes)
    assert not encode_video(steady, tmp_path / "s.loe", config=cfg, device="cpu", measure_psnr=False).notes


def test_frame_windows_keep_only_the_current_window():
    windows = FrameWindows(iter([np.full((2, 2, 3), k, np.uint8) for k in range(10)]))
    assert windows.window(0, 4)[:, 0, 0, 0].tolist() == [0, 1, 2, 3]
    assert windows.window(3, 7)[:, 0, 0, 0].tolist() == [3, 4, 5, 6]
    assert len(windows._buffer) == 4  # frames before 3 were dropped
    with pytest.raises(ValueError):
        windows.window(1, 4)
    with pytest.raises(loe_codec.CodecRuntimeError):
        windows.window(8, 12)


def test_video_detection(tmp_path):
    assert looks_like_video(CLIP) and looks_like_video(tmp_path / "x.mkv")
    png = write_array(tmp_path / "x.png", smooth_image(8, 8))
    assert not looks_like_video(png)
    odd = tmp_path / "clip.bin"
    odd.write_bytes(CLIP.read_bytes())
    assert looks_like_video(odd)  # probed by ffmpeg


@pytest.mark.parametrize("content", ["text", "missing", "empty", "truncated"])
def test_bad_video_inputs(tmp_path, content):
    path = tmp_path / "bad.mp4"
    if content == "text":
        path.write_text("not a video\n")
    elif content == "empty":
        path.write_bytes(b"")
    elif content == "truncated":
        path.write_bytes(CLIP.read_bytes()[:600])
    with pytest.raises(UsageError):
        VideoSource(path)


# --- grid and fitting -------------------------------------------------------------------------------

def test_time_weights_sum_to_one_and_touching():
    grid = TimeGrid(frames=13, size=4, margin=1)
    t = torch.linspace(0, 13, 500, dtype=torch.float64)
    total = sum(grid.weight(c, t) for c in grid.chunks())
    assert torch.allclose(total, torch.ones_like(total))
    assert [c.index for c in grid.touching(0.5, 1.5)] == [0]
    assert [c.index for c in grid.touching(2.9, 3.1)] == [0, 1]
    assert grid.window(grid.chunk(1)) == (grid.edges[1] - 1, grid.edges[2] + 1)


def test_voxel_pool_coordinates_point_at_their_voxels():
    f, h, w = 3, 5, 7
    ff, yy, xx = np.meshgrid(np.arange(f), np.arange(h), np.arange(w), indexing="ij")
    voxels = torch.from_numpy(np.stack([xx + 10, yy + 20, ff + 30], -1).astype(np.uint8))
    target = BlockTarget(voxels, (10, 20, 30), (8.0, 18.0, 29.0), (11.0, 9.0, 5.0), seed=1)
    pool = _VoxelPool([target, dataclasses.replace(target, seed=2)], torch.device("cpu"))
    block, coords, values = pool.sample(200, torch.Generator().manual_seed(0))
    pos = coords.double() * torch.tensor([11.0, 9.0, 5.0]) + torch.tensor([8.0, 18.0, 29.0]) - 0.5
    expected = (values.double() + 0.5) * 255.0
    assert torch.allclose(pos, expected, atol=1e-3)
    assert block.tolist() == [0] * 200 + [1] * 200


# --- encode / decode ----------------------------------------------------------------------------------

def test_round_trip_shapes_and_info(encoded_video, full_video):
    path, result = encoded_video
    assert full_video.shape == (12, 72, 88, 3)
    assert result.frames == 12 and result.blocks == 27 and result.bytes == path.stat().st_size
    assert result.bpp == pytest.approx(result.bytes * 8 / (88 * 72 * 12))
    assert result.psnr > 15  # a few steps of a tiny network: not good, but clearly fitted
    assert probe_kind(path) == "video"
    info = loe_codec.info(path)
    assert (info["kind"], info["frames"], info["fps_fraction"], info["audio"]) == ("video", 12, "30000/1001", "none")
    assert info["blocks"]["count"] == 27 and info["model"]["dims"] == 3
    with loe_codec.open(path) as clip:  # the generic entry point dispatches on the file's kind
        assert isinstance(clip, LoeVideo) and clip.frames == 12


def test_evaluate_matches_encode_and_reports_flicker(encoded_video):
    path, result = encoded_video
    data = loe_codec.evaluate(path, CLIP, device="cpu")
    assert data["psnr"] == pytest.approx(result.psnr, abs=1e-6)
    assert len(data["psnr_per_frame"]) == 12
    for key in ("psnr_chunk_borders", "psnr_chunk_interiors", "temporal_diff_rmse_chunk_borders",
                "temporal_diff_rmse_interiors", "psnr_seams", "psnr_interior"):
        assert data[key] is not None and data[key] > 0


def test_no_jump_at_chunk_borders(encoded_video):
    """The network is evaluated just before and just after each chunk edge: the cross-fade is continuous."""
    with LoeVideo(encoded_video[0]) as clip:
        for edge in clip.grid.time.edges[1:-1]:
            req = clip.request()
            req = dataclasses.replace(req, times=(edge - 1e-4, edge + 1e-4))
            a, b = list(clip._renderer.iter_frames(req))
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_frame_time_and_fps_selection(encoded_video, full_video):
    with LoeVideo(encoded_video[0]) as clip:
        part = clip.decode(device="cpu", frames=(3, 9))
        assert np.array_equal(part, full_video[3:9])
        by_time = clip.decode(device="cpu", time=(3 / clip.fps, 9 / clip.fps))
        assert np.array_equal(by_time, full_video[3:9])
        assert np.array_equal(clip.decode(device="cpu", fps=clip.fps), full_video)
        slow = clip.decode(device="cpu", frames=(2, 6), fps=clip.fps * 3)  # 3x slow motion
        assert slow.shape[0] == 12
        assert np.array_equal(slow[1::3], full_video[2:6])  # every third frame falls on an original frame
        half = clip.request(fps=float(clip.fps) / 2)
        assert len(half.times) == 6 and half.times[0] == pytest.approx(1.0)


def test_region_and_scale(encoded_video, full_video):
    with LoeVideo(encoded_video[0]) as clip:
        crop = clip.decode(device="cpu", frames=(0, 4), region=(10, 6, 50, 40))
        assert np.array_equal(crop, full_video[0:4, 6:46, 10:60])
        assert clip.decode(device="cpu", frames=(0, 2), scale=0.5).shape == (2, 36, 44, 3)
        assert clip.decode(device="cpu", frames=(0, 1), width=176).shape == (1, 144, 176, 3)


def test_reads_only_the_blocks_needed(encoded_video):
    with LoeVideo(encoded_video[0]) as clip:
        clip.decode(device="cpu", frames=(0, 2), region=(0, 0, 20, 20))
        assert clip.reader.blocks_read == [0]  # first chunk, top-left tile
    with LoeVideo(encoded_video[0]) as clip:
        clip.decode(device="cpu", frames=(5, 6))  # inside chunk 1, away from its margins
        assert sorted(clip.reader.blocks_read) == list(range(9, 18))


def test_outputs_readable_by_pyav(encoded_video, full_video, tmp_path):
    with LoeVideo(encoded_video[0]) as clip:
        assert clip.decode_to_file(tmp_path / "x.mkv", device="cpu", frames=(0, 5)) == (88, 72, 5)
        lossless = read_video_frames(tmp_path / "x.mkv")
        assert np.array_equal(lossless, full_video[:5])  # FFV1 in RGB: exact
        clip.decode_to_file(tmp_path / "x.mp4", device="cpu", frames=(0, 6))
        mp4 = VideoSource(tmp_path / "x.mp4")
        assert (mp4.width, mp4.height, mp4.frames, mp4.fps) == (88, 72, 6, Fraction(30000, 1001))
        assert av.open(str(tmp_path / "x.mp4")).streams.video[0].codec_context.name == "h264"
        clip.decode_to_file(tmp_path / "odd.mp4", device="cpu", frames=(0, 2), region=(0, 0, 31, 17))
        assert VideoSource(tmp_path / "odd.mp4").width == 31  # odd sizes fall back to 4:4:4
        clip.decode_to_file(tmp_path / "x.webm", device="cpu", frames=(0, 2), fps=10)
        assert VideoSource(tmp_path / "x.webm").fps == 10
        clip.decode_to_file(tmp_path / "f_%03d.png", device="cpu", frames=(2, 5))
        assert np.array_equal(read_array(tmp_path / "f_002.png"), full_video[4])
        assert sorted(p.name for p in tmp_path.glob("f_*.png")) == ["f_000.png", "f_001.png", "f_002.png"]


@pytest.mark.parametrize("selection", [dict(frames=(5, 20)), dict(frames=(4, 4)), dict(frames=(-1, 3)),
                                       dict(time=(0.0, 10.0)), dict(frames=(0, 2), time=(0.0, 0.1)),
                                       dict(fps=0), dict(fps=float("nan")), dict(region=(80, 0, 20, 20)),
                                       dict(scale=0)])
def test_bad_selections(encoded_video, selection):
    with LoeVideo(encoded_video[0]) as clip, pytest.raises(UsageError):
        clip.request(**selection)


def test_a_region_outside_is_told_against_the_frame(encoded_video):
    with LoeVideo(encoded_video[0]) as clip, pytest.raises(UsageError, match=r"inside the 88x72 frame"):
        clip.request(region=(80, 0, 20, 20))


def test_bad_outputs_leave_nothing(encoded_video, tmp_path):
    with LoeVideo(encoded_video[0]) as clip:
        for name, codec in (("x.avi", None), ("x.png", None), ("x.mp4", "nonesuch"), ("x.mp4", "aac")):
            with pytest.raises(UsageError):
                clip.decode_to_file(tmp_path / name, codec=codec, device="cpu", frames=(0, 1))
    assert list(tmp_path.iterdir()) == []


def test_damaged_and_foreign_files(encoded_video, tmp_path, encoded):
    path = encoded_video[0]
    newer = rewrite_loe_header(path, tmp_path / "newer.loe", lambda h: h.update(version=99))
    with pytest.raises(FormatError, match="newer"):
        LoeVideo(newer)
    grid = rewrite_loe_header(path, tmp_path / "grid.loe", lambda h: h["source"].update(frames=13))
    with pytest.raises(FormatError):
        LoeVideo(grid)
    with pytest.raises(FormatError, match="not a video"):
        LoeVideo(encoded[0])  # an image file
    with pytest.raises(FormatError):
        loe_codec.LoeImage(path)  # an image reader refuses a video file
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF  # inside the last block
    (tmp_path / "flip.loe").write_bytes(bytes(raw))
    with LoeVideo(tmp_path / "flip.loe") as clip, pytest.raises(FormatError, match="corrupted"):
        clip.decode(device="cpu")


# --- command line -------------------------------------------------------------------------------------

FAST_VIDEO = ["--preset", "video-fast", "--steps", "3", "--tile", "48", "--chunk", "6", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def cli_video(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_video") / "clip.loe"
    r = CliRunner().invoke(app, ["encode", str(CLIP), "-o", str(out), *FAST_VIDEO, "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["frames"] == 12 and data["blocks"] == 8 and data["audio"] == "none"
    return out


def test_cli_info_eval_decode(cli_video, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["info", str(cli_video)])
    assert r.exit_code == 0 and "12 frames" in r.stdout and "29.970 fps" in r.stdout, r.output
    r = runner.invoke(app, ["eval", str(cli_video), str(CLIP), "--device", "cpu", "-q", "--json"])
    assert r.exit_code == 0, r.output
    assert {"psnr", "bpp", "psnr_chunk_borders", "psnr_per_frame"} <= set(json.loads(r.stdout))
    out = tmp_path / "o.mp4"
    r = runner.invoke(app, ["decode", str(cli_video), "-o", str(out), "--frames", "2:8", "--region", "0,0,40,32",
                            "--fps", "59.94", "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    src = VideoSource(out)
    assert (src.width, src.height, src.frames) == (40, 32, 12) and "12 frames" in r.stdout
    r = runner.invoke(app, ["decode", str(cli_video), "-o", str(tmp_path / "t.mkv"), "--time", ":0.2", "-q",
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert VideoSource(tmp_path / "t.mkv").frames == 6


@pytest.mark.parametrize("args", [["--frames", "3"], ["--frames", "a:b"], ["--frames", "0:99"], ["--time", "1:x"],
                                  ["--fps", "-1"], ["--codec", "nonesuch"], ["-o", "x.gif"]])
def test_cli_bad_video_decode(cli_video, tmp_path, args):
    out = tmp_path / "x.mp4"
    r = CliRunner().invoke(app, ["decode", str(cli_video), "-o", str(out), "--device", "cpu", "-q", *args])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_video_only_options_on_images(encoded, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["decode", str(encoded[0]), "-o", str(tmp_path / "x.png"), "--frames", "0:1", "-q"])
    assert r.exit_code == 2 and "video" in r.stderr
    r = runner.invoke(app, ["encode", str(encoded[1]), "-o", str(tmp_path / "x.loe"), "--chunk", "4", "--quiet"])
    assert r.exit_code == 2 and "video" in r.stderr
    r = runner.invoke(app, ["encode", str(CLIP), "-o", str(tmp_path / "x.loe"), "--preset", "balanced", "--quiet"])
    assert r.exit_code == 2 and "video preset" in r.stderr


@pytest.mark.parametrize("content", ["missing", "text"])
def test_cli_video_decode_of_an_unreadable_file_says_why(tmp_path, content):
    """Video options on a file that is not a readable .loe: the file's problem, not "video files only"."""
    src = tmp_path / "clip.loe"
    if content == "text":
        src.write_text("not a codec file\n")
    out = tmp_path / "x.mp4"
    r = CliRunner().invoke(app, ["decode", str(src), "-o", str(out), "--frames", "0:2", "-q"])
    assert r.exit_code == 2, r.output
    assert ("no such file" if content == "missing" else "not a readable .loe file") in r.stderr
    assert "video .loe files only" not in r.stderr and not out.exists()


def test_time_banks_encode_decode_and_are_refused_in_older_versions(tmp_path, encoded_video):
    base = tiny_video_config()
    model = dataclasses.replace(base.codec.model, banks=(1, 2, 2, 1), time_banks=(1, 1, 2, 1))
    config = dataclasses.replace(base, codec=dataclasses.replace(base.codec, model=model))
    path = tmp_path / "tb.loe"
    result = encode_video(CLIP, path, config=config, device="cpu")
    assert result.psnr > 14  # it learned the clip (40 steps: ~15.5 dB)
    with LoeVideo(path) as clip:
        assert clip.header.version == 4 and clip.header.config.model.time_banks == (1, 1, 2, 1)
        full = clip.decode(device="cpu")
        crop = clip.decode(device="cpu", frames=(2, 7), region=(10, 6, 50, 40))
    assert np.array_equal(crop, full[2:7, 6:46, 10:60])
    older = rewrite_loe_header(path, tmp_path / "v3.loe", lambda h: h.update(version=3))
    with pytest.raises(FormatError, match="time banks"):
        LoeVideo(older)
    # A version-3 file (no time banks) still reads.
    v3 = rewrite_loe_header(encoded_video[0], tmp_path / "plain_v3.loe", lambda h: h.update(version=3))
    with LoeVideo(v3) as clip:
        assert clip.header.version == 3 and clip.header.config.model.time_banks is None
