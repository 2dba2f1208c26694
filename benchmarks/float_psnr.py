"""PSNR of fitted float tile networks over their fit windows (no quantization), for fitting experiments."""

from __future__ import annotations

import numpy as np
import torch


def window_psnr(model, targets) -> float:
    """PSNR (8-bit, peak 255, all channels) of ``model``'s tile ``k`` over ``targets[k]``'s window pixels."""
    se, n = 0.0, 0
    with torch.no_grad():
        for k, t in enumerate(targets):
            h, w, c = t.pixels.shape
            yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            x = (xx.reshape(-1) + t.window_x + 0.5 - t.domain_x) / t.extent_x
            y = (yy.reshape(-1) + t.window_y + 0.5 - t.domain_y) / t.extent_y
            out = model(torch.full((h * w,), k), torch.stack([x, y], 1))
            pred = ((out + 0.5).clamp(0, 1) * 255).round()
            se += ((pred - t.pixels.reshape(-1, c).float()) ** 2).sum().item()
            n += h * w * c
    return float(10 * np.log10(255**2 / (se / n)))
