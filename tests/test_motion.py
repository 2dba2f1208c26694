"""The camera path: estimating a pan, fitting blocks along it, storing it in the file and decoding with it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from loe_codec.config import CodecConfig, FitConfig, ModelConfig, QuantConfig, TileConfig
from loe_codec.decode import TileCache
from loe_codec.errors import FormatError, UsageError
from loe_codec.metrics import psnr_from_mse
from loe_codec.motion import CameraPath, _sample, camera_path, frame_shift, luma
from loe_codec.path_coding import PATH_STEP, on_grid
from loe_codec.video import LoeVideo, VideoConfig, encode_video
from loe_codec.video_container import MOTION_TENSOR, TimeConfig, VideoHeader
from loe_codec.video_fit import BlockTarget, _VoxelPool
from loe_codec.video_render import VideoRenderer
from loe_codec.videoio import read_video_frames, write_video
from support import SAMPLES, read_array, rewrite_loe_header

STEP = (2, -1)  # the synthetic pan: pixels per frame (x, y)
FRAMES, W, H = 8, 40, 32


def pan_frames() -> np.ndarray:
    """``FRAMES`` crops of a photo, the crop window moving by ``STEP`` a frame: frame ``f``'s pixel ``q``
    shows the photo's ``q + origin + f * STEP``, so the camera path is ``f * STEP``."""
    photo = read_array(SAMPLES / "kodim23.png")[100:200, 200:320]
    x0, y0 = 10, 40
    return np.stack([photo[y0 + f * STEP[1]:y0 + f * STEP[1] + H, x0 + f * STEP[0]:x0 + f * STEP[0] + W]
                     for f in range(FRAMES)])


@pytest.fixture(scope="module")
def pan_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("motion") / "pan.mkv"
    write_video(pan_frames(), path, 25, codec="ffv1")
    return path


def pan_config(steps: int = 150) -> VideoConfig:
    """One 40x32 tile, one chunk of the 8 frames: a single block network."""
    return VideoConfig(
        CodecConfig(model=ModelConfig(dims=3, width=24, banks=(1, 2, 1), pe_frequencies=4),
                    fit=FitConfig(steps=steps, samples_per_tile=512, learning_rate=1e-2, warmup_steps=10),
                    quant=QuantConfig(slope=1e-6), tile=TileConfig(size=64, margin=2)),
        TimeConfig(chunk=8, margin=0), motion="global")


def test_frame_shift_recovers_a_sub_pixel_translation():
    y = luma(read_array(SAMPLES / "kodim23.png")[:256, :256])
    for shift in [(2.3, -1.7), (-6.6, 4.2), (0.0, 0.0)]:
        cur = _sample(torch.from_numpy(y), torch.tensor(shift, dtype=torch.float64)).numpy()  # cur(q) = y(q + shift)
        assert np.allclose(frame_shift(y, cur), shift, atol=0.05), shift


def test_frame_shift_follows_the_background_not_a_moving_object():
    y = luma(read_array(SAMPLES / "kodim23.png")[:256, :256])
    cur = _sample(torch.from_numpy(y), torch.tensor([3.0, 1.0], dtype=torch.float64)).numpy()
    cur[100:150, 100:150] = np.roll(cur, (-9, 7), axis=(0, 1))[100:150, 100:150]  # an object moving its own way
    assert np.allclose(frame_shift(y, cur), (3.0, 1.0), atol=0.1)


def test_camera_path_of_a_pan(pan_clip):
    path = camera_path(read_video_frames(pan_clip))
    expected = torch.tensor([[f * STEP[0], f * STEP[1]] for f in range(FRAMES)], dtype=torch.float32)
    assert path.frames == FRAMES
    assert torch.allclose(path.offsets, expected, atol=0.25), path.offsets


def test_camera_path_interpolates_and_centres_each_block():
    path = CameraPath(torch.tensor([[0.0, 0.0], [2.0, -1.0], [4.0, -2.0], [10.0, 0.0]]))
    at = path.at(torch.tensor([0.0, 0.5, 1.0, 2.5, 3.0, 3.5, 9.0], dtype=torch.float64))
    assert torch.allclose(at[:, 0], torch.tensor([0.0, 0.0, 1.0, 4.0, 7.0, 10.0, 10.0], dtype=torch.float64))
    shifts = path.shifts(1, 3, torch.tensor([1.5, 2.5], dtype=torch.float64))
    assert torch.allclose(shifts, torch.tensor([[-1.0, 0.5], [1.0, -0.5]], dtype=torch.float64))  # mean of frames 1, 2
    with pytest.raises(ValueError):
        CameraPath(torch.zeros(3))
    with pytest.raises(ValueError):
        CameraPath(torch.tensor([[0.0, float("nan")]]))


