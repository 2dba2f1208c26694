"""Per-tile blob layouts (loe_codec.tileblob): ``laplace`` with unit masks (format 4), with a reference
(formats 3 and 4), without (format 2), and ``int8`` (format 1)."""

import dataclasses

import numpy as np
import pytest
import torch

from loe_codec.config import CodecConfig, ModelConfig, QuantConfig, TileConfig
from loe_codec.entropy import MAX_MAGNITUDE
from loe_codec.errors import FormatError
from loe_codec.quantize import dequantize_weight, quantize_bias, quantize_weight, storable_steps
from loe_codec.reference import reference_weights, tile_seed
from loe_codec.tileblob import (int8_bytes, int8_layout, laplace_fixed_bytes, pack_int8, pack_laplace,
                                unpack_int8, unpack_laplace, unpack_tile, weight_shapes)

CONFIG = CodecConfig(model=ModelConfig(width=8, banks=(1, 2, 2, 1), pe_frequencies=2, out_channels=3),
                     tile=TileConfig(size=8, margin=1), quant=QuantConfig(reference="none"))  # format 2 layout
REF_CONFIG = dataclasses.replace(CONFIG, quant=QuantConfig())  # format 3: coded against the seeded reference
LAYERS = CONFIG.model.layers


def _tile(config: CodecConfig = CONFIG, seed: int = 0, scale: float = 3.0):
    rng = np.random.default_rng(seed)
    ints = [np.round(rng.laplace(scale=scale, size=s)).astype(np.int32) for s in weight_shapes(config)]
    steps = storable_steps(torch.from_numpy(rng.uniform(1e-4, 0.5, size=len(ints)))).tolist()
    gen = torch.Generator().manual_seed(seed)
    biases = [quantize_bias(torch.randn(o, generator=gen), config.quant) for _, o in config.model.layer_shapes()]
    return ints, steps, biases


def test_weight_shapes_follow_the_model():
    assert weight_shapes(CONFIG) == [(nb, i, o) for (i, o), nb in zip(CONFIG.model.layer_shapes(),
                                                                        CONFIG.model.bank_counts())]
    assert [s[0] for s in weight_shapes(CONFIG)] == [1, 4, 4, 1]


@pytest.mark.parametrize("bias_dtype", ["float16", "float32"])
def test_laplace_round_trip(bias_dtype):
    cfg = dataclasses.replace(CONFIG, quant=QuantConfig(bias_dtype=bias_dtype, reference="none"))
    ints, steps, biases = _tile(cfg, seed=1)
    blob = pack_laplace(cfg, ints, steps, biases)
    assert blob.dtype == np.uint8 and blob.ndim == 1
    fixed = laplace_fixed_bytes(cfg)
    bias_count = sum(o for _, o in cfg.model.layer_shapes())
    assert fixed == 6 * LAYERS + np.dtype(bias_dtype).itemsize * bias_count
    assert blob.size > fixed and (blob.size - fixed) % 4 == 0
    # The fixed part holds the steps as float16, little-endian, 6 bytes apart.
    stored = [np.frombuffer(blob[6 * l:6 * l + 2].tobytes(), "<f2")[0] for l in range(LAYERS)]
    assert [float(s) for s in stored] == steps
    for unpack in (unpack_laplace, unpack_tile):
        weights, back = unpack(cfg, blob, 0)
        assert len(weights) == LAYERS == len(back)
        for w, a, s in zip(weights, ints, steps):
            assert w.dtype == torch.float32 and tuple(w.shape) == a.shape
            assert torch.equal(w, torch.from_numpy(a).float() * torch.tensor(s, dtype=torch.float32))
        for b, q in zip(back, biases):
            assert q.dtype == getattr(torch, bias_dtype)
            assert b.dtype == torch.float32 and torch.equal(b, q.float())


def test_laplace_blob_size_follows_the_spread_of_the_integers():
    narrow = pack_laplace(CONFIG, *_tile(scale=0.5))
    wide = pack_laplace(CONFIG, *_tile(scale=20.0))
    assert wide.size > narrow.size
    zeros = [np.zeros(s, np.int32) for s in weight_shapes(CONFIG)]
    _, steps, biases = _tile()
    empty = pack_laplace(CONFIG, zeros, steps, biases)
    assert empty.size == laplace_fixed_bytes(CONFIG)  # all-zero layers need no coded words
    weights, _ = unpack_laplace(CONFIG, empty, 0)
    assert all(not w.any() for w in weights)


def test_pack_laplace_refuses_wrong_shapes_or_counts():
    ints, steps, biases = _tile()
    with pytest.raises(ValueError):
        pack_laplace(CONFIG, ints[:-1], steps, biases)
    with pytest.raises(ValueError):
        pack_laplace(CONFIG, ints, steps[:-1], biases)
    with pytest.raises(ValueError):
        pack_laplace(CONFIG, ints, steps, biases[:-1])
    with pytest.raises(ValueError):
        pack_laplace(CONFIG, [ints[0].reshape(ints[0].shape[1], 1, -1)] + ints[1:], steps, biases)
    too_big = [a.copy() for a in ints]
    too_big[2][0, 0, 0] = MAX_MAGNITUDE + 1
    with pytest.raises(ValueError):
        pack_laplace(CONFIG, too_big, steps, biases)


