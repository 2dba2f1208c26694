import math

import torch

from loe_codec.config import ModelConfig
from loe_codec.model import positional_encoding


def test_positional_encoding_matches_formula():
    coords = torch.rand(50, 2, dtype=torch.float64)
    freqs = 3
    out = positional_encoding(coords, freqs)
    assert out.shape == (50, 2 * (1 + 2 * freqs)) == (50, ModelConfig(pe_frequencies=freqs).in_features)
    c = 2 * coords - 1
    expected = [c]
    expected += [torch.sin(2**k * math.pi * c[:, [d]]) for d in range(2) for k in range(freqs)]
    expected += [torch.cos(2**k * math.pi * c[:, [d]]) for d in range(2) for k in range(freqs)]
    torch.testing.assert_close(out, torch.cat(expected, 1))


def test_positional_encoding_without_frequencies_is_the_centred_coordinate():
    coords = torch.rand(7, 3)
    torch.testing.assert_close(positional_encoding(coords, 0), coords * 2 - 1)