def test_block_domains_grow_to_hold_the_shifted_pixels():
    path = CameraPath(torch.tensor([[0.0, 0.0], [2.0, -1.0], [4.0, -2.0], [10.0, 0.0]]))
    # frames 0-2: mean (2, -1), shifts x -2..+2, y -1..+1; frames 1-3: mean (16/3, -1), x -10/3..+14/3, y -1..+1
    inner = ((-4.0, -4.0, 48.0, 40.0), (-4, -4, 48, 40))  # a tile inside the frame: the window is the domain
    assert path.block_domain(*inner, 0, 3) == pytest.approx((-6.0, -5.0, 52.0, 42.0))
    assert path.block_domain(*inner, 1, 4) == pytest.approx((-4 - 10 / 3, -5.0, 56.0, 42.0))
    edge = ((-4.0, -4.0, 48.0, 40.0), (0, 0, 44, 36))  # at the frame's top left: 4 pixels of margin outside it
    assert path.block_domain(*edge, 0, 3) == pytest.approx((-4.0, -4.0, 50.0, 41.0))  # grown on the right only
    assert path.block_domain(*edge, 1, 4) == pytest.approx((-4.0, -4.0, 52 + 2 / 3, 41.0))
    assert CameraPath(torch.zeros(4, 2)).block_domain(*inner, 0, 4) == (-4.0, -4.0, 48.0, 40.0)
    assert CameraPath(path.offsets, widens=False).block_domain(*inner, 0, 3) == (-4.0, -4.0, 48.0, 40.0)


def test_every_shifted_sample_lies_in_its_block_domain(pan_clip):
    from loe_codec.video_encode import block_target
    from loe_codec.video_tiling import SpaceTimeGrid

    frames = torch.from_numpy(read_video_frames(pan_clip))
    grid = SpaceTimeGrid.of(W, H, FRAMES, 24, 2, 8, 0)  # 2 x 2 tiles with 2-pixel margins
    path = camera_path(frames.numpy())
    targets = [block_target(frames, 0, grid, b, 0, path) for b in grid.blocks_of_chunk(grid.time.chunks()[0])]
    _, coords, _ = _VoxelPool(targets, torch.device("cpu")).sample(4000, torch.Generator().manual_seed(0))
    assert float(coords.min()) >= 0 and float(coords.max()) <= 1


def test_voxel_pool_shifts_each_frame_by_the_path():
    voxels = torch.zeros(3, 4, 5, 3, dtype=torch.uint8)
    shift = torch.tensor([[1.0, -2.0], [0.0, 0.0], [-3.0, 4.0]])
    plain = BlockTarget(voxels, (0, 0, 0), (0.0, 0.0, 0.0), (5.0, 4.0, 3.0), seed=0)
    moved = dataclasses.replace(plain, shift=shift)
    gen = torch.Generator().manual_seed(0)
    _, a, _ = _VoxelPool([plain], torch.device("cpu")).sample(64, gen)
    _, b, _ = _VoxelPool([moved], torch.device("cpu")).sample(64, torch.Generator().manual_seed(0))
    frame = (a[:, 2] * 3 - 0.5).round().long()
    assert torch.allclose(b[:, 0], a[:, 0] + shift[frame, 0] / 5.0)
    assert torch.allclose(b[:, 1], a[:, 1] + shift[frame, 1] / 4.0)
    assert torch.equal(b[:, 2], a[:, 2])
    with pytest.raises(ValueError, match="shift"):
        _VoxelPool([dataclasses.replace(plain, shift=shift[:2])], torch.device("cpu"))


