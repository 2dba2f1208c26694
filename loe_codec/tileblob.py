"""The bytes of one tile network: packing and unpacking for each quantization scheme.

``laplace`` (formats 2 to 4), little-endian, back to back:

* per layer: the step (float16), with a reference (formats 3 and 4) the gain of
  the reference (float16), the Laplace ``ratio_code`` (uint16) and the largest
  magnitude (uint16): 6 bytes a layer (8 with a reference);
* if the config prunes units (``quant.unit_ladder``, format 4): per hidden layer
  the mask of its kept units, ``ceil(width / 8)`` bytes, bit ``j % 8`` of byte
  ``j // 8`` for unit ``j``;
* per layer: the bias of every kept output ``[out]`` (``quant.bias_dtype``);
* the range-coded integers of every layer's kept weights ``[banks, in, out]``
  (rows of kept inputs, columns of kept outputs; C order, layer after layer) as
  uint32 words, to the end of the blob.

A layer's kept weights are ``gain * reference + step * integers`` where
``reference`` is the tile's seeded initialisation (:mod:`loe_codec.reference`),
or ``step * integers`` without a reference; the weights and biases of dropped
units are zero.

``int8`` (format 1, read only): per layer the int8 weights ``[banks, in, out]``,
float16 scales ``[banks, out]`` and the bias, a fixed size per config.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import entropy
from .config import CodecConfig
from .errors import FormatError
from .quantize import QuantizedTensor, dequantize_steps, dequantize_weight
from .reference import reference_weights, tile_seed

_LAYER_PARAMS = np.dtype([("step", "<f2"), ("ratio", "<u2"), ("magnitude", "<u2")])
_LAYER_PARAMS_REF = np.dtype([("step", "<f2"), ("gain", "<f2"), ("ratio", "<u2"), ("magnitude", "<u2")])

TileParameters = tuple[list[torch.Tensor], list[torch.Tensor]]
"""Float32 weights ``[banks, in, out]`` and biases ``[out]`` of every layer of one tile."""


def weight_shapes(config: CodecConfig) -> list[tuple[int, int, int]]:
    """``(banks, in, out)`` of every layer."""
    return [(nb, i, o) for (i, o), nb in zip(config.model.layer_shapes(), config.model.bank_counts())]


Units = list[np.ndarray]
"""Kept units of one tile: bool ``[width]`` per hidden layer (see :mod:`loe_codec.model.units`)."""


def _kept_indices(config: CodecConfig, units: Units | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(kept inputs, kept outputs)`` index arrays of every layer."""
    shapes = config.model.layer_shapes()
    if units is None:
        return [(np.arange(i), np.arange(o)) for i, o in shapes]
    hidden = [np.flatnonzero(u) for u in units]
    return list(zip([np.arange(shapes[0][0])] + hidden, hidden + [np.arange(shapes[-1][1])]))


