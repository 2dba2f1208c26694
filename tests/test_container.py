"""The `.loe` container: format 4 (written and read), formats 3, 2 and 1 (read only)."""

import dataclasses
import json
import os
import random
import zlib

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import loe_codec
from loe_codec.config import CodecConfig, ModelConfig, QuantConfig, TileConfig
from loe_codec.container import FORMAT_VERSION, CodecReader, Header, SourceInfo, write_codec
from loe_codec.errors import CodecRuntimeError, FormatError, UsageError
from loe_codec.quantize import dequantize_weight, quantize_bias, quantize_weight, storable_steps
from loe_codec.reference import reference_weights, tile_seed
from loe_codec.tileblob import int8_bytes, laplace_fixed_bytes, pack_laplace, weight_shapes
from support import (loe_header, read_safetensors, read_tensor, replace_tensors, rewrite_loe_header,
                     tensor_table, tile_byte_range, write_safetensors, write_v1_loe)

CONFIG = CodecConfig(model=ModelConfig(width=8, banks=(1, 2, 1), pe_frequencies=1, out_channels=3),
                     tile=TileConfig(size=8, margin=1))
WIDTH, HEIGHT = 20, 12  # a 3 x 2 grid
TILES = 6


def _random_tile(config: CodecConfig, seed: int):
    """Integer weights (Laplace-ish, wider for higher seeds so tiles differ in size), float16-exact steps,
    biases and (with a reference) gains of one tile: the arguments of ``pack_laplace``."""
    rng = np.random.default_rng(seed)
    ints = [np.round(rng.laplace(scale=0.5 + seed, size=shape)).astype(np.int32) for shape in weight_shapes(config)]
    steps = storable_steps(torch.from_numpy(rng.uniform(1e-3, 0.1, size=len(ints)))).tolist()
    gen = torch.Generator().manual_seed(seed)
    biases = [quantize_bias(torch.randn(o, generator=gen), config.quant) for _, o in config.model.layer_shapes()]
    gains = None if config.quant.reference == "none" else [1.0 - 0.25 * k for k in range(len(ints))]
    return ints, steps, biases, gains


def _header(config=CONFIG, width=WIDTH, height=HEIGHT, **kw) -> Header:
    return Header(SourceInfo(width, height, config.model.out_channels, 8), config, [], {"psnr": 30.0},
                  encoder="tests", **kw)


def _write(path, config=CONFIG, width=WIDTH, height=HEIGHT, **kw):
    header = _header(config, width, height, **kw)
    tiles = [_random_tile(config, k) for k in range(len(header.grid))]
    blobs = [pack_laplace(config, *t) for t in tiles]
    size = write_codec(path, header, blobs)
    return size, tiles, blobs


@pytest.fixture
def loe_file(tmp_path):
    path = tmp_path / "x.loe"
    _write(path)
    return path


def _assert_format_error(path, *words):
    with pytest.raises(FormatError) as info:
        CodecReader(path)
    message = str(info.value)
    assert "\n" not in message and message
    for w in words:
        assert w in message.lower(), message
    return message


def _assert_rejected_on_open_or_decode(path, *words):
    """Some damage is only visible when a tile is read; either way a FormatError must come out."""
    with pytest.raises(FormatError) as info:
        with loe_codec.open(path) as img:
            img.decode(device="cpu")
    message = str(info.value)
    assert "\n" not in message and message
    for w in words:
        assert w in message.lower(), message


def _expected_weights(ints, steps, gains=None, config=CONFIG, index=0):
    """What a decoder must rebuild, bit for bit: ``gain * reference + ints * step`` per layer."""
    coded = [torch.from_numpy(a).to(torch.float32) * torch.tensor(s, dtype=torch.float32)
             for a, s in zip(ints, steps)]
    if gains is None:
        return coded
    refs = reference_weights(config.model, tile_seed(config.fit.seed, index))
    return [torch.tensor(g) * r + c for g, r, c in zip(gains, refs, coded)]


# --- format 4 round trip -------------------------------------------------------------------------------