def _patched(blob: np.ndarray, at: int, raw: bytes) -> np.ndarray:
    out = blob.copy()
    out[at:at + len(raw)] = np.frombuffer(raw, np.uint8)
    return out


def _f16(x: float) -> bytes:
    return np.array([x], "<f2").tobytes()


@pytest.fixture
def blob():
    return pack_laplace(CONFIG, *_tile(seed=4))


@pytest.mark.parametrize("case,match", [
    ("empty", "does not fit"),
    ("too_short", "does not fit"),
    ("fixed_only_minus_one", "does not fit"),
    ("plus_one", "does not fit"),
    ("minus_two", "does not fit"),
    ("zero_step", "step"),
    ("negative_step", "step"),
    ("nan_step", "step"),
    ("inf_step", "step"),
    ("zero_ratio", "entropy model"),
    ("huge_magnitude", "entropy model"),
    ("nan_bias", "non-finite"),
])
def test_malformed_laplace_blobs_are_format_errors(blob, case, match):
    fixed = laplace_fixed_bytes(CONFIG)
    last = 6 * (LAYERS - 1)  # the last layer's parameters
    bad = {
        "empty": blob[:0],
        "too_short": blob[:10],
        "fixed_only_minus_one": blob[:fixed - 1],
        "plus_one": np.concatenate([blob, np.zeros(1, np.uint8)]),
        "minus_two": blob[:-2],
        "zero_step": _patched(blob, 0, _f16(0.0)),
        "negative_step": _patched(blob, last, _f16(-0.25)),
        "nan_step": _patched(blob, 6, _f16(float("nan"))),
        "inf_step": _patched(blob, last, _f16(float("inf"))),
        "zero_ratio": _patched(blob, 6 + 2, b"\x00\x00"),
        "huge_magnitude": _patched(blob, last + 4, np.array([MAX_MAGNITUDE + 1], "<u2").tobytes()),
        "nan_bias": _patched(blob, 6 * LAYERS + 4, _f16(float("nan"))),
    }[case]
    with pytest.raises(FormatError, match=match) as info:
        unpack_laplace(CONFIG, bad, 0)
    assert "\n" not in str(info.value)
    unpack_laplace(CONFIG, blob, 0)  # the original is fine


def test_int8_round_trip_and_layout():
    cfg = dataclasses.replace(CONFIG, quant=QuantConfig(scheme="int8", bits=6, bias_dtype="float32"))
    gen = torch.Generator().manual_seed(0)
    qw = [quantize_weight(torch.randn(*s, generator=gen), cfg.quant) for s in weight_shapes(cfg)]
    qb = [quantize_bias(torch.randn(o, generator=gen), cfg.quant) for _, o in cfg.model.layer_shapes()]
    blob = pack_int8(cfg, qw, qb)
    assert blob.dtype == np.uint8 and blob.size == int8_bytes(cfg)
    assert int8_bytes(cfg) == sum(dt.itemsize * int(np.prod(s)) for _, dt, s in int8_layout(cfg))
    for weights, biases in (unpack_int8(cfg, blob), unpack_tile(cfg, blob, 0)):
        assert all(torch.equal(w, dequantize_weight(q)) for w, q in zip(weights, qw))
        assert all(torch.equal(b, q) for b, q in zip(biases, qb))
    with pytest.raises(FormatError):
        unpack_int8(cfg, blob[:-1])
    with pytest.raises(ValueError):
        pack_int8(cfg, qw[::-1], qb)


def test_int8_non_finite_scale_is_rejected():
    cfg = dataclasses.replace(CONFIG, quant=QuantConfig(scheme="int8"))
    gen = torch.Generator().manual_seed(1)
    qw = [quantize_weight(torch.randn(*s, generator=gen), cfg.quant) for s in weight_shapes(cfg)]
    qb = [quantize_bias(torch.randn(o, generator=gen), cfg.quant) for _, o in cfg.model.layer_shapes()]
    blob = pack_int8(cfg, qw, qb)
    at = int(np.prod(weight_shapes(cfg)[0]))  # the first scale, right after layer 0's int8 weights
    with pytest.raises(FormatError, match="non-finite"):
        unpack_int8(cfg, _patched(blob, at, _f16(float("inf"))))


