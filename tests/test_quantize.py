import pytest
import torch

from loe_codec.config import QuantConfig
from loe_codec.errors import UsageError
from loe_codec.quantize import (MAX_STEP, MIN_STEP, dequantize_weight, fake_quantize, quantize_bias, quantize_to_step,
                               quantize_weight, storable_steps)


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


# --- format 2: one uniform step per (tile, layer) ------------------------------------------------------------

def test_storable_steps_are_float16_exact():
    steps = torch.cat([torch.logspace(-4.1, 4.7, 200), torch.tensor([1 / 3, 0.1, 2.0**-14, 65504.0])])
    stored = storable_steps(steps)
    assert stored.dtype == torch.float32 and stored.shape == steps.shape
    assert torch.equal(stored.half().float(), stored)  # survives the float16 of the file bit for bit
    torch.testing.assert_close(stored, steps, rtol=2**-11, atol=0)  # the nearest float16
    assert torch.equal(storable_steps(stored), stored)  # idempotent


def test_storable_steps_stay_in_float16_normal_range():
    extreme = torch.tensor([0.0, 1e-12, 1e-6, 1e6, float("inf")])
    stored = storable_steps(extreme)
    assert (stored >= MIN_STEP).all() and (stored <= MAX_STEP).all() and torch.isfinite(stored).all()
    assert MIN_STEP == 2.0**-14 and MAX_STEP == 65504.0
    assert stored[0] == MIN_STEP and stored[-1] == MAX_STEP


def test_quantize_to_step_rounds_to_the_nearest_multiple():
    weight = torch.randn(3, 5, 4) * 2
    step = torch.tensor(0.125)
    q = quantize_to_step(weight, step)
    assert q.dtype == torch.int32 and q.shape == weight.shape
    assert ((q.float() * step - weight).abs() <= step / 2 + 1e-6).all()
    per_tile = torch.tensor([0.5, 0.25, 2.0]).view(3, 1, 1)  # broadcasts like the encoder's steps
    q = quantize_to_step(weight, per_tile)
    assert torch.equal(q, torch.round(weight / per_tile).to(torch.int32))


def test_fake_quantize_forward_is_rounding_and_backward_is_identity():
    weight = (torch.randn(2, 3, 7, 5) * 0.3).requires_grad_()
    step = storable_steps(torch.tensor([0.05, 0.2])).view(2, 1, 1, 1)
    out = fake_quantize(weight, step)
    # Forward: exactly the dequantized integers the file stores.
    assert torch.equal(out.detach(), quantize_to_step(weight, step).float() * step)
    assert not torch.equal(out.detach(), weight.detach())
    # Backward: straight through, the upstream gradient unchanged.
    upstream = torch.randn_like(weight)
    out.backward(upstream)
    assert torch.equal(weight.grad, upstream)
