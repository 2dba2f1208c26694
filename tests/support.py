"""Helpers shared by the tests (importable as ``support``: pytest puts ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import numpy as np
import pyvips
import torch

from loe_codec import fit

from loe_codec.config import CodecConfig, FitConfig, ModelConfig, QuantConfig, TileConfig
from loe_codec.reference import tile_seed

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


def load_script(relative: str):
    """The module of a script outside the package (``samples/make_mosaic.py``, ``benchmarks/ablation.py``)."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_config(steps: int = 100, *, width: int = 16, banks: tuple[int, ...] = (1, 2, 2, 1), tile: int = 16,
                margin: int = 2, seed: int = 0, samples_per_tile: int = 512, **model_kw) -> CodecConfig:
    """A small config that still fits a tiny crop well in ~100 steps (lr 1e-2)."""
    return CodecConfig(
        model=ModelConfig(width=width, banks=banks, **model_kw),
        fit=FitConfig(steps=steps, samples_per_tile=samples_per_tile, learning_rate=1e-2, warmup_steps=10,
                      seed=seed),
        quant=QuantConfig(slope=1e-6),  # tiny tiles: each weight stands for few pixels, so a fine slope
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


# --- tiny fitting problems (test_fit, test_rate) ------------------------------------------------------------

def two_tile_targets(seed: int = 0) -> list:
    """Two tiles of a 20x14 smooth image split at x = 10 with margin 2 (windows clipped to the image)."""
    img = torch.from_numpy(smooth_image(14, 20, 3, seed=3))
    left = fit.TileTarget(img[:, 0:12].clone(), 0, 0, -2.0, -2.0, 14.0, 18.0, tile_seed(seed, 0))
    right = fit.TileTarget(img[:, 8:20].clone(), 8, 0, 8.0, -2.0, 14.0, 18.0, tile_seed(seed, 1))
    return [left, right]


def window_mse(model, targets) -> float:
    """Mean squared error of the model at every pixel centre of every target window."""
    return float(torch.stack(window_mses(model, targets)).mean())


def window_mses(model, targets) -> list[torch.Tensor]:
    """Each target's mean squared error (tile ``k`` of the model on ``targets[k]``'s pixel centres): 0-d tensors."""
    errs = []
    for k, t in enumerate(targets):
        h, w, _ = t.pixels.shape
        yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        coords = torch.stack([(xx.reshape(-1) + t.window_x - t.domain_x) / t.extent_x,
                              (yy.reshape(-1) + t.window_y - t.domain_y) / t.extent_y], 1)
        with torch.no_grad():
            pred = model(torch.full((h * w,), k, dtype=torch.long), coords)
        errs.append(((pred - (t.pixels.reshape(-1, 3).float() / 255 - 0.5)) ** 2).mean())
    return errs


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
    """Absolute ``[start, end)`` byte range of tile ``index`` in a `.loe` file.

    Format 2: the slice ``tile_offsets[index]:tile_offsets[index + 1]`` of the ``tiles`` tensor (the
    offsets are read from the file's ``tile_offsets`` tensor). Format 1: the tensor ``tile.{index}``.
    """
    header, data = read_safetensors(path)
    (n,) = struct.unpack("<Q", Path(path).read_bytes()[:8])
    base = 8 + n
    if f"tile.{index}" in header:
        a, b = header[f"tile.{index}"]["data_offsets"]
        return base + a, base + b
    table = header["tile_offsets"]
    assert table["dtype"] == "I64", table
    lo, hi = table["data_offsets"]
    offsets = np.frombuffer(data[lo:hi], dtype="<i8")
    start = base + header["tiles"]["data_offsets"][0]
    return start + int(offsets[index]), start + int(offsets[index + 1])


def tensor_table(path: Path) -> dict:
    """The safetensors tensor table (name -> dtype, shape, data_offsets) of a file, without the metadata."""
    header, _ = read_safetensors(path)
    return {k: v for k, v in header.items() if k != "__metadata__"}


def read_tensor(path: Path, name: str) -> np.ndarray:
    """A tensor of a safetensors file as a numpy array (U8 / I64 / I16 / F32 only)."""
    header, data = read_safetensors(path)
    entry = header[name]
    dtype = {"U8": "u1", "I64": "<i8", "I16": "<i2", "F32": "<f4", "I32": "<i4"}[entry["dtype"]]
    a, b = entry["data_offsets"]
    return np.frombuffer(data[a:b], dtype=dtype).reshape(entry["shape"]).copy()


def replace_tensors(src: Path, dst: Path, replace: dict[str, np.ndarray | None]) -> Path:
    """Copy the safetensors file ``src`` to ``dst`` with some tensors replaced (``None``: dropped).

    The metadata (the loe header) is kept as it is; tensors are re-laid out back to back in the
    order of the original table, so the result is a valid safetensors file whatever their new size.
    """
    header, data = read_safetensors(src)
    codes = {"|u1": "U8", "<i8": "I64", "<i2": "I16", "<f4": "F32", "<i4": "I32"}
    tensors: dict[str, tuple[str, list[int], bytes]] = {}
    for name, entry in sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                              key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = entry["data_offsets"]
        tensors[name] = (entry["dtype"], entry["shape"], data[a:b])
    for name, array in replace.items():
        if array is None:
            tensors.pop(name, None)
        else:
            array = np.ascontiguousarray(array, dtype=np.asarray(array).dtype.newbyteorder("<"))
            tensors[name] = (codes[array.dtype.str], list(array.shape), array.tobytes())
    out_header = {"__metadata__": header["__metadata__"]} if "__metadata__" in header else {}
    chunks, offset = [], 0
    for name, (dtype, shape, raw) in tensors.items():
        out_header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    return write_safetensors(dst, out_header, b"".join(chunks))


def write_v1_loe(path: Path, config, width: int, height: int, tiles: list, stats: dict | None = None) -> Path:
    """Write a format-1 `.loe` file by hand, the way loe-codec 0.1 did.

    ``config`` is a :class:`~loe_codec.config.CodecConfig` (its quant scheme is ignored), ``tiles`` one
    ``(weights, biases)`` per tile with ``weights`` :class:`~loe_codec.quantize.QuantizedTensor` per layer
    (packed with :func:`loe_codec.tileblob.pack_int8`). The header holds the CRC-32 of every tile, version 1
    and a ``quant`` section without the ``scheme`` (nor any other format-2 field).
    """
    import zlib

    from loe_codec.tileblob import pack_int8

    blobs = [pack_int8(config, w, b) for w, b in tiles]
    cfg = config.to_dict()
    cfg["quant"] = {"bits": config.quant.bits, "bias_dtype": config.quant.bias_dtype}
    from loe_codec.tiling import TileGrid

    grid = TileGrid(width, height, config.tile.size, config.tile.margin)
    assert len(blobs) == len(grid), (len(blobs), len(grid))
    loe = {
        "format": "loe-codec", "version": 1, "kind": "image",
        "source": {"width": width, "height": height, "channels": config.model.out_channels, "bit_depth": 8},
        "tiles": {"cols": grid.cols, "rows": grid.rows, "count": len(grid)},
        "config": cfg,
        "tile_crc32": [zlib.crc32(b.tobytes()) for b in blobs],
        "stats": dict(stats or {}),
        "encoder": "loe-codec 0.1.0 (hand-made by the tests)",
    }
    header: dict = {"__metadata__": {"loe": json.dumps(loe, separators=(",", ":"))}}
    chunks, offset = [], 0
    for k, blob in enumerate(blobs):
        header[f"tile.{k}"] = {"dtype": "U8", "shape": [blob.size], "data_offsets": [offset, offset + blob.size]}
        chunks.append(blob.tobytes())
        offset += blob.size
    return write_safetensors(path, header, b"".join(chunks))
