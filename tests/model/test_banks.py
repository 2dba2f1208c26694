import itertools
import math

import pytest
import torch

from loe_codec.model import bank_index, bank_neighbours
from loe_codec.model.banks import bank_indices


def _away_from_cell_edges(coords: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """Drop coordinates whose scaled value is within float noise of a cell boundary."""
    u = coords.double() * alpha + beta
    keep = ((u - torch.round(u)).abs() > 1e-4).all(1)
    return coords[keep]


def _reference_index(coords: torch.Tensor, n: int, alpha: float, beta: float) -> list[int]:
    """floor(alpha * p + beta) mod n per dimension, combined row-major (first dimension slowest)."""
    ids = []
    for row in coords.double().tolist():
        per_dim = [math.floor(alpha * p + beta) % n for p in row]
        bid = 0
        for i in per_dim:
            bid = bid * n + i
        ids.append(bid)
    return ids


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("n,alpha,beta", [(2, 2.0, 0.0), (3, 4.0, 0.0), (2, 8.0, 0.37), (4, 2.5, -0.6), (3, 1.0, 0.0)])
def test_bank_index_matches_formula(dims, n, alpha, beta):
    coords = _away_from_cell_edges(torch.rand(400, dims), alpha, beta)
    got = bank_index(coords, n, alpha, beta)
    assert got.dtype == torch.long and got.shape == (coords.shape[0],)
    assert got.tolist() == _reference_index(coords, n, alpha, beta)
    assert int(got.min()) >= 0 and int(got.max()) < n**dims


def test_bank_index_row_major_order():
    # The first dimension is the most significant digit.
    n, alpha = 3, 3.0
    cells = torch.tensor(list(itertools.product(range(3), repeat=3)), dtype=torch.float32)
    centres = (cells + 0.5) / alpha
    assert bank_index(centres, n, alpha).tolist() == list(range(27))
    cells2 = torch.tensor(list(itertools.product(range(3), repeat=2)), dtype=torch.float32)
    assert bank_index((cells2 + 0.5) / alpha, n, alpha).tolist() == list(range(9))
    # x = 0 column, y varies -> ids 0, 1, 2 ; y = 0 row, x varies -> ids 0, 3, 6
    pts = torch.tensor([[0.1, 0.1], [0.1, 0.5], [0.1, 0.9], [0.5, 0.1], [0.9, 0.1]])
    assert bank_index(pts, n, alpha).tolist() == [0, 1, 2, 3, 6]


def test_bank_index_is_periodic():
    coords = _away_from_cell_edges(torch.rand(100, 2) * 0.4, 5.0, 0.0)
    n, alpha = 2, 5.0
    # Shifting by n cells (n / alpha in coordinates) lands in the same bank.
    torch.testing.assert_close(bank_index(coords, n, alpha), bank_index(coords + n / alpha, n, alpha))


def test_single_bank_is_always_zero():
    assert bank_index(torch.rand(20, 2), 1, 7.0, 0.3).tolist() == [0] * 20
    ids, w = bank_neighbours(torch.rand(20, 3), 1, 7.0)
    assert ids.shape == (20, 8) and int(ids.abs().sum()) == 0
    torch.testing.assert_close(w.sum(1), torch.ones(20))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("n,alpha,beta", [(2, 2.0, 0.0), (3, 4.0, 0.25), (4, 8.0, 0.0)])
def test_bank_neighbours_weights_and_ids(dims, n, alpha, beta):
    coords = torch.rand(300, dims, dtype=torch.float64)
    ids, w = bank_neighbours(coords, n, alpha, beta)
    k = 2**dims
    assert ids.shape == (300, k) and w.shape == (300, k)
    torch.testing.assert_close(w.sum(1), torch.ones(300, dtype=w.dtype))
    assert bool((w >= 0).all()) and bool((w <= 1).all())
    # Independent reference: cell centres at (c + 0.5 - beta) / alpha, multilinear weights.
    u = coords * alpha + beta - 0.5
    lo = torch.floor(u)
    frac = u - lo
    for corner_id, corner in enumerate(itertools.product((0, 1), repeat=dims)):
        c = torch.tensor(corner)
        cell = (lo.long() + c) % n
        expect_id = sum(cell[:, j] * n ** (dims - 1 - j) for j in range(dims))
        expect_w = torch.where(c.bool(), frac, 1 - frac).prod(1)
        assert ids[:, corner_id].tolist() == expect_id.tolist()
        torch.testing.assert_close(w[:, corner_id], expect_w)


def test_bank_neighbours_at_cell_centre_pick_that_cell_alone():
    n, alpha = 3, 6.0
    cells = torch.tensor([[0, 0], [1, 2], [5, 4], [2, 5]], dtype=torch.float64)
    centres = (cells + 0.5) / alpha
    ids, w = bank_neighbours(centres, n, alpha)
    best = w.argmax(1)
    torch.testing.assert_close(w.max(1).values, torch.ones(4, dtype=w.dtype))
    picked = ids[torch.arange(4), best]
    assert picked.tolist() == bank_index(centres, n, alpha).tolist()


@pytest.mark.parametrize("dims", [2, 3])
def test_bank_indices_equal_bank_index_per_layer(dims):
    coords = torch.rand(500, dims) * 1.2 - 0.1
    banks, alphas = [2, 3, 2], [2.0, 6.0, 8.0]
    got = bank_indices(coords, banks, alphas)
    for column, (n, alpha) in enumerate(zip(banks, alphas)):
        assert torch.equal(got[:, column], bank_index(coords, n, alpha))


def test_per_dimension_counts_combine_mixed_radix():
    # Counts (3, 2, 4): the id is ix * 8 + iy * 4 + it, every id in [0, 24) reachable.
    coords = _away_from_cell_edges(torch.rand(3000, 3), 4.0, 0.0)
    got = bank_index(coords, (3, 2, 4), 4.0)
    cell = torch.floor(coords.double() * 4.0).long()
    expect = (cell[:, 0] % 3) * 8 + (cell[:, 1] % 2) * 4 + cell[:, 2] % 4
    assert got.tolist() == expect.tolist()
    assert sorted(set(got.tolist())) == list(range(24))
    # One count per dimension equal to n is the same as n.
    assert torch.equal(bank_index(coords, (2, 2, 2), 4.0), bank_index(coords, 2, 4.0))


def test_a_dimension_of_one_bank_ignores_that_coordinate():
    coords = torch.rand(300, 3)
    moved = coords.clone()
    moved[:, 2] = torch.rand(300)
    assert torch.equal(bank_index(coords, (2, 2, 1), 8.0), bank_index(moved, (2, 2, 1), 8.0))
    ids, _ = bank_neighbours(coords, (2, 2, 1), 8.0)
    moved_ids, _ = bank_neighbours(moved, (2, 2, 1), 8.0)
    assert torch.equal(ids, moved_ids) and int(ids.max()) < 4


def test_bank_indices_with_per_dimension_counts_equal_bank_index():
    coords = torch.rand(500, 3) * 1.2 - 0.1
    banks, alphas = [(2, 2, 1), 3, (2, 2, 2), (1, 1, 3)], [2.0, 4.0, 8.0, 8.0]
    got = bank_indices(coords, banks, alphas)
    for column, (n, alpha) in enumerate(zip(banks, alphas)):
        assert torch.equal(got[:, column], bank_index(coords, n, alpha))
