"""Integer quantization of bank weights with per-(bank, output channel) scales.

Decode uses the dequantized weights only, so what the encoder measures after
:func:`dequantize` is exactly what a decoder reproduces.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import QuantConfig


@dataclass
class QuantizedTensor:
    """``values`` int8 ``[banks, in, out]`` times ``scale`` float16 ``[banks, out]``."""

    values: torch.Tensor
    scale: torch.Tensor


def quantize_weight(weight: torch.Tensor, cfg: QuantConfig) -> QuantizedTensor:
    """Symmetric uniform quantization of ``weight`` ``[banks, in, out]`` to ``cfg.bits`` bits."""
    qmax = 2 ** (cfg.bits - 1) - 1
    peak = weight.detach().abs().amax(dim=1)  # [banks, out]
    # Clamp to float16's normal range: subnormal scales lose precision and would clip values.
    scale = (peak / qmax).clamp_min(torch.finfo(torch.float16).tiny).to(torch.float16)
    values = torch.round(weight.detach() / scale.float().unsqueeze(1)).clamp(-qmax, qmax)
    return QuantizedTensor(values.to(torch.int8), scale)


def dequantize_weight(q: QuantizedTensor) -> torch.Tensor:
    """Float32 ``[banks, in, out]`` weights a decoder uses."""
    return q.values.float() * q.scale.float().unsqueeze(1)


def quantize_bias(bias: torch.Tensor, cfg: QuantConfig) -> torch.Tensor:
    """Biases are few; they are stored as floats of ``cfg.bias_dtype``."""
    return bias.detach().to(getattr(torch, cfg.bias_dtype))


# --- formats 2 and 3: one uniform step per (tile, layer), integers entropy-coded ---------------------------

MIN_STEP = float(torch.finfo(torch.float16).tiny)   # steps are stored as float16 (normal range)
MAX_STEP = float(torch.finfo(torch.float16).max)


def storable_steps(steps: torch.Tensor) -> torch.Tensor:
    """``steps`` rounded to the float16 values a file stores (so the encoder uses exactly those)."""
    return steps.clamp(MIN_STEP, MAX_STEP).to(torch.float16).float()


def quantize_to_step(weight: torch.Tensor, step: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
    """Integers ``round((weight - offset) / step)`` (int32, same shape); ``step`` and ``offset``
    broadcast against ``weight`` (no offset: 0)."""
    return step_integers(weight.detach(), step, offset).to(torch.int32)


def step_integers(weight: torch.Tensor, step: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
    """``round((weight - offset) / step)`` as floats (no offset: 0)."""
    return torch.round((weight if offset is None else weight - offset) / step)


def dequantize_steps(ints: torch.Tensor, step: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
    """The weights a decoder rebuilds from integers: ``offset + ints * step`` (float32)."""
    values = ints.float() * step
    return values if offset is None else offset + values


def fake_quantize(weight: torch.Tensor, step: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
    """``offset + round((weight - offset) / step) * step`` forward, identity backward (straight-through)."""
    rounded = dequantize_steps(step_integers(weight, step, offset), step, offset)
    return weight + (rounded - weight).detach()