@pytest.fixture(scope="module")
def pan_encoded(pan_clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("motion_enc") / "pan.loe"
    return out, encode_video(pan_clip, out, config=pan_config(), device="cpu")


def test_encode_stores_the_path_and_decodes_along_it(pan_clip, pan_encoded):
    path, result = pan_encoded
    source = read_video_frames(pan_clip)
    with LoeVideo(path) as clip:
        assert clip.header.version == 7 and clip.info()["motion"] == "global"
        # the estimated path rounded onto the stored grid (at most half a step off), as the blocks were fitted
        assert torch.equal(clip.header.motion.offsets, on_grid(camera_path(source)).offsets)
        assert (clip.header.motion.offsets - camera_path(source).offsets).abs().max() <= PATH_STEP / 2
        assert clip.reader._file.get_slice(MOTION_TENSOR).get_dtype() == "U8"
        full = clip.decode(device="cpu")
        crop = clip.decode(device="cpu", frames=(2, 7), region=(5, 3, 30, 20))
        assert np.array_equal(crop, full[2:7, 3:23, 5:35])
        # The same networks read at pixel coordinates (the path ignored) are far off: the fit followed the path.
        plain = VideoRenderer(TileCache(clip.reader, 4), clip.grid)
        req = clip.request()
        unaligned = np.stack(list(plain.iter_frames(req)))
    def mean_psnr(decoded: np.ndarray) -> float:  # mean per-frame PSNR, as the encoder reports
        mse = ((decoded.astype(np.float64) - source) ** 2).mean(axis=(1, 2, 3)) / 255.0 ** 2
        return float(np.mean([psnr_from_mse(float(m), peak=1.0) for m in mse]))

    assert abs(mean_psnr(full) - result.psnr) < 0.01
    assert mean_psnr(full) > mean_psnr(unaligned) + 3


def test_motion_is_a_choice_with_a_clear_error(pan_clip, tmp_path):
    with pytest.raises(UsageError, match="motion"):
        encode_video(pan_clip, tmp_path / "x.loe", config=pan_config(), motion="affine", device="cpu")
    assert not (tmp_path / "x.loe").exists()
    result = encode_video(pan_clip, tmp_path / "none.loe", config=pan_config(steps=5), motion="none", device="cpu")
    with LoeVideo(result.path) as clip:
        assert clip.header.version == 4 and clip.header.motion is None and "motion" not in clip.info()


def test_files_with_a_bad_or_missing_path_are_refused(pan_encoded, tmp_path):
    path, _ = pan_encoded
    older = rewrite_loe_header(path, tmp_path / "v5.loe", lambda h: h.update(version=5))
    with pytest.raises(FormatError, match="motion"):
        LoeVideo(older)
    odd = rewrite_loe_header(path, tmp_path / "odd.loe", lambda h: h.update(motion="affine"))
    with pytest.raises(FormatError, match="motion"):
        LoeVideo(odd)
    unlisted = rewrite_loe_header(path, tmp_path / "unlisted.loe", lambda h: h.pop("motion"))
    with pytest.raises(FormatError, match="tensors that do not match"):
        LoeVideo(unlisted)
    with LoeVideo(path) as clip:  # a header alone holds no path: parsed without its file, it is refused
        text = clip.header.to_json()
        stored = clip.header.motion.offsets
    with pytest.raises(FormatError, match="camera path"):
        VideoHeader.from_json(text)
    assert VideoHeader.from_json(text, lambda frames, crc: CameraPath(torch.ones(frames, 2))).motion.offsets.sum() > 0
    no_crc = rewrite_loe_header(path, tmp_path / "no_crc.loe", lambda h: h.pop("motion_crc32"))
    with pytest.raises(FormatError, match="motion_crc32"):
        LoeVideo(no_crc)

    from safetensors.torch import load_file, save_file
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    save_file({k: v for k, v in tensors.items() if k != MOTION_TENSOR}, str(tmp_path / "lost.loe"), metadata=meta)
    with pytest.raises(FormatError, match="camera path"):
        LoeVideo(tmp_path / "lost.loe")
    coded = tensors[MOTION_TENSOR]
    flipped = coded.clone()
    flipped[-1] ^= 1
    for name, bad in (("flipped", flipped), ("short", coded[:-1]), ("float", stored)):
        save_file({**tensors, MOTION_TENSOR: bad.contiguous()}, str(tmp_path / f"{name}.loe"), metadata=meta)
        with pytest.raises(FormatError, match="camera path"):
            LoeVideo(tmp_path / f"{name}.loe")

    # Video format 6 (read only) held the path as float32 [frames, 2] and no CRC: the same file so decodes alike.
    def as_v6(h: dict) -> None:
        h.update(version=6)
        h.pop("motion_crc32")
    save_file({**tensors, MOTION_TENSOR: stored.contiguous()}, str(tmp_path / "v6.loe"), metadata=meta)
    v6 = rewrite_loe_header(tmp_path / "v6.loe", tmp_path / "v6h.loe", as_v6)
    with LoeVideo(v6) as old:  # its blocks keep their tiles' domains (the golden format-6 file guards its decode)
        assert old.header.version == 6 and torch.equal(old.header.motion.offsets, stored)
        assert not old.header.motion.widens and old.decode(device="cpu").shape == (FRAMES, H, W, 3)
    for name, bad in (("short", stored[:-1]), ("half", stored.half()), ("nan", torch.full_like(stored, float("nan"))),
                      ("coded", coded)):
        save_file({**tensors, MOTION_TENSOR: bad.contiguous()}, str(tmp_path / f"v6{name}.loe"), metadata=meta)
        with pytest.raises(FormatError, match="camera path"):
            LoeVideo(rewrite_loe_header(tmp_path / f"v6{name}.loe", tmp_path / f"v6{name}h.loe", as_v6))


def test_largest_shift_is_the_farthest_a_block_pans():
    path = CameraPath(torch.tensor([[0.0, 0.0], [2.0, -1.0], [4.0, -2.0], [10.0, 0.0]]))
    assert path.largest_shift([(0, 3)]) == pytest.approx(2.0)
    assert path.largest_shift([(0, 3), (1, 4)]) == pytest.approx(14 / 3)  # frame 3: 10 - 16/3
    assert path.largest_shift([(0, 4)]) == pytest.approx(6.0)  # frame 3 against the mean 4
    assert CameraPath(torch.zeros(4, 2)).largest_shift([(0, 4)]) == 0


@pytest.mark.parametrize("threshold, follows", [(6.0, True), (8.0, False)])
def test_auto_follows_a_pan_not_a_small_shift(pan_clip, tmp_path, monkeypatch, threshold, follows):
    import importlib

    # the pan clip moves (2, -1) px a frame over 8 frames: up to 7 px from the block's mean position
    monkeypatch.setattr(importlib.import_module("loe_codec.motion"), "PAN_PIXELS", threshold)
    result = encode_video(pan_clip, tmp_path / "auto.loe", config=pan_config(steps=5), motion="auto", device="cpu",
                          measure_psnr=False)
    assert result.motion == ("global" if follows else "none")
    with LoeVideo(result.path) as clip:
        assert (clip.header.motion is not None) == follows and clip.header.version == (7 if follows else 4)


def test_cli_motion_option(pan_clip, tmp_path):
    from typer.testing import CliRunner

    from cli.main import app

    runner = CliRunner()
    fast = ["--preset", "video-fast", "--steps", "5", "--device", "cpu", "--quiet", "--no-measure"]
    out = tmp_path / "pan.loe"
    r = runner.invoke(app, ["encode", str(pan_clip), "-o", str(out), "--motion", "global", *fast])
    assert r.exit_code == 0 and "blocks along the camera path" in r.stdout, r.output
    r = runner.invoke(app, ["info", str(out)])
    assert r.exit_code == 0 and "motion global" in r.stdout and "format v7" in r.stdout, r.output
    r = runner.invoke(app, ["encode", str(pan_clip), "-o", str(tmp_path / "auto.loe"), "--motion", "auto", *fast])
    assert r.exit_code == 0 and "along the camera path" not in r.stdout, r.output  # 7 px: below PAN_PIXELS
    r = runner.invoke(app, ["encode", str(pan_clip), "-o", str(tmp_path / "bad.loe"), "--motion", "affine", *fast])
    assert r.exit_code == 2 and r.stderr.strip().startswith("error:") and "motion" in r.stderr, r.output
    assert not (tmp_path / "bad.loe").exists()
    image = tmp_path / "frame.png"
    import pyvips
    pyvips.Image.new_from_array(pan_frames()[0]).write_to_file(str(image))
    r = runner.invoke(app, ["encode", str(image), "-o", str(tmp_path / "img.loe"), "--motion", "global", "--quiet"])
    assert r.exit_code == 2 and "--motion applies to video inputs only" in r.stderr, r.output
