"""Decode the committed video golden file and compare the pixels' SHA-256 (see samples/golden/README.md).

``video_tiny.loe`` is video format 4 (made by samples/make_video_golden.py): 4 blocks (2 x 1 tiles x 2 time
chunks) with time banks and unit masks; ``video_tiny_audio.loe`` (format 5) is the same with a copied AAC
tone; ``video_tiny_motion.loe`` (format 6, frozen) the same config fitted along a camera path on a panned cut,
``video_tiny_path.loe`` (format 7) the same with the path range-coded.
Nothing here re-encodes.
"""

import hashlib

import av
import numpy as np
import pytest

import loe_codec
from support import SAMPLES, read_array, tensor_table

GOLDEN = SAMPLES / "golden"
NAME = "video_tiny"
FRAMES, HEIGHT, WIDTH = 6, 16, 24


def _expected(suffix: str) -> str:
    return (GOLDEN / f"{NAME}{suffix}.sha256").read_text().split()[0]


def _digest(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


def _reference() -> np.ndarray:
    """The committed decode, ``[frames, h, w, 3]`` (stored as the frames one above the other)."""
    return read_array(GOLDEN / f"{NAME}_decoded.png").reshape(FRAMES, HEIGHT, WIDTH, 3)


def test_video_golden_file_is_the_committed_one():
    path = GOLDEN / f"{NAME}.loe"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == _expected(".loe"), \
        f"{path} was modified; golden files are only regenerated on purpose (samples/make_video_golden.py)"
    assert set(tensor_table(path)) == {f"block.{k}" for k in range(4)}


def test_video_golden_file_describes_itself():
    data = loe_codec.info(GOLDEN / f"{NAME}.loe")
    assert data["kind"] == "video" and data["format_version"] == 4
    assert (data["width"], data["height"], data["frames"]) == (WIDTH, HEIGHT, FRAMES)
    assert data["blocks"]["count"] == 4 and data["blocks"]["chunks"] == 2
    assert list(data["model"]["time_banks"]) == [1, 2, 1, 1]
    assert data["units_kept"]["tiles_by_fraction"] == {"1": 2, "0.5": 2}


@pytest.mark.parametrize("suffix, fps_factor", [("", 1), ("_fps", 2)])
def test_video_golden_decode_is_unchanged(suffix, fps_factor):
    with loe_codec.open_video(GOLDEN / f"{NAME}.loe") as clip:
        pixels = clip.decode(device="cpu", fps=clip.fps * fps_factor)
    assert pixels.shape == (FRAMES * fps_factor, HEIGHT, WIDTH, 3) and pixels.dtype == np.uint8
    digest = _digest(pixels)
    if digest != _expected(suffix):
        detail = ""
        if fps_factor == 1:
            diff = np.abs(pixels.astype(int) - _reference().astype(int))
            detail = (f"{int((diff > 0).any(axis=3).sum())} of {FRAMES * HEIGHT * WIDTH} pixels differ, "
                      f"by up to {int(diff.max())} levels. ")
        raise AssertionError(f"the decode of samples/golden/{NAME}.loe at {fps_factor}x the frame rate changed: "
                             f"sha256 {digest} != {_expected(suffix)}; {detail}If the change to the format or "
                             "decoder is deliberate, run samples/make_video_golden.py.")


def test_video_golden_reference_image_matches_the_hash_and_is_a_picture():
    reference = _reference()
    assert _digest(reference) == _expected("")
    assert reference.std() > 10 and ((reference == 0) | (reference == 255)).mean() < 0.2


def test_video_golden_partial_decode_matches_the_full_one():
    # Frames 2:5 of a 12x8 region at (6, 4): the same pixels as that slice of the full decode, from the
    # blocks that hold them.
    with loe_codec.open_video(GOLDEN / f"{NAME}.loe") as clip:
        part = clip.decode(device="cpu", frames=(2, 5), region=(6, 4, 12, 8))
    assert np.array_equal(part, _reference()[2:5, 4:12, 6:18])


# --- video format 5: the same frames with an AAC tone beside them (video_tiny_audio.loe) -------------------

AUDIO = GOLDEN / f"{NAME}_audio.loe"


def _audio_packets(path) -> tuple[str, int]:
    """SHA-256 of a media file's first audio stream's packets' bytes, in order, and their count."""
    with av.open(str(path)) as media:
        stream = media.streams.audio[0]
        packets = [bytes(p) for p in media.demux(stream) if p.dts is not None]
    return hashlib.sha256(b"".join(packets)).hexdigest(), len(packets)


def test_video_golden_file_with_audio_is_the_committed_one():
    assert hashlib.sha256(AUDIO.read_bytes()).hexdigest() == _expected("_audio.loe"), \
        f"{AUDIO} was modified; golden files are only regenerated on purpose (samples/make_video_golden.py)"
    assert set(tensor_table(AUDIO)) == {f"block.{k}" for k in range(4)} | {"audio"}
    data = loe_codec.info(AUDIO)
    assert (data["format_version"], data["audio"], data["audio_track"]["codec"]) == (5, "copied", "aac")
    assert data["audio_track"]["sample_rate"] == 8000 and data["audio_bytes"] == data["audio_track"]["bytes"]
    assert data["bpp"] == pytest.approx((data["bytes"] - data["audio_bytes"]) * 8 / (WIDTH * HEIGHT * FRAMES))


def test_video_golden_file_with_audio_decodes_its_pictures_and_its_packets(tmp_path):
    digest, count = (GOLDEN / f"{NAME}_audio_packets.sha256").read_text().split()[:2]
    with loe_codec.open_video(AUDIO) as clip:
        assert _digest(clip.decode(device="cpu")) == _expected("")  # the same blocks as video_tiny.loe
        for name in ("back.mkv", "back.mp4"):
            clip.decode_to_file(tmp_path / name, device="cpu")
            assert _audio_packets(tmp_path / name) == (digest, int(count)), name


# --- fitted along a camera path: video format 6 (video_tiny_motion.loe, the path as float32, frozen) and
# video format 7 (video_tiny_path.loe, the path range-coded, the blocks' domains grown to hold it) -----------

MOTION = GOLDEN / f"{NAME}_motion.loe"
PATH = GOLDEN / f"{NAME}_path.loe"
ALONG_A_PATH = [(MOTION, "_motion", 6), (PATH, "_path", 7)]


@pytest.mark.parametrize("loe, suffix, version", ALONG_A_PATH)
def test_video_golden_file_along_a_path_is_the_committed_one(loe, suffix, version):
    assert hashlib.sha256(loe.read_bytes()).hexdigest() == _expected(f"{suffix}.loe"), \
        f"{loe} was modified; golden files are only regenerated on purpose (samples/make_video_golden.py)"
    assert set(tensor_table(loe)) == {f"block.{k}" for k in range(4)} | {"motion"}
    data = loe_codec.info(loe)
    assert (data["format_version"], data["motion"]) == (version, "global")
    with loe_codec.open_video(loe) as clip:
        offsets = clip.header.motion.offsets
        assert clip.header.motion.widens == (version >= 7)
    steps = offsets.diff(dim=0)
    assert steps.shape == (FRAMES - 1, 2) and bool((steps[:, 0] > 1.5).all())  # the crop moved 2 px a frame
    if version >= 7:
        assert bool((offsets * 16 == (offsets * 16).round()).all())  # on the 1/16-pixel grid


@pytest.mark.parametrize("loe, suffix, version", ALONG_A_PATH)
@pytest.mark.parametrize("fps_factor", [1, 2])
def test_video_golden_decode_along_a_path_is_unchanged(loe, suffix, version, fps_factor):
    with loe_codec.open_video(loe) as clip:
        pixels = clip.decode(device="cpu", fps=clip.fps * fps_factor)
        part = clip.decode(device="cpu", frames=(2, 5), region=(6, 4, 12, 8))
    assert pixels.shape == (FRAMES * fps_factor, HEIGHT, WIDTH, 3)
    assert _digest(pixels) == _expected(suffix + ("_fps" if fps_factor == 2 else "")), \
        f"the decode of {loe} at {fps_factor}x the frame rate changed; if deliberate, run " \
        "samples/make_video_golden.py --motion-only (format 7; format 6 is frozen)"
    if fps_factor == 1:
        assert np.array_equal(part, pixels[2:5, 4:12, 6:18])
