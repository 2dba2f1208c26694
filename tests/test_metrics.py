import math

import numpy as np
import pytest

from loe_codec.metrics import ErrorAccumulator, psnr, psnr_from_mse, seam_mask
from loe_codec.tiling import TileGrid


def test_psnr_values():
    assert psnr_from_mse(0) == math.inf
    assert psnr_from_mse(255.0**2) == pytest.approx(0.0)
    assert psnr_from_mse(1.0) == pytest.approx(20 * math.log10(255))
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 10, np.uint8)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))
    assert psnr(a, a) == math.inf
    with pytest.raises(ValueError):
        psnr(a, b[:3])


def test_seam_mask_marks_bands_around_interior_edges():
    grid = TileGrid(32, 16, 16, 2)  # one interior x edge at 16, no interior y edge
    mask = seam_mask(grid, 0, 0, 32, 16, 3)
    expected_cols = [abs(x + 0.5 - 16) < 3 for x in range(32)]
    assert mask.shape == (16, 32)
    assert mask[0].tolist() == expected_cols and bool((mask == mask[0]).all())
    # An offset block sees the same band.
    assert seam_mask(grid, 10, 4, 10, 3, 3)[0].tolist() == expected_cols[10:20]


def test_error_accumulator_blockwise_equals_whole():
    rng = np.random.default_rng(0)
    grid = TileGrid(30, 20, 10, 2)
    dec = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    ref = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    whole = ErrorAccumulator(grid)
    whole.add(0, 0, dec, ref)
    blocks = ErrorAccumulator(grid)
    for y in range(0, 20, 7):
        for x in range(0, 30, 8):
            blocks.add(x, y, dec[y:y + 7, x:x + 8], ref[y:y + 7, x:x + 8])
    assert whole.psnr() == pytest.approx(psnr(dec, ref))
    assert blocks.psnr() == pytest.approx(whole.psnr())
    assert blocks.psnr_seams() == pytest.approx(whole.psnr_seams())
    assert blocks.psnr_interior() == pytest.approx(whole.psnr_interior())
    band = seam_mask(grid, 0, 0, 30, 20, whole.half_width)
    err = ((dec.astype(float) - ref) ** 2)
    assert whole.psnr_seams() == pytest.approx(psnr_from_mse(err[band].mean()))
    assert whole.psnr_interior() == pytest.approx(psnr_from_mse(err[~band].mean()))


def test_single_tile_has_no_seams():
    grid = TileGrid(8, 8, 16, 2)
    acc = ErrorAccumulator(grid)
    acc.add(0, 0, np.zeros((8, 8, 1), np.uint8), np.ones((8, 8, 1), np.uint8))
    assert acc.psnr_seams() is None and acc.psnr_interior() == pytest.approx(acc.psnr())
