"""Regenerate the video golden `.loe` file the test suite decodes (tests/test_golden_video.py).

    python samples/make_video_golden.py

Encodes a 24x16 crop of the first 6 frames of ``carphone_12f.mp4`` with a tiny explicit config on the CPU
(2 x 1 spatial tiles x 2 time chunks: 4 blocks, with blended seams in space and time) and writes

* ``golden/video_tiny.loe``: the encoded file (video format 4; committed; the test decodes *this* file),
* ``golden/video_tiny.loe.sha256``: SHA-256 of that file's bytes (the test checks the committed file is unchanged),
* ``golden/video_tiny.sha256``: SHA-256 of its full decode (raw bytes of the uint8 ``[frames, h, w, 3]`` array),
* ``golden/video_tiny_fps.sha256``: the same for a decode at twice the frame rate (the time axis resampled),
* ``golden/video_tiny_decoded.png``: the full decode's frames one above the other (only to show what
  differs when the hash breaks),
* ``golden/video_tiny_audio.loe`` (video format 5; committed): the same frames with an AAC tone beside
  them, so the same blocks and the copied audio; ``golden/video_tiny_audio.loe.sha256``: SHA-256 of its bytes;
  ``golden/video_tiny_audio_packets.sha256``: SHA-256 of its audio packets' bytes, in order (what a decode
  writes back),
* ``golden/video_tiny_path.loe`` (video format 7; committed): the same config fitted along a camera path
  (``motion="global"``, the path range-coded) on a panned cut of the source (the crop moves PAN pixels right
  each frame); ``.loe.sha256``: its bytes' SHA-256; ``golden/video_tiny_path.sha256`` / ``_fps.sha256``:
  SHA-256 of its decode at the source's / twice the frame rate (the path interpolated between frames),
* ``golden/README.md``'s video sections, which say how the files were made.

``python samples/make_video_golden.py --motion-only`` makes the format-7 files (and their README section) alone,
leaving the others as they are. ``golden/video_tiny_motion.*`` (video format 6, its path stored as float32) is
frozen: made by this script's ``--motion-only`` at commit 7e7593b, the last that wrote format 6.

Only regenerate on purpose, after a deliberate change to the video format or its decoder: the point of the
golden test is to catch silent changes. The test never re-encodes.
"""

from __future__ import annotations

import platform
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import pyvips
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # loe_codec; make_golden

import loe_codec  # noqa: E402
from loe_codec.config import CodecConfig, FitConfig, ModelConfig, QuantConfig, TileConfig  # noqa: E402
from loe_codec.video import VideoConfig, encode_video, open_video  # noqa: E402
from loe_codec.video_container import TimeConfig  # noqa: E402
from make_golden import OUT, VIDEO_SECTION as SECTION, sha256_of  # noqa: E402

SOURCE = "carphone_12f.mp4"
FRAMES = 6
CROP = (32, 24, 24, 16)  # left, top, width, height
CONFIG = VideoConfig(
    CodecConfig(
        # Banks in space and time (time banks counted apart: format 4), a few PE frequencies and a high
        # learning rate so that 60 steps give a real (if blurry) picture.
        model=ModelConfig(dims=3, width=8, banks=(1, 2, 2, 1), time_banks=(1, 2, 1, 1), pe_frequencies=3),
        fit=FitConfig(steps=60, samples_per_tile=256, learning_rate=2e-2, warmup_steps=5, seed=0),
        # Laplace-coded weights against the seeded reference, at a slope where some blocks drop half their
        # units (two of the four: unit masks are exercised), with a few steps of quantization-aware fine-tuning.
        quant=QuantConfig(scheme="laplace", slope=8e-3, qat_steps=10, qat_learning_rate=2e-3,
                          unit_ladder=(1.0, 0.5)),
        tile=TileConfig(size=16, margin=2),
        preset="golden",
    ),
    TimeConfig(chunk=4, margin=1),
)
FPS_FACTOR = 2
PAN = 2  # pixels the crop of the file fitted along a camera path moves right each frame
MOTION_SECTION = "## Video format 7"  # its README section, after the video format 4 one and the frozen format 6 one

AUDIO_RATE = 8000
TONE_HZ = 440