def test_write_read_round_trip(tmp_path):
    path = tmp_path / "x.loe"
    size, tiles, blobs = _write(path)
    assert size == path.stat().st_size
    with CodecReader(path) as reader:
        h = reader.header
        assert (h.source.width, h.source.height, h.source.channels) == (WIDTH, HEIGHT, 3)
        assert h.config == CONFIG and h.version == FORMAT_VERSION == 4 and h.encoder == "tests"
        assert h.config.quant.scheme == "laplace"
        assert h.stats == {"psnr": 30.0}
        assert h.tile_crc32 == [zlib.crc32(b.tobytes()) for b in blobs]
        for k, (ints, steps, qb, gains) in enumerate(tiles):
            assert reader.tile_size(k) == blobs[k].size
            weights, biases = reader.read_tile(k)
            for w, e in zip(weights, _expected_weights(ints, steps, gains, index=k)):
                assert w.dtype == torch.float32 and torch.equal(w, e)  # bit for bit
            for b, q in zip(biases, qb):
                assert b.dtype == torch.float32 and torch.equal(b, q.float())
    meta = loe_header(path)
    assert meta["format"] == "loe-codec" and meta["version"] == 4
    assert meta["tiles"] == {"cols": 3, "rows": 2, "count": 6}


def test_tiles_have_variable_sizes_and_the_tables_describe_them(loe_file):
    _, _, blobs = _write(loe_file)
    sizes = [b.size for b in blobs]
    assert len(set(sizes)) > 1  # wider integer distributions code to more bytes
    assert sizes == sorted(sizes)
    assert all(s >= laplace_fixed_bytes(CONFIG) and (s - laplace_fixed_bytes(CONFIG)) % 4 == 0 for s in sizes)
    table = tensor_table(loe_file)
    assert set(table) == {"tiles", "tile_offsets", "tile_crc32"}
    assert table["tiles"]["dtype"] == "U8" and table["tiles"]["shape"] == [sum(sizes)]
    assert table["tile_offsets"]["dtype"] == "I64" and table["tile_offsets"]["shape"] == [TILES + 1]
    assert table["tile_crc32"]["dtype"] == "I64" and table["tile_crc32"]["shape"] == [TILES]
    offsets = read_tensor(loe_file, "tile_offsets")
    assert offsets.tolist() == [0] + np.cumsum(sizes).tolist()
    assert read_tensor(loe_file, "tile_crc32").tolist() == [zlib.crc32(b.tobytes()) for b in blobs]
    assert np.array_equal(read_tensor(loe_file, "tiles"), np.concatenate(blobs))
    raw = loe_file.read_bytes()
    for k, blob in enumerate(blobs):
        start, end = tile_byte_range(loe_file, k)
        assert raw[start:end] == blob.tobytes()
    with CodecReader(loe_file) as reader:
        assert [reader.tile_size(k) for k in range(TILES)] == sizes


def test_float32_biases_round_trip(tmp_path):
    cfg = dataclasses.replace(CONFIG, quant=QuantConfig(bias_dtype="float32"))
    path = tmp_path / "f32.loe"
    _, tiles, _ = _write(path, config=cfg)
    with CodecReader(path) as reader:
        assert reader.config.quant.bias_dtype == "float32"
        weights, biases = reader.read_tile(3)
    ints, steps, qb, gains = tiles[3]
    assert all(torch.equal(w, e) for w, e in zip(weights, _expected_weights(ints, steps, gains, cfg, 3)))
    assert all(q.dtype == torch.float32 and torch.equal(b, q) for b, q in zip(biases, qb))


def test_config_survives_the_header():
    cfg = CodecConfig(model=ModelConfig(width=5, banks=(2, 1, 3), arrangement="uniform_fine", blend="linear",
                                        activation="gelu", pe_frequencies=2, sine_w0=12.5, subdivide=3,
                                        out_channels=4),
                      quant=QuantConfig(slope=3.5e-4, qat_steps=12, qat_learning_rate=2e-4),
                      tile=TileConfig(size=9, margin=3), preset="fast")
    header = _header(cfg, 30, 10)
    back = Header.from_json(header.to_json())
    assert back.config == cfg and back.source == header.source and back.version == 4
    assert "tile_crc32" not in json.loads(header.to_json())  # formats 2 and 3 keep them in a tensor


