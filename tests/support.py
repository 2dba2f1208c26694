"""Helpers shared by the tests (importable as ``support``: pytest puts ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pyvips

from loe_codec.config import CodecConfig, FitConfig, ModelConfig, QuantConfig, TileConfig

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def tiny_config(steps: int = 100, *, width: int = 16, banks: tuple[int, ...] = (1, 2, 2, 1), tile: int = 16,
                margin: int = 2, seed: int = 0, samples_per_tile: int = 512, **model_kw) -> CodecConfig:
    """A small config that still fits a tiny crop well in ~100 steps (lr 1e-2)."""
    return CodecConfig(
        model=ModelConfig(width=width, banks=banks, **model_kw),
        fit=FitConfig(steps=steps, samples_per_tile=samples_per_tile, learning_rate=1e-2, warmup_steps=10,
                      seed=seed),
        quant=QuantConfig(),
        tile=TileConfig(size=tile, margin=margin),
    )


def write_array(path: Path, pixels: np.ndarray, fmt: str = "uchar") -> Path:
    """Write ``[h, w]`` or ``[h, w, bands]`` pixels with pyvips (the extension picks the format)."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    h, w, bands = pixels.shape
    dtype = {"uchar": np.uint8, "ushort": np.uint16, "float": np.float32}[fmt]
    data = np.ascontiguousarray(pixels, dtype=dtype)
    image = pyvips.Image.new_from_memory(data.data, w, h, bands, fmt)
    if bands in (1, 2):
        image = image.copy(interpretation="grey16" if fmt == "ushort" else "b-w")
    elif bands in (3, 4):
        image = image.copy(interpretation="rgb16" if fmt == "ushort" else "srgb")
    else:
        image = image.copy(interpretation="multiband")
    image.write_to_file(str(path))
    return path


def read_array(path: Path) -> np.ndarray:
    """uint8 ``[h, w, bands]`` pixels of an image file."""
    image = pyvips.Image.new_from_file(str(path))
    assert image.format == "uchar"
    return np.ndarray(buffer=image.write_to_memory(), dtype=np.uint8,
                      shape=(image.height, image.width, image.bands)).copy()


def crop_sample(path: Path, name: str, left: int, top: int, width: int, height: int) -> Path:
    """Write a crop of ``samples/<name>`` to ``path``."""
    pyvips.Image.new_from_file(str(SAMPLES / name)).crop(left, top, width, height).write_to_file(str(path))
    return path


def smooth_image(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth synthetic uint8 image (gradients plus a low-frequency wave)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = []
    for c in range(channels):
        a, b, ph = rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5), rng.uniform(0, 6.28)
        v = 0.5 + 0.25 * np.sin(a * xx / w * 6 + ph) * np.cos(b * yy / h * 5) + 0.2 * (xx / w - yy / h)
        planes.append(v)
    return np.clip(np.stack(planes, -1) * 255, 0, 255).round().astype(np.uint8)


# --- raw safetensors surgery (for building damaged / hand-made .loe files) -----------------------

def read_safetensors(path: Path) -> tuple[dict, bytes]:
    """The JSON header dict and the data section of a safetensors file."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_safetensors(path: Path, header: dict, data: bytes) -> Path:
    """Write a safetensors file from a header dict and a data section (padding the header to 8 bytes)."""
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + data)
    return Path(path)


def loe_header(path: Path) -> dict:
    """The decoded ``loe`` JSON header of a `.loe` file."""
    header, _ = read_safetensors(path)
    return json.loads(header["__metadata__"]["loe"])


def rewrite_loe_header(src: Path, dst: Path, edit) -> Path:
    """Copy ``src`` to ``dst`` with ``edit(header_dict)`` applied to its loe JSON header (tensors untouched)."""
    header, data = read_safetensors(src)
    loe = json.loads(header["__metadata__"]["loe"])
    edit(loe)
    header["__metadata__"]["loe"] = json.dumps(loe, separators=(",", ":"))
    return write_safetensors(dst, header, data)


def tile_byte_range(path: Path, index: int) -> tuple[int, int]:
    """Absolute ``[start, end)`` byte range of tensor ``tile.{index}`` in the file."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    a, b = header[f"tile.{index}"]["data_offsets"]
    return 8 + n + a, 8 + n + b
