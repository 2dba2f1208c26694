"""The discrete-Laplace range coder of format 2 (loe_codec.entropy)."""

import math
import zlib

import numpy as np
import pytest

from loe_codec import entropy
from loe_codec.entropy import MAX_MAGNITUDE, RATIO_ONE, LaplaceModel, fit_ratio, model_for


def _discrete_laplace(rng: np.random.Generator, r: float, size) -> np.ndarray:
    """Exact samples of p(k) ∝ r**|k|: the difference of two i.i.d. geometric variables."""
    return (rng.geometric(1 - r, size) - rng.geometric(1 - r, size)).astype(np.int32)


def _round_trip(tensors: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    models = [model_for(t) for t in tensors]
    words = entropy.encode(tensors, models)
    assert words.dtype == np.uint32 and words.ndim == 1
    back = entropy.decode(words.copy(), [t.shape for t in tensors], models)
    return words, back


@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (3, 4, 5), (2, 0, 3), (1, 16, 16)])
@pytest.mark.parametrize("kind", ["zeros", "narrow", "wide", "outlier", "one_sided"])
def test_round_trip_is_exact(shape, kind):
    rng = np.random.default_rng(zlib.crc32(repr((shape, kind)).encode()))
    if kind == "zeros":
        values = np.zeros(shape, dtype=np.int32)
    elif kind == "narrow":
        values = _discrete_laplace(rng, 0.3, shape)
    elif kind == "wide":
        values = np.round(rng.laplace(scale=40.0, size=shape)).astype(np.int32)
    elif kind == "outlier":  # almost all zeros and one value at the edge of the coder's range
        values = np.zeros(shape, dtype=np.int32)
        if values.size:
            values.reshape(-1)[values.size // 2] = -MAX_MAGNITUDE
    else:
        values = np.abs(_discrete_laplace(rng, 0.7, shape))
    words, (back,) = _round_trip([values])
    assert back.dtype == np.int32 and back.shape == values.shape
    assert np.array_equal(back, values)
    if not values.any():
        assert words.size == 0  # nothing to code for an all-zero (or empty) tensor


def test_several_tensors_share_one_stream():
    rng = np.random.default_rng(0)
    tensors = [_discrete_laplace(rng, 0.5, (4, 6, 6)), np.zeros((2, 3), np.int32), np.zeros((0, 5), np.int32),
               _discrete_laplace(rng, 0.95, (1, 6, 3)), np.array([MAX_MAGNITUDE, -MAX_MAGNITUDE, 0], np.int32),
               _discrete_laplace(rng, 0.1, (9,))]
    words, back = _round_trip(tensors)
    assert all(np.array_equal(a, b) for a, b in zip(tensors, back))
    # Decoding under the wrong shapes' order gives something else (the check above is not vacuous).
    models = [model_for(t) for t in tensors]
    swapped = entropy.decode(words, [t.shape for t in tensors][::-1], models[::-1])
    assert not all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(tensors, swapped[::-1]))


def test_stream_is_deterministic():
    rng = np.random.default_rng(5)
    tensors = [_discrete_laplace(rng, 0.8, (3, 8, 8)), _discrete_laplace(rng, 0.2, (50,))]
    models = [model_for(t) for t in tensors]
    a = entropy.encode(tensors, models)
    b = entropy.encode([t.copy() for t in tensors], [LaplaceModel(m.ratio_code, m.magnitude) for m in models])
    assert np.array_equal(a, b)