def test_referenced_round_trip_rebuilds_gain_times_reference_plus_steps():
    ints, steps, biases = _tile(REF_CONFIG, seed=2)
    gains = [0.5, 1.0, -0.25, 0.0]
    blob = pack_laplace(REF_CONFIG, ints, steps, biases, gains)
    assert laplace_fixed_bytes(REF_CONFIG) == laplace_fixed_bytes(CONFIG) + 2 * LAYERS  # + a float16 gain a layer
    for index in (0, 5):
        refs = reference_weights(REF_CONFIG.model, tile_seed(REF_CONFIG.fit.seed, index))
        weights, back = unpack_tile(REF_CONFIG, blob, index)
        for w, a, s, g, r in zip(weights, ints, steps, gains, refs):
            assert torch.equal(w, torch.tensor(g) * r + torch.from_numpy(a).float() * torch.tensor(s))
        assert all(torch.equal(b, q.float()) for b, q in zip(back, biases))
    # The tile's index picks its reference: another index decodes other weights.
    assert not torch.equal(unpack_tile(REF_CONFIG, blob, 0)[0][1], unpack_tile(REF_CONFIG, blob, 1)[0][1])


def test_gains_are_required_exactly_with_a_reference():
    ints, steps, biases = _tile(REF_CONFIG)
    with pytest.raises(ValueError, match="gain"):
        pack_laplace(REF_CONFIG, ints, steps, biases)
    with pytest.raises(ValueError, match="gain"):
        pack_laplace(REF_CONFIG, ints, steps, biases, [1.0] * (LAYERS - 1))
    with pytest.raises(ValueError, match="gain"):
        pack_laplace(CONFIG, ints, steps, biases, [1.0] * LAYERS)


def test_non_finite_gain_is_a_format_error():
    ints, steps, biases = _tile(REF_CONFIG)
    blob = pack_laplace(REF_CONFIG, ints, steps, biases, [1.0] * LAYERS)
    bad = _patched(blob, 8 + 2, _f16(float("inf")))  # layer 1's gain: 8 bytes a layer, gain after the step
    with pytest.raises(FormatError, match="gain"):
        unpack_laplace(REF_CONFIG, bad, 0)


# --- format 4: tiles that drop hidden units ---------------------------------------------------------------

UNITS_CONFIG = dataclasses.replace(CONFIG, quant=QuantConfig(unit_ladder=(1.0, 0.5)))  # with a reference


def _units(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random(UNITS_CONFIG.model.width) < 0.6 for _ in range(LAYERS - 1)]


def test_dropped_units_store_only_kept_weights_and_decode_to_zeros():
    ints, steps, biases = _tile(UNITS_CONFIG, seed=3)
    gains = [0.5, 1.0, -0.25, 0.75]
    units = _units(1)
    units[0][:] = True  # a layer may keep all
    units[1][:] = False
    units[1][3] = True  # or a single unit
    blob = pack_laplace(UNITS_CONFIG, ints, steps, biases, gains, units)
    full = pack_laplace(UNITS_CONFIG, ints, steps, biases, gains, [np.ones(8, bool)] * (LAYERS - 1))
    assert blob.size < full.size
    kept_biases = sum(int(u.sum()) for u in units) + 3
    assert laplace_fixed_bytes(UNITS_CONFIG, kept_biases) == 8 * LAYERS + (LAYERS - 1) * 1 + 2 * kept_biases
    refs = reference_weights(UNITS_CONFIG.model, tile_seed(UNITS_CONFIG.fit.seed, 2))
    weights, back = unpack_tile(UNITS_CONFIG, blob, 2)
    ins = [np.ones(weight_shapes(UNITS_CONFIG)[0][1], bool)] + units
    outs = units + [np.ones(3, bool)]
    for w, a, s, g, r, i, o in zip(weights, ints, steps, gains, refs, ins, outs):
        expected = torch.tensor(g) * r + torch.from_numpy(a).float() * torch.tensor(s)
        keep = torch.from_numpy(i[:, None] & o[None, :])
        assert torch.equal(w, torch.where(keep, expected, torch.zeros(()))), "kept weights exact, dropped ones zero"
    for b, q, o in zip(back, biases, outs):
        assert torch.equal(b, torch.where(torch.from_numpy(o), q.float(), torch.zeros(())))


def test_unit_masks_are_required_exactly_when_the_config_prunes():
    ints, steps, biases = _tile(UNITS_CONFIG)
    gains = [1.0] * LAYERS
    with pytest.raises(ValueError, match="mask"):
        pack_laplace(UNITS_CONFIG, ints, steps, biases, gains)
    with pytest.raises(ValueError, match="mask"):
        pack_laplace(REF_CONFIG, ints, steps, biases, gains, _units())
    with pytest.raises(ValueError, match="mask"):
        pack_laplace(UNITS_CONFIG, ints, steps, biases, gains, _units()[:-1])


def test_a_unit_mask_beyond_the_width_is_a_format_error():
    cfg = dataclasses.replace(UNITS_CONFIG, model=dataclasses.replace(UNITS_CONFIG.model, width=6))
    ints, steps, biases = _tile(cfg)
    units = [np.ones(6, bool)] * (LAYERS - 1)
    blob = pack_laplace(cfg, ints, steps, biases, [1.0] * LAYERS, units)
    unpack_laplace(cfg, blob, 0)
    bad = _patched(blob, 8 * LAYERS, np.array([0xFF], np.uint8).tobytes())  # first mask: bits 6 and 7 set
    with pytest.raises(FormatError, match="unit mask"):
        unpack_laplace(cfg, bad, 0)