def _mask_bytes(config: CodecConfig) -> int:
    return (config.model.layers - 1) * ((config.model.width + 7) // 8) if config.quant.prunes_units else 0


def _bias_dtype(config: CodecConfig) -> np.dtype:
    return np.dtype(config.quant.bias_dtype).newbyteorder("<")


def _layer_params(config: CodecConfig) -> np.dtype:
    return _LAYER_PARAMS if config.quant.reference == "none" else _LAYER_PARAMS_REF


def pack_laplace(config: CodecConfig, ints: list[np.ndarray], steps: list[float],
                 biases: list[torch.Tensor], gains: list[float] | None = None,
                 units: Units | None = None) -> np.ndarray:
    """Serialise one tile: integer weights ``[banks, in, out]`` (int32) per layer, their float16-exact
    steps, the float16-exact gains of the reference (one per layer; needed iff the config names a
    reference), the float biases and the kept units (needed iff the config prunes units; only the
    kept units' weights and biases are stored). Returns ``uint8 [n]``."""
    shapes = weight_shapes(config)
    if [tuple(a.shape) for a in ints] != shapes or len(steps) != len(shapes) or len(biases) != len(shapes):
        raise ValueError("one integer tensor of the configured shape, one step and one bias per layer are needed")
    if (gains is None) != (config.quant.reference == "none") or (gains is not None and len(gains) != len(shapes)):
        raise ValueError("one gain per layer is needed with a reference, none without")
    if (units is None) == config.quant.prunes_units or (
            units is not None and [np.shape(u) for u in units] != [(config.model.width,)] * (len(shapes) - 1)):
        raise ValueError("a bool [width] mask per hidden layer is needed iff the config prunes units")
    kept = _kept_indices(config, units)
    ints = [a[:, i][:, :, o] for a, (i, o) in zip(ints, kept)]
    biases = [b.detach()[torch.from_numpy(o)] for b, (_, o) in zip(biases, kept)]
    models = [entropy.model_for(a) for a in ints]
    params = np.zeros(len(shapes), dtype=_layer_params(config))
    params["step"] = np.asarray(steps, dtype=np.float16)
    if gains is not None:
        params["gain"] = np.asarray(gains, dtype=np.float16)
    params["ratio"] = [m.ratio_code for m in models]
    params["magnitude"] = [m.magnitude for m in models]
    masks = b"".join(np.packbits(np.asarray(u, dtype=bool), bitorder="little").tobytes() for u in units or [])
    bias_bytes = b"".join(np.ascontiguousarray(b.numpy(), dtype=_bias_dtype(config)).tobytes() for b in biases)
    words = entropy.encode(ints, models).astype("<u4")
    return np.frombuffer(params.tobytes() + masks + bias_bytes + words.tobytes(), dtype=np.uint8)


def laplace_fixed_bytes(config: CodecConfig, kept_biases: int | None = None) -> int:
    """Bytes of a ``laplace`` blob before its coded words (layer parameters, unit masks and biases);
    ``kept_biases``: the biases a tile that drops units stores (default: all)."""
    biases = sum(o for _, o in config.model.layer_shapes()) if kept_biases is None else kept_biases
    return (_layer_params(config).itemsize * config.model.layers + _mask_bytes(config)
            + _bias_dtype(config).itemsize * biases)


def units_prefix_bytes(config: CodecConfig) -> int:
    """Bytes at the start of a ``laplace`` blob that hold its unit masks (and what precedes them)."""
    return _layer_params(config).itemsize * config.model.layers + _mask_bytes(config)


def stored_units(config: CodecConfig, prefix: np.ndarray) -> Units | None:
    """The kept units of a tile from the first :func:`units_prefix_bytes` of its blob (None if the
    config does not prune units: every unit is kept)."""
    if prefix.size < units_prefix_bytes(config):
        raise FormatError("a tile is too short to hold its unit masks")
    return _read_units(config, prefix.tobytes(), _layer_params(config).itemsize * config.model.layers)


def _read_units(config: CodecConfig, raw: bytes, offset: int) -> Units | None:
    """The unit masks stored at ``offset`` (None if the config does not prune units)."""
    if not config.quant.prunes_units:
        return None
    width, per_layer = config.model.width, (config.model.width + 7) // 8
    units = []
    for layer in range(config.model.layers - 1):
        bits = np.unpackbits(np.frombuffer(raw, np.uint8, per_layer, offset + layer * per_layer), bitorder="little")
        if bits[width:].any():
            raise FormatError("a tile's unit mask marks units beyond the network's width")
        units.append(bits[:width].astype(bool))
    return units


@dataclass(frozen=True)
class LaplaceTile:
    """A ``laplace`` blob read back without dequantizing: per layer the step, the reference gain (None
    without a reference) and the coded integers of the kept weights ``[banks, kept in, kept out]``; the
    float32 biases ``[out]`` (zero for dropped units), the kept rows and columns, the coded words' bytes."""

    steps: np.ndarray
    gains: np.ndarray | None
    ints: list[np.ndarray]
    biases: list[torch.Tensor]
    kept: list[tuple[np.ndarray, np.ndarray]]
    coded_bytes: int


def read_laplace(config: CodecConfig, blob: np.ndarray) -> LaplaceTile:
    """Parse a ``laplace`` blob and decode its integers; :class:`FormatError` if it is malformed."""
    shapes = weight_shapes(config)
    raw = blob.tobytes()
    layer_bytes = _layer_params(config).itemsize * len(shapes)
    if blob.size < layer_bytes + _mask_bytes(config):
        raise FormatError(f"a tile of {blob.size} bytes does not fit the layout of its config")
    units = _read_units(config, raw, layer_bytes)
    kept = _kept_indices(config, units)
    fixed = laplace_fixed_bytes(config, sum(o.size for _, o in kept))
    if blob.size < fixed or (blob.size - fixed) % 4:
        raise FormatError(f"a tile of {blob.size} bytes does not fit the layout of its config")
    params = np.frombuffer(raw, dtype=_layer_params(config), count=len(shapes))
    steps = params["step"].astype(np.float32)
    if not (np.isfinite(steps).all() and (steps > 0).all()):
        raise FormatError("a tile holds a non-positive or non-finite quantization step")
    gains = params["gain"].astype(np.float32) if config.quant.reference != "none" else None
    if gains is not None and not np.isfinite(gains).all():
        raise FormatError("a tile holds a non-finite reference gain")
    if (params["magnitude"] > entropy.MAX_MAGNITUDE).any() or (params["ratio"] == 0).any():
        raise FormatError("a tile holds an invalid entropy model")
    models = [entropy.LaplaceModel(int(r), int(m)) for r, m in zip(params["ratio"], params["magnitude"])]
    offset = params.nbytes + _mask_bytes(config)
    biases = []
    for (_, o), (_, out) in zip(config.model.layer_shapes(), kept):
        b = np.zeros(o, dtype=np.float32)
        b[out] = np.frombuffer(raw, dtype=_bias_dtype(config), count=out.size, offset=offset)
        offset += out.size * _bias_dtype(config).itemsize
        biases.append(torch.from_numpy(b))
    words = np.frombuffer(raw, dtype="<u4", offset=offset).astype(np.uint32)
    try:
        ints = entropy.decode(words, [(nb, i.size, o.size) for (nb, _, _), (i, o) in zip(shapes, kept)], models)
    except BaseException as exc:  # constriction reports exhausted or invalid data as a plain exception
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise FormatError(f"a tile's coded weights cannot be decoded ({exc})") from None
    return LaplaceTile(steps, gains, ints, biases, kept, words.nbytes)


def unpack_laplace(config: CodecConfig, blob: np.ndarray, seed: int) -> TileParameters:
    """Dequantized weights and biases of a ``laplace`` blob of the tile seeded ``seed`` (the seed
    regenerates the reference, if the config names one); :class:`FormatError` if it is malformed."""
    tile = read_laplace(config, blob)
    shapes = weight_shapes(config)
    offsets: list[torch.Tensor | None] = [None] * len(shapes)
    if tile.gains is not None:
        offsets = [torch.tensor(float(g)) * ref for g, ref in zip(tile.gains, reference_weights(config.model, seed))]
    weights = [_kept_weights(torch.from_numpy(a), float(s), offset, shape, rows, cols)
               for a, s, offset, shape, (rows, cols) in zip(tile.ints, tile.steps, offsets, shapes, tile.kept)]
    _check_finite(weights, tile.biases)
    return weights, tile.biases


def _kept_weights(ints: torch.Tensor, step: float, offset: torch.Tensor | None, shape: tuple[int, int, int],
                  rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
    """Full ``[banks, in, out]`` weights of a layer from the integers of its kept ``rows`` x ``cols``
    block (``offset``: the whole layer's); zero outside the block."""
    if ints.shape == shape:
        return dequantize_steps(ints, torch.tensor(step), offset)
    r, c = torch.from_numpy(rows).view(-1, 1), torch.from_numpy(cols).view(1, -1)
    full = torch.zeros(shape)
    full[:, r, c] = dequantize_steps(ints, torch.tensor(step), None if offset is None else offset[:, r, c])
    return full


def int8_layout(config: CodecConfig) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
    """(part name, dtype, shape) of every part of an ``int8`` (format 1) blob, in storage order."""
    parts = []
    for i, (nb, fan_in, fan_out) in enumerate(weight_shapes(config)):
        parts.append((f"layer{i}.weight", np.dtype("i1"), (nb, fan_in, fan_out)))
        parts.append((f"layer{i}.scale", np.dtype("<f2"), (nb, fan_out)))
        parts.append((f"layer{i}.bias", _bias_dtype(config), (fan_out,)))
    return parts


def int8_bytes(config: CodecConfig) -> int:
    """Exact byte size of an ``int8`` blob."""
    return sum(dt.itemsize * int(np.prod(shape)) for _, dt, shape in int8_layout(config))


def pack_int8(config: CodecConfig, weights: list[QuantizedTensor], biases: list[torch.Tensor]) -> np.ndarray:
    """Serialise one tile in the format-1 layout (kept to write test files of the old format)."""
    arrays = []
    for q, b in zip(weights, biases):
        arrays += [q.values.numpy(), q.scale.numpy(), b.numpy()]
    chunks = []
    for (name, dt, shape), a in zip(int8_layout(config), arrays):
        if tuple(a.shape) != shape:
            raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
        chunks.append(np.ascontiguousarray(a, dtype=dt).tobytes())
    return np.frombuffer(b"".join(chunks), dtype=np.uint8)


def unpack_int8(config: CodecConfig, blob: np.ndarray) -> TileParameters:
    """Dequantized weights and biases of an ``int8`` (format 1) blob."""
    if blob.size != int8_bytes(config):
        raise FormatError(f"a tile of {blob.size} bytes does not match its config ({int8_bytes(config)})")
    parts, offset = {}, 0
    for name, dt, shape in int8_layout(config):
        count = int(np.prod(shape))
        parts[name] = np.frombuffer(blob, dtype=dt, count=count, offset=offset).reshape(shape)
        offset += dt.itemsize * count
    weights, biases = [], []
    for i in range(config.model.layers):
        q = QuantizedTensor(torch.from_numpy(parts[f"layer{i}.weight"].copy()),
                            torch.from_numpy(parts[f"layer{i}.scale"].astype(np.float16)))
        weights.append(dequantize_weight(q))
        biases.append(torch.from_numpy(parts[f"layer{i}.bias"].astype(np.float32)))
    _check_finite(weights, biases)
    return weights, biases


def unpack_tile(config: CodecConfig, blob: np.ndarray, index: int) -> TileParameters:
    """Dequantized parameters of tile (or block) ``index``, in the scheme its config names."""
    if config.quant.scheme == "int8":
        return unpack_int8(config, blob)
    return unpack_laplace(config, blob, tile_seed(config.fit.seed, index))


def _check_finite(weights: list[torch.Tensor], biases: list[torch.Tensor]) -> None:
    for i, (w, b) in enumerate(zip(weights, biases)):
        if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
            raise FormatError(f"layer {i} holds non-finite values")
