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
from loe_codec.container import (FORMAT_VERSION, CodecReader, Header, SourceInfo, pack_tile, tile_bytes,
                                 tile_layout, unpack_tile, write_codec)
from loe_codec.errors import CodecRuntimeError, FormatError, UsageError
from loe_codec.quantize import dequantize_weight, quantize_bias, quantize_weight
from support import loe_header, read_safetensors, rewrite_loe_header, tile_byte_range, write_safetensors

CONFIG = CodecConfig(model=ModelConfig(width=8, banks=(1, 2, 1), pe_frequencies=1, out_channels=3),
                     quant=QuantConfig(bits=8), tile=TileConfig(size=8, margin=1))
WIDTH, HEIGHT = 20, 12  # a 3 x 2 grid


def _random_tile(config: CodecConfig, seed: int):
    gen = torch.Generator().manual_seed(seed)
    qw, qb = [], []
    for (i, o), nb in zip(config.model.layer_shapes(), config.model.bank_counts()):
        qw.append(quantize_weight(torch.randn(nb, i, o, generator=gen), config.quant))
        qb.append(quantize_bias(torch.randn(o, generator=gen), config.quant))
    return qw, qb


def _header(config=CONFIG, width=WIDTH, height=HEIGHT, **kw) -> Header:
    return Header(SourceInfo(width, height, config.model.out_channels, 8), config, [], {"psnr": 30.0},
                  encoder="tests", **kw)


def _write(path, config=CONFIG, width=WIDTH, height=HEIGHT, **kw):
    header = _header(config, width, height, **kw)
    tiles = [_random_tile(config, k) for k in range(len(header.grid))]
    blobs = [pack_tile(config, w, b) for w, b in tiles]
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


# --- round trip -----------------------------------------------------------------------------------

def test_write_read_round_trip(tmp_path):
    path = tmp_path / "x.loe"
    size, tiles, blobs = _write(path)
    assert size == path.stat().st_size
    assert len(blobs) == 6 and all(b.numel() == tile_bytes(CONFIG) for b in blobs)
    with CodecReader(path) as reader:
        h = reader.header
        assert (h.source.width, h.source.height, h.source.channels) == (WIDTH, HEIGHT, 3)
        assert h.config == CONFIG and h.version == FORMAT_VERSION and h.encoder == "tests"
        assert h.stats == {"psnr": 30.0}
        assert h.tile_crc32 == [zlib.crc32(b.numpy().tobytes()) for b in blobs]
        for k, (qw, qb) in enumerate(tiles):
            weights, biases = reader.read_tile(k)
            for w, q in zip(weights, qw):
                assert torch.equal(w, dequantize_weight(q))
            for b, q in zip(biases, qb):
                assert torch.equal(b, q.float())
    # The header is plain JSON under the "loe" metadata key.
    meta = loe_header(path)
    assert meta["format"] == "loe-codec" and meta["tiles"] == {"cols": 3, "rows": 2, "count": 6}


def test_pack_unpack_round_trip_with_float32_biases():
    cfg = dataclasses.replace(CONFIG, quant=QuantConfig(bits=4, bias_dtype="float32"))
    qw, qb = _random_tile(cfg, 3)
    blob = pack_tile(cfg, qw, qb)
    assert blob.dtype == torch.uint8 and blob.numel() == tile_bytes(cfg)
    assert tile_bytes(cfg) == sum(dt.itemsize * int(np.prod(s)) for _, dt, s in tile_layout(cfg))
    weights, biases = unpack_tile(cfg, blob.numpy())
    assert all(torch.equal(w, dequantize_weight(q)) for w, q in zip(weights, qw))
    assert all(torch.equal(b, q) for b, q in zip(biases, qb))


def test_config_survives_the_header():
    cfg = CodecConfig(model=ModelConfig(width=5, banks=(2, 1, 3), arrangement="uniform_fine", blend="linear",
                                        activation="gelu", pe_frequencies=2, sine_w0=12.5, subdivide=3,
                                        out_channels=4),
                      tile=TileConfig(size=9, margin=3), preset="fast")
    header = _header(cfg, 30, 10)
    header.tile_crc32 = [0] * len(header.grid)
    back = Header.from_json(header.to_json())
    assert back.config == cfg and back.source == header.source


def test_write_is_atomic_and_refuses_wrong_blobs(tmp_path):
    path = tmp_path / "x.loe"
    header = _header()
    blobs = [pack_tile(CONFIG, *_random_tile(CONFIG, k)) for k in range(6)]
    with pytest.raises(ValueError):
        write_codec(path, header, blobs[:5])
    with pytest.raises(ValueError):
        write_codec(path, header, blobs[:5] + [blobs[5][:-1]])
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


# --- rejection of damaged or foreign files ----------------------------------------------------------

@pytest.mark.parametrize("keep", ["half", "minus_one", "minus_tile", "header_only", "eight_bytes", "empty"])
def test_truncated_file_is_rejected(loe_file, tmp_path, keep):
    raw = loe_file.read_bytes()
    header_len = 8 + int.from_bytes(raw[:8], "little")
    cut = {"half": len(raw) // 2, "minus_one": len(raw) - 1, "minus_tile": len(raw) - tile_bytes(CONFIG),
           "header_only": header_len, "eight_bytes": 8, "empty": 0}[keep]
    bad = tmp_path / "cut.loe"
    bad.write_bytes(raw[:cut])
    _assert_rejected_on_open_or_decode(bad)


