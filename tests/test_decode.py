import numpy as np
import pytest

import loe_codec
from loe_codec.container import CodecReader
from loe_codec.decode import MAX_SUPERSAMPLE, DecodeRequest, TileCache, iter_blocks, iter_strips, render


def _box_downscale(full: np.ndarray, f: int) -> np.ndarray:
    h, w, c = full.shape
    return full[:h - h % f, :w - w % f].reshape(h // f, f, w // f, f, c).astype(np.float64).mean(axis=(1, 3))


@pytest.mark.parametrize("region", [(5, 3, 20, 17), (0, 0, 40, 28), (15, 13, 3, 4), (31, 20, 9, 8),
                                    (16, 0, 1, 28), (0, 27, 40, 1), (14, 14, 4, 4)])
def test_region_decode_equals_window_of_full_decode(encoded, full_decode, region):
    x, y, w, h = region
    with loe_codec.open(encoded[0]) as img:
        part = img.decode(region=region, device="cpu")
    assert part.shape == (h, w, 3)
    np.testing.assert_array_equal(part, full_decode[y:y + h, x:x + w])


def test_region_decode_at_scale_2_equals_window_of_full_scale_2_decode(encoded):
    with loe_codec.open(encoded[0]) as img:
        full2 = img.decode(scale=2, device="cpu")
        part2 = img.decode(region=(8, 4, 16, 12), scale=2, device="cpu")
    np.testing.assert_array_equal(part2, full2[8:32, 16:48])


def test_scale_2_gives_twice_the_size(encoded):
    with loe_codec.open(encoded[0]) as img:
        assert img.decode(scale=2, device="cpu").shape == (56, 80, 3)
        assert img.decode(region=(3, 5, 11, 7), scale=2, device="cpu").shape == (14, 22, 3)
        assert img.decode(scale=1.5, device="cpu").shape == (42, 60, 3)


def test_upscaled_samples_sit_where_the_geometry_says(encoded, full_decode):
    # At scale 3 the middle output pixel of every 3 x 3 group samples the source pixel centre exactly.
    with loe_codec.open(encoded[0]) as img:
        big = img.decode(scale=3, device="cpu")
        part = img.decode(region=(6, 2, 10, 9), scale=3, device="cpu")
    assert big.shape == (84, 120, 3)
    np.testing.assert_array_equal(big[1::3, 1::3], full_decode)
    np.testing.assert_array_equal(part[1::3, 1::3], full_decode[2:11, 6:16])


@pytest.mark.parametrize("factor", [2, 4])
def test_thumbnail_is_a_box_filter_of_the_full_decode(encoded, full_decode, factor):
    with loe_codec.open(encoded[0]) as img:
        thumb = img.decode(scale=1 / factor, device="cpu").astype(np.float64)
    box = _box_downscale(full_decode, factor)
    assert thumb.shape == box.shape
    point = full_decode[factor // 2::factor, factor // 2::factor].astype(np.float64)[:box.shape[0], :box.shape[1]]
    err_thumb = np.sqrt(((thumb - box) ** 2).mean())
    err_point = np.sqrt(((point - box) ** 2).mean())
    # The thumbnail averages the networks over each footprint; the box filter averages the rounded
    # full-resolution pixels: they differ only by the 8-bit rounding.
    assert np.abs(thumb - box).max() <= 1.0
    assert err_thumb < 0.25 * err_point


def test_supersampling_factors():
    assert DecodeRequest(0, 0, 100, 50, 100, 50).supersample == (1, 1)
    assert DecodeRequest(0, 0, 100, 50, 200, 100).supersample == (1, 1)
    assert DecodeRequest(0, 0, 100, 50, 25, 25).supersample == (4, 2)
    assert DecodeRequest(0, 0, 100, 50, 40, 20).supersample == (3, 3)  # 2.5 -> 3
    assert DecodeRequest(0, 0, 10000, 10000, 10, 10).supersample == (MAX_SUPERSAMPLE, MAX_SUPERSAMPLE)


def test_blocks_cover_the_output_exactly_once(encoded, full_decode):
    with CodecReader(encoded[0]) as reader:
        grid = reader.header.grid
        req = DecodeRequest(0, 0, 40, 28, 40, 28)
        seen = np.zeros((28, 40), np.int32)
        out = np.zeros_like(full_decode)
        calls = []
        for ox, oy, pix in iter_blocks(reader, grid, req, "cpu", block=16, progress=lambda d, t: calls.append((d, t))):
            seen[oy:oy + pix.shape[0], ox:ox + pix.shape[1]] += 1
            out[oy:oy + pix.shape[0], ox:ox + pix.shape[1]] = pix
        assert bool((seen == 1).all())
        assert calls == [(k, 6) for k in range(1, 7)]
        # Small blocks give the same pixels as the default block size.
        np.testing.assert_array_equal(out, full_decode)
        np.testing.assert_array_equal(render(reader, grid, req, "cpu"), full_decode)


def test_tile_cache_is_lru_and_reads_each_tile_once():
    class Source:
        config = None

        def __init__(self):
            self.reads = []

        def read_tile(self, index):
            self.reads.append(index)
            return ([index], [index])

    src = Source()
    cache = TileCache(src, capacity=2)
    for k in (0, 1, 0, 2, 0, 1):
        assert cache.get(k) == ([k], [k])
    # 0,1 read; 0 hit; 2 read (evicts 1); 0 hit; 1 read again.
    assert src.reads == [0, 1, 2, 1]


def test_decode_pixels_are_within_the_8_bit_range_and_deterministic(encoded, full_decode):
    with loe_codec.open(encoded[0]) as img:
        again = img.decode(device="cpu")
    assert full_decode.dtype == np.uint8
    np.testing.assert_array_equal(again, full_decode)


def test_odd_output_sizes(encoded):
    with loe_codec.open(encoded[0]) as img:
        for w, h in [(1, 1), (3, 7), (41, 29), (13, 2)]:
            assert img.decode(width=w, height=h, device="cpu").shape == (h, w, 3)
        assert img.decode(scale=0.01, device="cpu").shape == (1, 1, 3)
        assert img.decode(scale=1 / 3, device="cpu").shape == (round(28 / 3), round(40 / 3), 3)


class CountingSource:
    """A tile source that records which tiles were read."""

    def __init__(self, source):
        self.source, self.config, self.read = source, source.config, []

    def read_tile(self, index):
        self.read.append(index)
        return self.source.read_tile(index)


@pytest.mark.parametrize("region", [(0, 0, 10, 10), (20, 14, 6, 6), (17, 0, 5, 28)])
def test_a_region_reads_only_the_tiles_it_needs(encoded, region):
    x, y, w, h = region
    with CodecReader(encoded[0]) as reader:
        grid = reader.header.grid
        source = CountingSource(reader)
        render(source, grid, DecodeRequest(x, y, w, h, w, h), "cpu")
        needed = {t.index for t in grid.tiles_touching(x, y, x + w, y + h)}
        assert set(source.read) == needed and len(source.read) == len(needed)  # each once
        assert len(needed) < len(grid)
        # A thumbnail needs every tile, once.
        source.read.clear()
        render(source, grid, DecodeRequest(0, 0, 40, 28, 10, 7), "cpu")
        assert sorted(source.read) == list(range(len(grid)))


def test_strips_are_full_width_rows_of_blocks(encoded):
    with CodecReader(encoded[0]) as reader:
        grid = reader.header.grid
        req = DecodeRequest(0, 0, 40, 28, 40, 28)
        strips = list(iter_strips(reader, grid, req, "cpu", block=16))
        assert [(y, s.shape) for y, s in strips] == [(0, (16, 40, 3)), (16, (12, 40, 3))]
        np.testing.assert_array_equal(np.concatenate([s for _, s in strips]), render(reader, grid, req, "cpu"))