def cut_source(path: Path, audio: bool = False, pan: int = 0) -> None:
    """The first FRAMES frames of SOURCE, cropped to CROP, as lossless FFV1 (bgr0) in ``path`` (Matroska);
    with ``audio``, beside them an AAC tone (mono, AUDIO_RATE Hz) as long as the frames; with ``pan`` the
    crop moves ``pan`` pixels right each frame."""
    left, top, w, h = CROP
    with av.open(str(HERE / SOURCE)) as inp, av.open(str(path), "w") as out:
        stream_in = inp.streams.video[0]
        stream = out.add_stream("ffv1", rate=stream_in.average_rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "bgr0"
        if audio:
            sound = out.add_stream("aac", rate=AUDIO_RATE, layout="mono")
            n = int(AUDIO_RATE * FRAMES / stream_in.average_rate)
            wave = (0.3 * np.sin(2 * np.pi * TONE_HZ * np.arange(n) / AUDIO_RATE)).astype(np.float32)
            samples = av.AudioFrame.from_ndarray(wave[None], format="fltp", layout="mono")
            samples.sample_rate, samples.pts = AUDIO_RATE, 0
            for packet in [*sound.encode(samples), *sound.encode()]:
                out.mux(packet)
        for k, frame in enumerate(inp.decode(stream_in)):
            if k == FRAMES:
                break
            x = left + k * pan
            rgb = frame.to_ndarray(format="rgb24")[top:top + h, x:x + w]
            small = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="bgr0")
            small.pts, small.time_base = k, 1 / stream_in.average_rate
            for packet in stream.encode(small):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def decodes(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The full decode ``[frames, h, w, 3]`` and the decode at FPS_FACTOR times the frame rate."""
    with open_video(path) as clip:
        return clip.decode(device="cpu"), clip.decode(device="cpu", fps=clip.fps * FPS_FACTOR)


def audio_packets_digest(path: Path) -> tuple[str, int]:
    """SHA-256 of the bytes of the first audio stream's packets of a media file, in order, and their count."""
    with av.open(str(path)) as media:
        stream = media.streams.audio[0]
        packets = [bytes(p) for p in media.demux(stream) if p.dts is not None]
    return sha256_of(b"".join(packets)), len(packets)


def make_motion() -> str:
    """Write the format-7 golden files (fitted along a camera path); returns their README section."""
    loe = OUT / "video_tiny_path.loe"
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "pan.mkv"
        cut_source(clip, pan=PAN)
        result = encode_video(clip, loe, config=CONFIG, device="cpu", motion="global")
    loe.chmod(0o644)
    frames, faster = decodes(loe)
    data = loe_codec.info(loe)
    (OUT / "video_tiny_path.loe.sha256").write_text(f"{sha256_of(loe.read_bytes())}\n")
    (OUT / "video_tiny_path.sha256").write_text(f"{sha256_of(frames.tobytes())}\n")
    (OUT / "video_tiny_path_fps.sha256").write_text(f"{sha256_of(faster.tobytes())}\n")
    with open_video(loe) as video:
        path = [[float(v) for v in row] for row in video.header.motion.offsets]
        coded = video.reader._file.get_slice("motion").get_shape()[0]
    return f"""{MOTION_SECTION} (`video_tiny_path.*`)

`tests/test_golden_video.py` also decodes `video_tiny_path.loe` (video format {data['format_version']}: blocks
fitted along a camera path, their domains grown to hold the shifted pixels; the path stored range-coded on a
1/16-pixel grid as the `motion` tensor, {coded} bytes) at
the source's and {FPS_FACTOR} times the frame rate and compares the decodes' SHA-256 with `video_tiny_path.sha256` /
`video_tiny_path_fps.sha256`; the file's own bytes with `video_tiny_path.loe.sha256`. Made by
`python samples/make_video_golden.py --motion-only`: the config above with `motion="global"`, on the same cut but
with the crop moving {PAN} pixels right each frame; the stored camera path (x, y pixels per frame): {path};
{result.bytes} bytes, mean PSNR {result.psnr:.2f} dB;
loe-codec {loe_codec.__version__}, torch {torch.__version__}, PyAV {av.__version__}, Python
{platform.python_version()}, {platform.machine()}.
"""


def write_section(heading: str, section: str) -> None:
    """Replace the README section that starts with ``heading`` (up to the next ``## `` heading) by
    ``section``, or append it."""
    readme = OUT / "README.md"
    text = readme.read_text() if readme.exists() else ""
    head, found, rest = text.partition(f"\n{heading}")
    tail = rest.partition("\n## ")
    after = f"\n## {tail[2]}" if found and tail[1] else ""
    readme.write_text(f"{head.rstrip(chr(10))}\n\n{section.rstrip(chr(10))}\n{after}")


def main() -> None:
    torch.set_num_threads(1)
    if "--motion-only" in sys.argv[1:]:
        write_section(MOTION_SECTION, make_motion())
        return
    OUT.mkdir(exist_ok=True)
    loe = OUT / "video_tiny.loe"
    with_audio = OUT / "video_tiny_audio.loe"
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "crop.mkv"
        cut_source(clip)
        result = encode_video(clip, loe, config=CONFIG, device="cpu")
        cut_source(clip, audio=True)
        source_packets = audio_packets_digest(clip)
        sound = encode_video(clip, with_audio, config=CONFIG, device="cpu")
        with open_video(with_audio) as video:
            video.decode_to_file(Path(tmp) / "back.mkv", device="cpu")
        if audio_packets_digest(Path(tmp) / "back.mkv") != source_packets:
            raise SystemExit("the audio packets did not come back untouched")
    for path in (loe, with_audio):
        path.chmod(0o644)
    (OUT / "video_tiny_audio.loe.sha256").write_text(f"{sha256_of(with_audio.read_bytes())}\n")
    (OUT / "video_tiny_audio_packets.sha256").write_text(f"{source_packets[0]}  {source_packets[1]} packets\n")
    if not np.array_equal(decodes(with_audio)[0], decodes(loe)[0]):
        raise SystemExit("the file with audio decodes to other pictures")
    file_digest = sha256_of(loe.read_bytes())
    frames, faster = decodes(loe)
    n, h, w, c = frames.shape
    data = loe_codec.info(loe)
    (OUT / "video_tiny.loe.sha256").write_text(f"{file_digest}\n")
    (OUT / "video_tiny.sha256").write_text(f"{sha256_of(frames.tobytes())}\n")
    (OUT / "video_tiny_fps.sha256").write_text(f"{sha256_of(faster.tobytes())}\n")
    strip = np.ascontiguousarray(frames.reshape(n * h, w, c))
    pyvips.Image.new_from_memory(strip.tobytes(), w, n * h, c, "uchar").write_to_file(
        str(OUT / "video_tiny_decoded.png"))
    model, fit, quant = CONFIG.codec.model, CONFIG.codec.fit, CONFIG.codec.quant
    section = f"""{SECTION} {data['format_version']} (`video_tiny.*`)

`tests/test_golden_video.py` decodes `video_tiny.loe` (all frames, and at {FPS_FACTOR} times the frame rate,
CPU) and compares the SHA-256 of the decoded pixels (the raw bytes of the uint8 `{n}x{h}x{w}x{c}` array; at
{FPS_FACTOR}x: `{faster.shape[0]}x{h}x{w}x{c}`) with the hashes stored here; it also checks that the committed
file itself is unchanged. It never re-encodes.

* `video_tiny.loe`: the file; `video_tiny.loe.sha256`: SHA-256 of its bytes
* `video_tiny.sha256` / `video_tiny_fps.sha256`: SHA-256 of its decode at the source's / {FPS_FACTOR}x the
  frame rate; `video_tiny_decoded.png`: the first, its frames one above the other
* `video_tiny_audio.loe` (video format {loe_codec.info(with_audio)['format_version']}; `.loe.sha256`: its bytes'
  SHA-256): the same frames with a {TONE_HZ} Hz AAC tone beside them (mono, {AUDIO_RATE} Hz, made by PyAV's
  `aac` encoder): the same blocks, so the same decode, and the tone copied ({sound.audio_bytes} bytes);
  `video_tiny_audio_packets.sha256`: SHA-256 of the tone's packets' bytes in order, and their count (the test
  decodes the file to .mkv and .mp4 and checks that the packets come back untouched)

Made by `python samples/make_video_golden.py`:

* source: the first {FRAMES} frames of `samples/{SOURCE}`, cropped to {CROP[2]}x{CROP[3]} at left={CROP[0]},
  top={CROP[1]} (cut losslessly to FFV1 first)
* config (`CONFIG` in `make_video_golden.py`): width {model.width}, banks {model.banks}, time banks
  {model.time_banks}, {model.activation} activation, {model.pe_frequencies} PE frequencies, {fit.steps} steps,
  learning rate {fit.learning_rate}, {fit.samples_per_tile} samples per block, tile {CONFIG.codec.tile.size},
  margin {CONFIG.codec.tile.margin}, time chunk {CONFIG.time.chunk}, margin {CONFIG.time.margin}, seed {fit.seed};
  {quant.scheme} weights at slope {quant.slope}, {quant.qat_steps} quantization-aware steps at learning rate
  {quant.qat_learning_rate}, {quant.bias_dtype} biases, unit ladder {quant.unit_ladder}
  (blocks by kept fraction of units: {data.get('units_kept', {}).get('tiles_by_fraction')}); device cpu, one
  torch thread
* encoded: {result.bytes} bytes, {result.blocks} blocks, mean PSNR {result.psnr:.2f} dB (quality is
  irrelevant here)
* made with loe-codec {loe_codec.__version__}, torch {torch.__version__}, PyAV {av.__version__}, Python
  {platform.python_version()}, {platform.machine()}

Regenerate only after a deliberate change to the video format or its decoder, and say so in the commit.
"""
    write_section(f"{SECTION} 4", section)
    write_section(MOTION_SECTION, make_motion())
    print(f"{loe}: {result.bytes} bytes, {result.blocks} blocks, file sha256 {file_digest}")


if __name__ == "__main__":
    main()
