"""Regenerate the format-4 golden `.loe` file the test suite decodes (tests/test_golden.py).

    python samples/make_golden.py

Encodes a 32x24 crop of ``kodim23.png`` with a tiny explicit config on the CPU and writes

* ``golden/tiny.loe``: the encoded file (format 4; committed; the test decodes *this* file),
* ``golden/tiny.loe.sha256``: SHA-256 of that file's bytes (the test checks the committed file is unchanged),
* ``golden/tiny.sha256``: SHA-256 of its full scale-1 decode (raw bytes of the uint8 HxWxC array),
* ``golden/tiny_decoded.png``: that decode as an image (only to show what differs when the hash breaks),
* ``golden/README.md``: how the files were made.

The format-1, -2 and -3 golden sets (``golden/tiny_v1.*``, ``golden/tiny_v2.*``, ``golden/tiny_v3.*``)
were made by earlier versions, which wrote those formats; this version only reads them, so those files are frozen:
this script never touches them (it only copies their description into the README).

Only regenerate on purpose, after a deliberate change to the format or the decoder: the point of
the golden test is to catch silent changes. The test never re-encodes, so it does not depend on the
encoder reproducing this file bit for bit.
"""

from __future__ import annotations

import hashlib
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyvips
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import loe_codec  # noqa: E402
from loe_codec.config import CodecConfig, FitConfig, ModelConfig, QuantConfig, TileConfig  # noqa: E402

SOURCE = "kodim23.png"
CROP = (330, 200, 32, 24)  # left, top, width, height
CONFIG = CodecConfig(
    # A few PE frequencies and a high learning rate so that 30 steps give a real (if blurry) picture:
    # few clamped pixels, so the hash sees every decoder change.
    model=ModelConfig(width=8, banks=(1, 2, 2, 1), pe_frequencies=3),
    fit=FitConfig(steps=30, samples_per_tile=256, learning_rate=2e-2, warmup_steps=5, seed=0),
    # Laplace-coded weights at a slope that leaves most weights non-zero (every layer's coded stream is
    # exercised) and where two of the four tiles drop half their units (unit masks are exercised), with a
    # few steps of quantization-aware fine-tuning.
    quant=QuantConfig(scheme="laplace", slope=5e-3, qat_steps=10, qat_learning_rate=2e-3, unit_ladder=(1.0, 0.5)),
    tile=TileConfig(size=16, margin=2),
    preset="golden",
)
OUT = HERE / "golden"
VIDEO_SECTION = "## Video format"  # the heading of make_video_golden.py's README section, which follows these

V3_README = """## Format 3 (`tiny_v3.*`, frozen)

`tiny_v3.loe` is the golden file of format 3 (laplace-coded weights against the seeded reference, every
tile keeping all its units). It was made by loe-codec 0.1.0 (before unit masks) with the same crop and
config as above less the unit ladder (30 steps, slope 0.001, 10 quantization-aware steps, torch
2.13.0+cpu, Python 3.11.7, x86_64; 2580 bytes, 4 tiles, PSNR 16.78 dB). This version only reads format
3: `tiny_v3.loe.sha256` is the SHA-256 of the file, `tiny_v3.sha256` of its decode, `tiny_v3_decoded.png`
that decode as an image.
"""

V2_README = """## Format 2 (`tiny_v2.*`, frozen)

`tiny_v2.loe` is the golden file of format 2 (laplace-coded weights, no weight reference). It was made
by loe-codec 0.1.0 (before weight references) with the same crop and config as above (30 steps, slope
0.001, 10 quantization-aware steps, torch 2.13.0+cpu, Python 3.11.7, x86_64; 2976 bytes, 4 tiles, PSNR
17.51 dB). This version only reads format 2: `tiny_v2.loe.sha256` is the SHA-256 of the file,
`tiny_v2.sha256` of its decode, `tiny_v2_decoded.png` that decode as an image.
"""

V1_README = """## Format 1 (`tiny_v1.*`, frozen)

`tiny_v1.loe` is the golden file of format 1 (one `tile.{k}` tensor of raw int8 weights per tile,
CRC-32s in the JSON header). It was made by loe-codec 0.1.0 with the same crop and network as above
(30 steps, 8-bit weights, torch 2.13.0+cpu, Python 3.11.7, x86_64; 4480 bytes, 4 tiles, PSNR 14.93
dB). This version of loe-codec only reads format 1, so these files cannot be regenerated and must not
change: `tiny_v1.loe.sha256` is the SHA-256 of the file, `tiny_v1.sha256` of its decode (the decoder
must keep reading old files to the same pixels), `tiny_v1_decoded.png` that decode as an image.
"""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_digest(path: Path) -> tuple[str, np.ndarray]:
    with loe_codec.open(path) as img:
        pixels = img.decode(device="cpu")
    return sha256_of(pixels.tobytes()), pixels