def _log_likelihood(symbols: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Log-likelihood of ``symbols`` under p(k) = (1 - r) / (1 + r) r**|k| for every ratio in ``r``."""
    n, total = symbols.size, float(np.abs(symbols).sum())
    return n * np.log((1 - r) / (1 + r)) + total * np.log(r)


@pytest.mark.parametrize("true_r", [0.05, 0.3, 0.6, 0.9, 0.99])
def test_fit_ratio_is_the_maximum_likelihood_ratio(true_r):
    symbols = _discrete_laplace(np.random.default_rng(int(true_r * 100)), true_r, 5000)
    code = fit_ratio(symbols)
    grid = np.arange(1, RATIO_ONE) / RATIO_ONE  # every storable ratio
    best = int(np.argmax(_log_likelihood(symbols, grid))) + 1
    assert abs(code - best) <= 1, (code, best)
    assert abs(code / RATIO_ONE - true_r) < 0.05  # and it estimates the true ratio


def test_fit_ratio_edge_cases():
    assert fit_ratio(np.zeros(10, np.int32)) == 1  # all zeros: the smallest storable ratio
    assert fit_ratio(np.zeros(0, np.int32)) == 1
    huge = np.full(100, MAX_MAGNITUDE, np.int32)
    assert 1 <= fit_ratio(huge) <= RATIO_ONE - 1
    assert fit_ratio(-huge) == fit_ratio(huge)  # only magnitudes matter


@pytest.mark.parametrize("r", [0.2, 0.6, 0.9, 0.98])
def test_coded_size_is_close_to_the_empirical_entropy(r):
    symbols = _discrete_laplace(np.random.default_rng(7), r, 20000)
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / symbols.size
    entropy_bits = float(-(counts * np.log2(p)).sum())
    model = model_for(symbols)
    words = entropy.encode([symbols], [model])
    coded_bits = 32 * words.size
    assert entropy_bits <= coded_bits <= 1.03 * entropy_bits + 64, (coded_bits, entropy_bits)
    # The coder is within a word or two of the ideal cost under its own model.
    ideal = model.ideal_bits(symbols)
    assert ideal <= coded_bits + 1 and coded_bits <= 1.005 * ideal + 64, (coded_bits, ideal)


def test_probabilities_are_deterministic_and_symmetric():
    model = LaplaceModel(ratio_code=50000, magnitude=300)
    p = model.probabilities()
    assert p.dtype == np.float64 and p.shape == (601,)
    assert np.array_equal(p, model.probabilities())
    assert np.array_equal(p, p[::-1])
    assert p[300] == 1.0 and p.argmax() == 300
    assert (np.diff(p[300:]) < 0).all() and (p > 0).all()
    # Sequential products of the ratio, bit for bit (what the decoder on any machine computes) ...
    r, tail = 50000 / RATIO_ONE, [1.0]
    for _ in range(300):
        tail.append(tail[-1] * r)
    assert p[300:].tolist() == tail
    # ... which are r**k up to rounding.
    np.testing.assert_allclose(p[300:], r ** np.arange(301), rtol=1e-12)
    assert LaplaceModel(1234, 0).probabilities().tolist() == [1.0]


def test_ideal_bits_matches_the_normalised_model():
    model = LaplaceModel(ratio_code=RATIO_ONE // 2, magnitude=2)
    p = np.array([0.25, 0.5, 1, 0.5, 0.25]) / 2.5
    symbols = np.array([0, 0, 1, -2], np.int32)
    expected = -(2 * math.log2(p[2]) + math.log2(p[3]) + math.log2(p[0]))
    assert model.ideal_bits(symbols) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("value", [MAX_MAGNITUDE + 1, -(MAX_MAGNITUDE + 1), 10**6])
def test_magnitude_over_the_coder_range_is_refused(value):
    symbols = np.zeros(10, np.int32)
    symbols[3] = value
    with pytest.raises(ValueError, match="range"):
        model_for(symbols)
    assert model_for(np.array([MAX_MAGNITUDE, -3], np.int32)).magnitude == MAX_MAGNITUDE


@pytest.mark.parametrize("size,outlier,underflows", [(4000, 30, False), (10000, 200, True),
                                                     (100000, MAX_MAGNITUDE, True)])
def test_rare_outliers_under_a_small_ratio_round_trip(size, outlier, underflows):
    # Almost all zeros: the fitted ratio is small and the float64 table can underflow to 0 long before the
    # outlier; the coder must still give every symbol up to the magnitude a non-zero probability.
    values = np.zeros(size, np.int32)
    values[size // 3] = outlier
    values[size // 2] = -1
    model = model_for(values)
    assert model.magnitude == outlier and bool((model.probabilities() == 0).any()) == underflows
    _, (back,) = _round_trip([values])
    assert np.array_equal(back, values)