@pytest.mark.parametrize("tile", [0, 4])
@pytest.mark.parametrize("where", [0, 0.5, -1])
def test_flipped_byte_in_a_tile_is_caught_by_the_crc(loe_file, tile, where):
    raw = bytearray(loe_file.read_bytes())
    start, end = tile_byte_range(loe_file, tile)
    pos = start + int(where * (end - start)) if where >= 0 else end - 1
    raw[pos] ^= 0x10
    loe_file.write_bytes(bytes(raw))
    with CodecReader(loe_file) as reader:  # the header is intact
        for k in range(6):
            if k == tile:
                with pytest.raises(FormatError, match=f"tile {tile}.*(corrupt|checksum)"):
                    reader.read_tile(k)
            else:
                reader.read_tile(k)
    _assert_rejected_on_open_or_decode(loe_file, "checksum")


def test_newer_format_version_is_rejected(tmp_path):
    path = tmp_path / "v2.loe"
    _write(path, version=FORMAT_VERSION + 1)
    message = _assert_format_error(path, "version", "newer")
    assert str(FORMAT_VERSION + 1) in message


def test_newer_version_in_an_edited_header_is_rejected(loe_file, tmp_path):
    bad = rewrite_loe_header(loe_file, tmp_path / "v9.loe", lambda h: h.update(version=9))
    _assert_format_error(bad, "newer")


def test_plain_safetensors_file_is_rejected(tmp_path):
    plain = tmp_path / "model.safetensors"
    save_file({"weight": torch.zeros(3, 4)}, str(plain))
    _assert_format_error(plain, "not a .loe")
    with_meta = tmp_path / "meta.loe"
    save_file({"tile.0": torch.zeros(10, dtype=torch.uint8)}, str(with_meta), metadata={"format": "pt"})
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
    # A consistent header for a bigger image (3 x 3 tiles) over the 6 tensors of the 3 x 2 image.
    def grow(h):
        h["source"]["height"] = 20
        h["tiles"] = {"cols": 3, "rows": 3, "count": 9}
        h["tile_crc32"] = h["tile_crc32"] + [0, 0, 0]
    _assert_format_error(rewrite_loe_header(loe_file, tmp_path / "grow.loe", grow), "tile")


@pytest.mark.parametrize("tiles", [{"cols": 2, "rows": 2, "count": 4}, {"cols": 3, "rows": 2, "count": 7},
                                   {"cols": 6, "rows": 1, "count": 6}])
def test_header_tile_grid_disagreeing_with_its_image_is_rejected(loe_file, tmp_path, tiles):
    bad = rewrite_loe_header(loe_file, tmp_path / "grid.loe", lambda h: h.update(tiles=tiles))
    _assert_format_error(bad, "tile grid")


def test_missing_or_extra_tile_tensor_is_rejected(loe_file, tmp_path):
    header, data = read_safetensors(loe_file)
    # Rename tile.5 -> tile.6: same count, wrong names.
    renamed = dict(header)
    renamed["tile.6"] = renamed.pop("tile.5")
    _assert_format_error(write_safetensors(tmp_path / "renamed.loe", renamed, data))
    # Drop tile.5 (data stays, unreferenced bytes are not allowed by safetensors either way).
    dropped = {k: v for k, v in header.items() if k != "tile.5"}
    _assert_format_error(write_safetensors(tmp_path / "dropped.loe", dropped, data))


def test_wrong_tile_tensor_size_is_rejected(tmp_path):
    path = tmp_path / "short.loe"
    header = _header()
    header.tile_crc32 = [0] * 6
    n = tile_bytes(CONFIG)
    save_file({f"tile.{k}": torch.zeros(n - 2 if k == 2 else n, dtype=torch.uint8) for k in range(6)},
              str(path), metadata={"loe": header.to_json()})
    _assert_format_error(path, "tile.2")
    wrong_dtype = tmp_path / "dtype.loe"
    save_file({f"tile.{k}": torch.zeros(n // 2, dtype=torch.int16) for k in range(6)},
              str(wrong_dtype), metadata={"loe": header.to_json()})
    _assert_format_error(wrong_dtype)


def test_non_finite_weights_are_rejected(tmp_path):
    path = tmp_path / "nan.loe"
    header = _header()
    blobs = [pack_tile(CONFIG, *_random_tile(CONFIG, k)) for k in range(6)]
    # Overwrite the first float16 scale of tile 1 with +inf (0x7C00); the CRC is computed on write.
    offset = sum(dt.itemsize * int(np.prod(s)) for _, dt, s in tile_layout(CONFIG)[:1])
    blob = blobs[1].clone()
    blob[offset:offset + 2] = torch.tensor([0x00, 0x7C], dtype=torch.uint8)
    blobs[1] = blob
    write_codec(path, header, blobs)
    with CodecReader(path) as reader:
        with pytest.raises(FormatError, match="non-finite"):
            reader.read_tile(1)


MALFORMED = {
    "not_json": None,
    "other_format": lambda h: h.update(format="something-else"),
    "version_zero": lambda h: h.update(version=0),
    "version_string": lambda h: h.update(version="1"),
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
    "crc_not_int": lambda h: h.update(tile_crc32=["x"] * 6),
    "crc_count": lambda h: h.update(tile_crc32=[0] * 5),
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


def test_reader_reads_only_what_it_needs(loe_file):
    # Opening validates the header and tensor table without reading tiles; tiles are read on demand.
    with CodecReader(loe_file) as reader:
        assert reader.size_bytes == os.path.getsize(loe_file)
        with pytest.raises(IndexError):
            reader.read_tile(6)
        weights, biases = reader.read_tile(5)
        assert len(weights) == CONFIG.model.layers == len(biases)


def test_header_json_is_compact_and_self_describing(loe_file):
    meta = loe_header(loe_file)
    assert set(meta) >= {"format", "version", "kind", "source", "tiles", "config", "tile_crc32", "stats",
                         "encoder"}
    assert CodecConfig.from_dict(meta["config"]) == CONFIG
    json.dumps(meta)  # round-trips as JSON