def main() -> None:
    torch.set_num_threads(1)
    OUT.mkdir(exist_ok=True)
    loe = OUT / "tiny.loe"
    with tempfile.TemporaryDirectory() as tmp:
        crop = Path(tmp) / "crop.png"
        pyvips.Image.new_from_file(str(HERE / SOURCE)).crop(*CROP).write_to_file(str(crop))
        result = loe_codec.encode(crop, loe, config=CONFIG, device="cpu")
    loe.chmod(0o644)
    file_digest = sha256_of(loe.read_bytes())
    digest, pixels = decode_digest(loe)
    h, w, c = pixels.shape
    with loe_codec.open(loe) as img:
        version = img.header.version
        slope = img.config.quant.slope
        # units of a tile that have incoming weights (a dropped unit's are all zero)
        kept = [int((img._reader.read_tile(k)[0][0].abs().sum(dim=(0, 1)) > 0).sum()) for k in range(result.tiles)]
    (OUT / "tiny.loe.sha256").write_text(f"{file_digest}\n")
    (OUT / "tiny.sha256").write_text(f"{digest}\n")
    pyvips.Image.new_from_memory(pixels.tobytes(), w, h, c, "uchar").write_to_file(str(OUT / "tiny_decoded.png"))
    readme = OUT / "README.md"
    # The video golden file's section (samples/make_video_golden.py) follows the image ones: keep it.
    video_section = readme.read_text().partition(VIDEO_SECTION)[1:] if readme.exists() else ("", "")
    readme.write_text(f"""# Golden files

`tests/test_golden.py` decodes the committed golden files (full image, scale 1, CPU) and compares the
SHA-256 of the decoded pixels (the raw bytes of the uint8 `{h}x{w}x{c}` HxWxC array) with the hashes
stored here; it also checks that the committed files themselves are unchanged. It guards the `.loe`
formats and the decoder against silent changes. It never re-encodes.

## Format {version} (`tiny.*`)

* `tiny.loe`: the file; `tiny.loe.sha256`: SHA-256 of its bytes
* `tiny.sha256`: SHA-256 of its decode; `tiny_decoded.png`: that decode as an image

Made by `python samples/make_golden.py` (run from the repository root or anywhere):

* source: a {CROP[2]}x{CROP[3]} crop of `samples/{SOURCE}` at left={CROP[0]}, top={CROP[1]}
* config (`CONFIG` in `make_golden.py`): width {CONFIG.model.width}, banks {CONFIG.model.banks},
  {CONFIG.model.activation} activation, {CONFIG.model.pe_frequencies} PE frequencies, {CONFIG.fit.steps} steps,
  learning rate {CONFIG.fit.learning_rate}, {CONFIG.fit.samples_per_tile} samples per tile,
  tile {CONFIG.tile.size}, margin {CONFIG.tile.margin}, seed {CONFIG.fit.seed}; {CONFIG.quant.scheme} weights at
  slope {slope}, {CONFIG.quant.qat_steps} quantization-aware steps at learning rate
  {CONFIG.quant.qat_learning_rate}, {CONFIG.quant.bias_dtype} biases, unit ladder {CONFIG.quant.unit_ladder}
  (kept units per tile: {kept}); device cpu, one torch thread
* encoded: {result.bytes} bytes, {result.tiles} tiles, PSNR {result.psnr:.2f} dB (quality is irrelevant here)
* made with loe-codec {loe_codec.__version__}, torch {torch.__version__}, Python {platform.python_version()},
  {platform.machine()}

{V3_README}
{V2_README}
{V1_README}
`tiny_decoded.png` / `tiny_v3_decoded.png` / `tiny_v2_decoded.png` / `tiny_v1_decoded.png` are used only to report how many pixels differ when a
hash does not match. Regenerate the format-{version} files only after a deliberate change to the format
or the decoder, and say so in the commit.
""" + ("\n" + "".join(video_section) if video_section[0] else ""))
    print(f"{loe}: {result.bytes} bytes, file sha256 {file_digest}, decode sha256 {digest}")


if __name__ == "__main__":
    main()
