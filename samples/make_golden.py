"""Regenerate the golden `.loe` file the test suite decodes (tests/test_golden.py).

    python samples/make_golden.py

Encodes a 32x24 crop of ``kodim23.png`` with a tiny explicit config on the CPU and writes

* ``golden/tiny.loe``: the encoded file (committed; the test decodes *this* file),
* ``golden/tiny.sha256``: SHA-256 of the full scale-1 decode (raw bytes of the uint8 HxWxC array),
* ``golden/tiny_decoded.png``: that decode as an image (only to show what differs when the hash breaks),
* ``golden/README.md``: how the files were made.

Only regenerate on purpose, after a deliberate change to the format or the decoder: the point of
the golden test is to catch silent changes.
"""

from __future__ import annotations

import hashlib
import platform
import sys
import tempfile
from pathlib import Path

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
    quant=QuantConfig(bits=8),
    tile=TileConfig(size=16, margin=2),
    preset="golden",
)
OUT = HERE / "golden"


def decode_digest(path: Path) -> tuple[str, "np.ndarray"]:  # noqa: F821
    with loe_codec.open(path) as img:
        pixels = img.decode(device="cpu")
    return hashlib.sha256(pixels.tobytes()).hexdigest(), pixels


def main() -> None:
    torch.set_num_threads(1)
    OUT.mkdir(exist_ok=True)
    loe = OUT / "tiny.loe"
    with tempfile.TemporaryDirectory() as tmp:
        crop = Path(tmp) / "crop.png"
        pyvips.Image.new_from_file(str(HERE / SOURCE)).crop(*CROP).write_to_file(str(crop))
        result = loe_codec.encode(crop, loe, config=CONFIG, device="cpu")
    loe.chmod(0o644)  # the encoder writes through mkstemp, which leaves the file private (0600)
    digest, pixels = decode_digest(loe)
    h, w, c = pixels.shape
    (OUT / "tiny.sha256").write_text(f"{digest}\n")
    pyvips.Image.new_from_memory(pixels.tobytes(), w, h, c, "uchar").write_to_file(str(OUT / "tiny_decoded.png"))
    (OUT / "README.md").write_text(f"""# Golden file

`tests/test_golden.py` decodes `tiny.loe` (full image, scale 1, CPU) and compares the SHA-256 of
the decoded pixels (the raw bytes of the uint8 `{h}x{w}x{c}` HxWxC array) with `tiny.sha256`. It
guards the `.loe` format and the decoder against silent changes.

Made by `python samples/make_golden.py` (run from the repository root or anywhere):

* source: a {CROP[2]}x{CROP[3]} crop of `samples/{SOURCE}` at left={CROP[0]}, top={CROP[1]}
* config (`CONFIG` in `make_golden.py`): width {CONFIG.model.width}, banks {CONFIG.model.banks},
  {CONFIG.model.activation} activation, {CONFIG.model.pe_frequencies} PE frequencies, {CONFIG.fit.steps} steps,
  learning rate {CONFIG.fit.learning_rate}, {CONFIG.fit.samples_per_tile} samples per tile,
  tile {CONFIG.tile.size}, margin {CONFIG.tile.margin}, seed {CONFIG.fit.seed}, {CONFIG.quant.bits}-bit weights,
  device cpu, one torch thread
* encoded: {result.bytes} bytes, {result.tiles} tiles, PSNR {result.psnr:.2f} dB (quality is irrelevant here)
* made with loe-codec {loe_codec.__version__}, torch {torch.__version__}, Python {platform.python_version()},
  {platform.machine()}

`tiny_decoded.png` is the same decode as an image; the test uses it only to report how many pixels
differ when the hash does not match. Regenerate these files only after a deliberate change to the
format or the decoder, and say so in the commit.
""")
    print(f"{loe}: {result.bytes} bytes, decode sha256 {digest}")


if __name__ == "__main__":
    main()