def test_write_is_atomic_and_refuses_wrong_blobs(tmp_path):
    path = tmp_path / "x.loe"
    header = _header()
    blobs = [pack_laplace(CONFIG, *_random_tile(CONFIG, k)) for k in range(TILES)]
    bad_lists = [
        blobs[:5],                                          # one tile short
        blobs + blobs[:1],                                  # one too many
        blobs[:5] + [np.zeros(0, dtype=np.uint8)],          # an empty blob
        blobs[:5] + [blobs[5].astype(np.int16)],            # not uint8
        blobs[:5] + [blobs[5].reshape(1, -1)],              # not 1-D
    ]
    for bad in bad_lists:
        with pytest.raises(ValueError):
            write_codec(path, header, bad)
    for version in (1, 2, 3, 5):
        with pytest.raises(ValueError):
            write_codec(path, _header(version=version), blobs)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(CodecRuntimeError):
        write_codec(tmp_path / "missing" / "x.loe", header, blobs)
    write_codec(path, header, blobs)
    assert [p.name for p in tmp_path.iterdir()] == ["x.loe"]  # no temporary file left behind


def test_written_file_has_normal_permissions(tmp_path):
    # Like any file the user creates: mode 0666 minus the umask (not the 0600 of a private temp file).
    path = tmp_path / "x.loe"
    _write(path)
    umask = os.umask(0)
    os.umask(umask)
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~umask)


def test_reader_reads_only_what_it_needs(loe_file):
    # Opening validates the header and tensor tables without reading tiles; tiles are read on demand.
    with CodecReader(loe_file) as reader:
        assert reader.size_bytes == os.path.getsize(loe_file)
        with pytest.raises(IndexError):
            reader.read_tile(TILES)
        with pytest.raises(IndexError):
            reader.read_tile(-1)
        weights, biases = reader.read_tile(5)
        assert len(weights) == CONFIG.model.layers == len(biases)


def test_header_json_is_compact_and_self_describing(loe_file):
    meta = loe_header(loe_file)
    assert set(meta) == {"format", "version", "kind", "source", "tiles", "config", "stats", "encoder"}
    assert CodecConfig.from_dict(meta["config"]) == CONFIG
    assert meta["config"]["quant"]["scheme"] == "laplace"
    json.dumps(meta)  # round-trips as JSON


# --- format 2: damaged tensor tables ---------------------------------------------------------------------

def _tamper(loe_file, tmp_path, **replace):
    return replace_tensors(loe_file, tmp_path / "bad.loe", replace)


def test_replace_tensors_helper_is_faithful(loe_file, tmp_path):
    # Rewriting with the same tensors gives a file that reads exactly like the original (so the rejections
    # below are caused by the tampering, not by the helper).
    same = _tamper(loe_file, tmp_path, tile_crc32=read_tensor(loe_file, "tile_crc32"))
    with CodecReader(loe_file) as a, CodecReader(same) as b:
        for k in range(TILES):
            for x, y in zip(sum(a.read_tile(k), []), sum(b.read_tile(k), [])):
                assert torch.equal(x, y)


