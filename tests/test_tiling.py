import pytest
import torch

from loe_codec.config import TileConfig
from loe_codec.errors import UsageError
from loe_codec.tiling import TileGrid

# (width, height, size, margin): one tile, a row, a column, square and ragged grids, margin 0 and > 0.
GRIDS = [
    (12, 10, 16, 0), (12, 10, 16, 3),
    (64, 48, 16, 0), (64, 48, 16, 3), (64, 48, 16, 1),
    (50, 37, 16, 4), (50, 37, 16, 0),
    (100, 9, 32, 6), (9, 100, 32, 6),
    (41, 23, 8, 2), (41, 23, 8, 0),
    (257, 130, 64, 4),
]
# Cores narrower than twice the margin (allowed by TileConfig: 2 * margin < size, but a core can be
# as small as ~size / 2): a tile's two ramps overlap.
NARROW_CORE_GRIDS = [(33, 20, 16, 7), (17, 9, 8, 3), (35, 35, 16, 7), (50, 12, 16, 7)]


def _positions(width: int, height: int, per_pixel: int = 1):
    """Pixel centres (per_pixel=1) or a finer lattice of sub-pixel positions covering the image."""
    xs = (torch.arange(width * per_pixel, dtype=torch.float64) + 0.5) / per_pixel
    ys = (torch.arange(height * per_pixel, dtype=torch.float64) + 0.5) / per_pixel
    return torch.meshgrid(ys, xs, indexing="ij")


def _weight_sum(grid: TileGrid, per_pixel: int) -> torch.Tensor:
    ys, xs = _positions(grid.width, grid.height, per_pixel)
    total = torch.zeros_like(xs)
    for t in grid.tiles():
        w = grid.blend_weight(t, xs, ys)
        assert bool((w >= 0).all()) and bool((w <= 1).all())
        total += w
    return total


@pytest.mark.parametrize("width,height,size,margin", GRIDS)
@pytest.mark.parametrize("per_pixel", [1, 3])
def test_blend_weights_sum_to_one(width, height, size, margin, per_pixel):
    grid = TileGrid(width, height, size, margin)
    torch.testing.assert_close(_weight_sum(grid, per_pixel), torch.ones(height * per_pixel, width * per_pixel,
                                                                       dtype=torch.float64))


@pytest.mark.parametrize("width,height,size,margin", NARROW_CORE_GRIDS)
def test_blend_weights_sum_to_one_when_cores_are_narrower_than_two_margins(width, height, size, margin):
    TileConfig(size=size, margin=margin)  # a valid config
    grid = TileGrid(width, height, size, margin)
    interior_cores = [b - a for a, b in zip(grid.x_edges[1:-1], grid.x_edges[2:-1])]
    assert interior_cores and min(interior_cores) < 2 * margin
    torch.testing.assert_close(_weight_sum(grid, 1), torch.ones(height, width, dtype=torch.float64))


@pytest.mark.parametrize("width,height,size,margin", GRIDS)
def test_cores_partition_the_image(width, height, size, margin):
    grid = TileGrid(width, height, size, margin)
    cover = torch.zeros(height, width, dtype=torch.int32)
    for t in grid.tiles():
        assert 0 < t.x1 - t.x0 <= size and 0 < t.y1 - t.y0 <= size
        cover[t.y0:t.y1, t.x0:t.x1] += 1
    assert bool((cover == 1).all())
    assert len(grid) == grid.cols * grid.rows
    assert [grid.tile(k).index for k in range(len(grid))] == list(range(len(grid)))


@pytest.mark.parametrize("width,height,size,margin", GRIDS)
def test_windows_are_the_domain_clipped_to_the_image(width, height, size, margin):
    grid = TileGrid(width, height, size, margin)
    for t in grid.tiles():
        x, y, w, h = grid.window(t)
        dx, dy, ex, ey = grid.domain(t)
        # inside the image
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height and w > 0 and h > 0
        # exactly the intersection of the domain with the image
        assert x == max(0, dx) and y == max(0, dy)
        assert x + w == min(width, dx + ex) and y + h == min(height, dy + ey)
        # the domain is the core grown by the margin on every side
        assert (dx, dy, ex, ey) == (t.x0 - margin, t.y0 - margin, t.x1 - t.x0 + 2 * margin,
                                    t.y1 - t.y0 + 2 * margin)
        # the core is inside the window; interior tiles see their full margin
        assert x <= t.x0 and t.x1 <= x + w and y <= t.y0 and t.y1 <= y + h
        if 0 < t.col < grid.cols - 1:
            assert w == ex
        if 0 < t.row < grid.rows - 1:
            assert h == ey


@pytest.mark.parametrize("width,height,size,margin", GRIDS)
def test_blend_support_lies_inside_the_fit_window(width, height, size, margin):
    grid = TileGrid(width, height, size, margin)
    ys, xs = _positions(width, height, 2)
    for t in grid.tiles():
        x, y, w, h = grid.window(t)
        inside = (xs >= x) & (xs <= x + w) & (ys >= y) & (ys <= y + h)
        weight = grid.blend_weight(t, xs, ys)
        assert float(weight[~inside].abs().sum()) == 0.0


@pytest.mark.parametrize("width,height,size,margin", GRIDS)
def test_tiles_touching_finds_every_tile_with_weight(width, height, size, margin):
    grid = TileGrid(width, height, size, margin)
    for (x0, y0, x1, y1) in [(0, 0, width, height), (width / 3, height / 4, width / 2, height / 2 + 1),
                             (width - 1.5, height - 1.5, width, height)]:
        touching = {t.index for t in grid.tiles_touching(x0, y0, x1, y1)}
        xs = torch.linspace(x0, x1 - 1e-6, 40, dtype=torch.float64)
        ys = torch.linspace(y0, y1 - 1e-6, 40, dtype=torch.float64)
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        for t in grid.tiles():
            if float(grid.blend_weight(t, xx, yy).max()) > 0:
                assert t.index in touching


def test_tile_config_validation():
    with pytest.raises(UsageError):
        TileConfig(size=4, margin=0)
    with pytest.raises(UsageError):
        TileConfig(size=16, margin=8)
    with pytest.raises(UsageError):
        TileConfig(size=16, margin=-1)
    TileConfig(size=16, margin=7)
