import pytest
import torch

from loe_codec.config import QuantConfig
from loe_codec.errors import UsageError
from loe_codec.quantize import dequantize_weight, quantize_bias, quantize_weight


def _step_errors(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Round-trip error in units of each (bank, output channel)'s stored step."""
    q = quantize_weight(weight, QuantConfig(bits=bits))
    assert q.values.dtype == torch.int8 and q.scale.dtype == torch.float16
    qmax = 2 ** (bits - 1) - 1
    assert int(q.values.abs().max()) <= qmax
    err = (dequantize_weight(q) - weight).abs()
    return err / q.scale.float().unsqueeze(1)


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("magnitude", [0.1, 0.5, 1.0, 20.0])
def test_roundtrip_error_within_half_a_step(bits, magnitude):
    # Per-channel magnitudes spread over a decade, like real layers.
    spread = torch.logspace(-1, 0, 6)
    weight = (torch.rand(3, 17, 6) * 2 - 1) * spread * magnitude
    worst = float(_step_errors(weight, bits).max())
    assert worst <= 0.5 + 1e-3, f"round-trip error {worst:.3f} steps"


@pytest.mark.parametrize("magnitude", [1e-3, 3e-4, 1e-4])
def test_roundtrip_error_within_half_a_step_for_small_channels(magnitude):
    # Channels whose step is below float16's normal range (peak / 127 < 6.1e-5).
    weight = (torch.rand(2, 16, 8) * 2 - 1) * magnitude
    worst = float(_step_errors(weight, 8).max())
    assert worst <= 0.5 + 1e-3, f"round-trip error {worst:.3f} steps (float16 scale below its normal range)"


def test_step_is_the_channel_peak_over_qmax():
    weight = torch.randn(2, 9, 4)
    q = quantize_weight(weight, QuantConfig(bits=8))
    peak = weight.abs().amax(dim=1)
    torch.testing.assert_close(q.scale.float(), peak / 127, rtol=1e-3, atol=0)
    # Each channel's peak maps to +-qmax.
    assert bool((q.values.abs().amax(dim=1) == 127).all())


def test_all_zero_weights_survive():
    zeros = torch.zeros(4, 5, 3)
    q = quantize_weight(zeros, QuantConfig(bits=8))
    back = dequantize_weight(q)
    assert torch.equal(back, zeros)
    assert bool(torch.isfinite(q.scale.float()).all()) and bool((q.scale.float() > 0).all())


def test_zero_channels_next_to_nonzero_channels():
    weight = torch.randn(2, 6, 4)
    weight[:, :, 1] = 0
    weight[1] = 0
    back = dequantize_weight(quantize_weight(weight, QuantConfig(bits=4)))
    assert torch.equal(back[:, :, 1], torch.zeros(2, 6))
    assert torch.equal(back[1], torch.zeros(6, 4))
    assert bool(torch.isfinite(back).all())
    assert float((back[0] - weight[0]).abs().max()) > 0  # the others really were quantized


def test_bias_is_cast_to_the_configured_dtype():
    bias = torch.randn(7)
    b16 = quantize_bias(bias, QuantConfig(bias_dtype="float16"))
    b32 = quantize_bias(bias, QuantConfig(bias_dtype="float32"))
    assert b16.dtype == torch.float16 and b32.dtype == torch.float32
    assert torch.equal(b32, bias)
    torch.testing.assert_close(b16.float(), bias, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("bits", [1, 9])
def test_bits_outside_2_to_8_are_refused(bits):
    with pytest.raises(UsageError):
        QuantConfig(bits=bits)