@pytest.mark.parametrize("case", [
    "offsets_int32", "offsets_short", "offsets_long", "offsets_2d", "crc_int32", "crc_short", "crc_long",
    "tiles_int16", "tiles_2d", "tiles_missing", "offsets_missing", "crc_missing", "extra_tensor",
])
def test_wrong_tensor_tables_are_rejected(loe_file, tmp_path, case):
    offsets = read_tensor(loe_file, "tile_offsets")
    crcs = read_tensor(loe_file, "tile_crc32")
    tiles = read_tensor(loe_file, "tiles")
    replace = {
        "offsets_int32": dict(tile_offsets=offsets.astype(np.int32)),
        "offsets_short": dict(tile_offsets=offsets[:-1]),
        "offsets_long": dict(tile_offsets=np.append(offsets, offsets[-1] + 4)),
        "offsets_2d": dict(tile_offsets=offsets.reshape(1, -1)),
        "crc_int32": dict(tile_crc32=crcs.astype(np.int32)),
        "crc_short": dict(tile_crc32=crcs[:-1]),
        "crc_long": dict(tile_crc32=np.append(crcs, 0)),
        "tiles_int16": dict(tiles=tiles[:tiles.size // 2 * 2].view("<i2")),
        "tiles_2d": dict(tiles=tiles.reshape(1, -1)),
        "tiles_missing": dict(tiles=None),
        "offsets_missing": dict(tile_offsets=None),
        "crc_missing": dict(tile_crc32=None),
        "extra_tensor": {"tile.0": tiles[:10]},
    }[case]
    words = ("format-4",) if case.endswith(("missing", "extra_tensor")) else ("tile tables",)
    _assert_format_error(_tamper(loe_file, tmp_path, **replace), *words)


@pytest.mark.parametrize("case", ["swapped", "equal", "first_not_zero", "negative", "last_short", "last_long",
                                  "beyond_the_blob"])
def test_inconsistent_offsets_are_rejected(loe_file, tmp_path, case):
    offsets = read_tensor(loe_file, "tile_offsets")
    tiles = read_tensor(loe_file, "tiles")
    bad = offsets.copy()
    replace = {}
    if case == "swapped":  # not monotonic
        bad[2], bad[3] = offsets[3], offsets[2]
    elif case == "equal":  # an empty tile
        bad[3] = bad[2]
    elif case == "first_not_zero":
        bad[0] = 4
    elif case == "negative":
        bad[0] = -4
    elif case == "last_short":  # the blob holds 8 bytes more than the table says
        replace["tiles"] = np.concatenate([tiles, np.zeros(8, dtype=np.uint8)])
    elif case == "last_long":  # the table says 8 bytes more than the blob holds
        bad[-1] += 8
    else:
        bad[-2] = bad[-1] + 100
    replace["tile_offsets"] = bad
    _assert_format_error(_tamper(loe_file, tmp_path, **replace), "offsets")


def test_crc_mismatch_in_the_table_is_caught_when_the_tile_is_read(loe_file, tmp_path):
    crcs = read_tensor(loe_file, "tile_crc32")
    crcs[4] ^= 1
    bad = _tamper(loe_file, tmp_path, tile_crc32=crcs)
    with CodecReader(bad) as reader:  # the tables are consistent
        for k in range(TILES):
            if k == 4:
                with pytest.raises(FormatError, match="tile 4.*(corrupt|checksum)") as info:
                    reader.read_tile(k)
                assert "\n" not in str(info.value)
            else:
                reader.read_tile(k)
    _assert_rejected_on_open_or_decode(bad, "checksum")


def test_moved_tile_boundary_is_caught_by_the_crcs(loe_file, tmp_path):
    # Offsets still increasing and ending at the blob's length, but tiles 1 and 2 cut in the wrong place.
    offsets = read_tensor(loe_file, "tile_offsets")
    offsets[2] += 4
    bad = _tamper(loe_file, tmp_path, tile_offsets=offsets)
    with CodecReader(bad) as reader:
        reader.read_tile(0)
        reader.read_tile(3)
        for k in (1, 2):
            with pytest.raises(FormatError, match=f"tile {k}.*checksum"):
                reader.read_tile(k)


def test_a_tile_that_passes_the_crc_but_not_the_layout_is_rejected(loe_file, tmp_path):
    # A consistent file (tables and CRCs recomputed) whose tile 1 lost 2 bytes: not a whole number of words.
    blobs = [read_tensor(loe_file, "tiles")[a:b] for a, b in zip(read_tensor(loe_file, "tile_offsets")[:-1],
                                                                   read_tensor(loe_file, "tile_offsets")[1:])]
    blobs[1] = blobs[1][:-2]
    path = tmp_path / "short.loe"
    write_codec(path, _header(), blobs)
    with CodecReader(path) as reader:
        reader.read_tile(0)
        with pytest.raises(FormatError, match="does not fit"):
            reader.read_tile(1)


def test_non_finite_bias_is_rejected(tmp_path):
    path = tmp_path / "nan.loe"
    blobs = [pack_laplace(CONFIG, *_random_tile(CONFIG, k)) for k in range(TILES)]
    # The first float16 bias of tile 1 (right after the 6-byte layer parameters) becomes +inf (0x7C00);
    # the CRC is computed on write, so only the layout check can catch it.
    blob = blobs[1].copy()
    at = 6 * CONFIG.model.layers
    blob[at:at + 2] = [0x00, 0x7C]
    blobs[1] = blob
    write_codec(path, _header(), blobs)
    with CodecReader(path) as reader:
        reader.read_tile(0)
        with pytest.raises(FormatError, match="non-finite"):
            reader.read_tile(1)


# --- damaged or foreign files ------------------------------------------------------------------------------

@pytest.mark.parametrize("keep", ["half", "minus_one", "minus_tile", "header_only", "eight_bytes", "empty"])
def test_truncated_file_is_rejected(loe_file, tmp_path, keep):
    raw = loe_file.read_bytes()
    header_len = 8 + int.from_bytes(raw[:8], "little")
    with CodecReader(loe_file) as reader:
        last = reader.tile_size(TILES - 1)
    cut = {"half": len(raw) // 2, "minus_one": len(raw) - 1, "minus_tile": len(raw) - last,
           "header_only": header_len, "eight_bytes": 8, "empty": 0}[keep]
    bad = tmp_path / "cut.loe"
    bad.write_bytes(raw[:cut])
    _assert_rejected_on_open_or_decode(bad)


@pytest.mark.parametrize("tile", [0, 4, 5])
@pytest.mark.parametrize("where", [0, 0.5, -1])
def test_flipped_byte_in_a_tile_is_caught_by_the_crc(loe_file, tile, where):
    raw = bytearray(loe_file.read_bytes())
    start, end = tile_byte_range(loe_file, tile)
    pos = start + int(where * (end - start)) if where >= 0 else end - 1
    raw[pos] ^= 0x10
    loe_file.write_bytes(bytes(raw))
    with CodecReader(loe_file) as reader:  # the header and tables are intact
        for k in range(TILES):
            if k == tile:
                with pytest.raises(FormatError, match=f"tile {tile}.*(corrupt|checksum)"):
                    reader.read_tile(k)
            else:
                reader.read_tile(k)
    _assert_rejected_on_open_or_decode(loe_file, "checksum")


def test_newer_format_version_asks_for_an_upgrade(loe_file, tmp_path):
    bad = rewrite_loe_header(loe_file, tmp_path / "v5.loe", lambda h: h.update(version=5))
    message = _assert_format_error(bad, "version", "newer", "upgrade")
    assert "4" in message
    bad = rewrite_loe_header(loe_file, tmp_path / "v9.loe", lambda h: h.update(version=9))
    _assert_format_error(bad, "newer", "upgrade")


def test_format_2_files_decode_without_a_reference(tmp_path):
    """Format 2 (no weight references) is still read: its config gets reference "none"."""
    cfg = dataclasses.replace(CONFIG, quant=QuantConfig(reference="none"))
    tiles = [_random_tile(cfg, k) for k in range(TILES)]
    blobs = [pack_laplace(cfg, *t) for t in tiles]
    v3 = tmp_path / "v3.loe"
    write_codec(v3, _header(cfg), blobs)

    def as_format_2(h):
        h["version"] = 2
        del h["config"]["quant"]["reference"]  # format 2 predates the field
    v2 = rewrite_loe_header(v3, tmp_path / "v2.loe", as_format_2)
    with CodecReader(v2) as reader:
        assert reader.header.version == 2 and reader.config.quant.reference == "none"
        ints, steps, _, _ = tiles[4]
        assert all(torch.equal(w, e) for w, e in zip(reader.read_tile(4)[0], _expected_weights(ints, steps)))


def test_unknown_reference_asks_for_an_upgrade(loe_file, tmp_path):
    bad = rewrite_loe_header(loe_file, tmp_path / "ref.loe",
                             lambda h: h["config"]["quant"].update(reference="learned-prior-9"))
    _assert_format_error(bad, "learned-prior-9", "upgrade")
    missing = rewrite_loe_header(loe_file, tmp_path / "noref.loe", lambda h: h["config"]["quant"].pop("reference"))
    _assert_format_error(missing, "reference")


def test_format_2_header_claiming_int8_weights_is_rejected(loe_file, tmp_path):
    bad = rewrite_loe_header(loe_file, tmp_path / "int8.loe", lambda h: h["config"]["quant"].update(scheme="int8"))
    _assert_format_error(bad, "laplace", "int8")


def test_format_2_header_over_format_1_tensors_is_rejected(tmp_path):
    v1 = _write_v1(tmp_path / "v1.loe")[0]
    bad = rewrite_loe_header(v1, tmp_path / "v2.loe", lambda h: (h.update(version=2), h.pop("tile_crc32")))
    _assert_format_error(bad, "format-2")


def test_plain_safetensors_file_is_rejected(tmp_path):
    plain = tmp_path / "model.safetensors"
    save_file({"weight": torch.zeros(3, 4)}, str(plain))
    _assert_format_error(plain, "not a .loe")
    with_meta = tmp_path / "meta.loe"
    save_file({"tiles": torch.zeros(10, dtype=torch.uint8)}, str(with_meta), metadata={"format": "pt"})
    _assert_format_error(with_meta, "not a .loe")


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("size", [3, 64, 5000])
def test_random_garbage_is_rejected(tmp_path, seed, size):
    path = tmp_path / "garbage.loe"
    path.write_bytes(random.Random(seed * 7919 + size).randbytes(size))
    _assert_format_error(path)


def test_text_and_small_length_prefix_garbage_is_rejected(tmp_path):
    text = tmp_path / "text.loe"
    text.write_text("hello, this is not a codec file\n" * 10)
    _assert_format_error(text)
    fake = tmp_path / "fake.loe"  # a plausible length prefix followed by junk
    fake.write_bytes((40).to_bytes(8, "little") + b"{" + b"x" * 60)
    _assert_format_error(fake)


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError):
        CodecReader(tmp_path / "nope.loe")


def test_header_grid_disagreeing_with_the_tensors_is_rejected(loe_file, tmp_path):
    # A consistent header for a bigger image (3 x 3 tiles) over the tables of the 6 tiles of the 3 x 2 image.
    def grow(h):
        h["source"]["height"] = 20
        h["tiles"] = {"cols": 3, "rows": 3, "count": 9}
    _assert_format_error(rewrite_loe_header(loe_file, tmp_path / "grow.loe", grow), "tile")


@pytest.mark.parametrize("tiles", [{"cols": 2, "rows": 2, "count": 4}, {"cols": 3, "rows": 2, "count": 7},
                                   {"cols": 6, "rows": 1, "count": 6}])
def test_header_tile_grid_disagreeing_with_its_image_is_rejected(loe_file, tmp_path, tiles):
    bad = rewrite_loe_header(loe_file, tmp_path / "grid.loe", lambda h: h.update(tiles=tiles))
    _assert_format_error(bad, "tile grid")


MALFORMED = {
    "not_json": None,
    "other_format": lambda h: h.update(format="something-else"),
    "version_zero": lambda h: h.update(version=0),
    "version_string": lambda h: h.update(version="2"),
    "version_float": lambda h: h.update(version=2.0),
    "kind_video": lambda h: h.update(kind="video"),
    "no_source": lambda h: h.pop("source"),
    "source_list": lambda h: h.update(source=[20, 12, 3]),
    "zero_width": lambda h: h["source"].update(width=0),
    "float_width": lambda h: h["source"].update(width=20.0),
    "sixteen_bit": lambda h: h["source"].update(bit_depth=16),
    "channels_vs_model": lambda h: h["source"].update(channels=4),
    "unknown_config_key": lambda h: h["config"]["model"].update(depth=3),
    "bad_blend": lambda h: h["config"]["model"].update(blend="cubic"),
    "missing_fit": lambda h: h["config"].pop("fit"),
    "unknown_scheme": lambda h: h["config"]["quant"].update(scheme="zstd"),
    "negative_slope": lambda h: h["config"]["quant"].update(slope=-1.0),
    "quant_list": lambda h: h["config"].update(quant=[8]),
    "no_tiles": lambda h: h.pop("tiles"),
    "tiles_list": lambda h: h.update(tiles=[3, 2, 6]),
    "tiles_null": lambda h: h.update(tiles=None),
    "header_list": lambda h: (h.clear()),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_headers_are_rejected_with_format_error(loe_file, tmp_path, case):
    bad = tmp_path / f"{case}.loe"
    edit = MALFORMED[case]
    if edit is None:
        header, data = read_safetensors(loe_file)
        header["__metadata__"]["loe"] = "{not json"
        write_safetensors(bad, header, data)
    else:
        rewrite_loe_header(loe_file, bad, edit)
    _assert_format_error(bad)


def test_image_file_with_a_3d_model_is_rejected(tmp_path):
    # A header that passes every size check but describes a dims=3 network for a 2-D image:
    # such a file cannot be decoded and must be refused as a format error, not crash the decoder.
    cfg = dataclasses.replace(CONFIG, model=dataclasses.replace(CONFIG.model, dims=3))
    path = tmp_path / "dims3.loe"
    _write(path, config=cfg)
    _assert_rejected_on_open_or_decode(path)


# --- format 1 (read only) ----------------------------------------------------------------------------------

def _int8_tile(config: CodecConfig, seed: int):
    gen = torch.Generator().manual_seed(seed)
    qw, qb = [], []
    for (i, o), nb in zip(config.model.layer_shapes(), config.model.bank_counts()):
        qw.append(quantize_weight(torch.randn(nb, i, o, generator=gen) / i**0.5, config.quant))
        qb.append(quantize_bias(torch.randn(o, generator=gen) * 0.1, config.quant))
    return qw, qb


def _write_v1(path, config=CONFIG, width=WIDTH, height=HEIGHT):
    grid_count = len(_header(config, width, height).grid)
    tiles = [_int8_tile(config, k) for k in range(grid_count)]
    return write_v1_loe(path, config, width, height, tiles, stats={"psnr": 20.0}), tiles


def test_format_1_file_is_read(tmp_path):
    path, tiles = _write_v1(tmp_path / "v1.loe")
    meta = loe_header(path)
    assert meta["version"] == 1 and "scheme" not in meta["config"]["quant"] and len(meta["tile_crc32"]) == TILES
    with CodecReader(path) as reader:
        h = reader.header
        assert h.version == 1 and h.config.quant.scheme == "int8" and h.config.quant.bits == 8
        assert h.config.model == CONFIG.model and h.stats == {"psnr": 20.0}
        assert h.tile_crc32 == meta["tile_crc32"]
        for k, (qw, qb) in enumerate(tiles):
            assert reader.tile_size(k) == int8_bytes(h.config)
            weights, biases = reader.read_tile(k)
            assert all(torch.equal(w, dequantize_weight(q)) for w, q in zip(weights, qw))
            assert all(torch.equal(b, q.float()) for b, q in zip(biases, qb))


def test_format_1_file_decodes(tmp_path):
    path, _ = _write_v1(tmp_path / "v1.loe")
    with loe_codec.open(path) as img:
        assert img.header.version == 1
        pixels = img.decode(device="cpu")
        again = img.decode(device="cpu")
        info = img.info()
    assert pixels.shape == (HEIGHT, WIDTH, 3) and pixels.dtype == np.uint8
    assert np.array_equal(pixels, again) and len(np.unique(pixels)) > 10
    assert info["format_version"] == 1


def test_format_1_flipped_byte_is_caught_by_the_header_crc(tmp_path):
    path, _ = _write_v1(tmp_path / "v1.loe")
    raw = bytearray(path.read_bytes())
    start, end = tile_byte_range(path, 2)
    raw[(start + end) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with CodecReader(path) as reader:
        reader.read_tile(1)
        with pytest.raises(FormatError, match="tile 2.*checksum"):
            reader.read_tile(2)


def test_format_1_wrong_or_missing_tile_tensors_are_rejected(tmp_path):
    path, _ = _write_v1(tmp_path / "v1.loe")
    header, data = read_safetensors(path)
    renamed = dict(header)
    renamed["tile.6"] = renamed.pop("tile.5")
    _assert_format_error(write_safetensors(tmp_path / "renamed.loe", renamed, data))
    dropped = replace_tensors(path, tmp_path / "dropped.loe", {"tile.5": None})
    _assert_format_error(dropped)
    blob = read_tensor(path, "tile.2")
    short = replace_tensors(path, tmp_path / "short.loe", {"tile.2": blob[:-2]})
    _assert_format_error(short, "tile.2")
    wide = replace_tensors(path, tmp_path / "wide.loe", {"tile.2": blob.view("<i2")})
    _assert_format_error(wide, "tile.2")


@pytest.mark.parametrize("edit", [
    lambda h: h.update(tile_crc32=["x"] * 6),
    lambda h: h.update(tile_crc32=[0] * 5),
    lambda h: h.pop("tile_crc32"),
    lambda h: h["config"].update(quant=None),
], ids=["crc_not_int", "crc_count", "crc_missing", "quant_null"])
def test_format_1_malformed_headers_are_rejected(tmp_path, edit):
    path, _ = _write_v1(tmp_path / "v1.loe")
    _assert_format_error(rewrite_loe_header(path, tmp_path / "bad.loe", edit))


def test_format_1_header_over_format_2_tensors_is_rejected(loe_file, tmp_path):
    def to_v1(h):
        h["version"] = 1
        h["tile_crc32"] = [0] * TILES
    _assert_format_error(rewrite_loe_header(loe_file, tmp_path / "v1.loe", to_v1), "tensors")
