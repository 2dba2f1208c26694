"""Entropy coding of quantized weights: a discrete Laplace model per tensor and a range coder.

Each tensor of integers ``k`` is modelled as a two-sided geometric (discrete
Laplace) distribution ``p(k) ∝ r**|k|`` on ``[-m, m]``, where ``m = max |k|``
and the ratio ``r`` is stored as a 16-bit integer ``ratio_code`` (``r =
ratio_code / 65536``). The maximum-likelihood ``r`` has a closed form (see
:func:`fit_ratio`), so the encoder needs no search.

The probability tables are built from ``ratio_code`` with float64
multiplications only (correctly rounded in IEEE 754 on every machine), and
the range coder of the ``constriction`` package (``queue.RangeEncoder`` with
``Categorical(perfect=False)`` models) turns them into exact integer
fixed-point tables, so decoding is bit-exact everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

try:
    import constriction
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(f"the constriction package is required ({exc}); pip install constriction") from exc

RATIO_ONE = 1 << 16
MAX_MAGNITUDE = (1 << 15) - 1  # largest |k| a tensor may hold


@dataclass(frozen=True)
class LaplaceModel:
    """The coding model of one tensor: symbols in ``[-magnitude, magnitude]``, ratio ``ratio_code / 65536``."""

    ratio_code: int
    magnitude: int

    def probabilities(self) -> np.ndarray:
        """Unnormalised float64 ``[2 * magnitude + 1]`` table, symbol ``k`` at index ``k + magnitude``."""
        r = self.ratio_code / RATIO_ONE
        # r**k as a running product (cumprod multiplies in sequence): identical on every machine,
        # unlike a pow() from the platform's maths library.
        tail = np.concatenate([[1.0], np.cumprod(np.full(self.magnitude, r, dtype=np.float64))])
        return np.concatenate([tail[:0:-1], tail])

    def ideal_bits(self, symbols: np.ndarray) -> float:
        """Bits an ideal coder spends on ``symbols`` under this model (for rate estimates)."""
        p = self.probabilities()
        p = p / p.sum()
        return float(-np.log2(p[symbols.astype(np.int64) + self.magnitude]).sum())


def fit_ratio(symbols: np.ndarray) -> int:
    """Maximum-likelihood ``ratio_code`` of a discrete Laplace for integer ``symbols``.

    For ``p(k) = (1 - r) / (1 + r) * r**|k|`` the likelihood is maximal where
    ``mean |k| = 2 r / (1 - r**2)``, i.e. ``r = (sqrt(1 + m**2) - 1) / m``.
    """
    mean_abs = float(np.abs(symbols).mean()) if symbols.size else 0.0
    r = (np.sqrt(1.0 + mean_abs**2) - 1.0) / mean_abs if mean_abs > 0 else 0.0
    return int(np.clip(round(r * RATIO_ONE), 1, RATIO_ONE - 1))


def model_for(symbols: np.ndarray) -> LaplaceModel:
    """The model an encoder stores for one tensor of integers."""
    magnitude = int(np.abs(symbols).max()) if symbols.size else 0
    if magnitude > MAX_MAGNITUDE:
        raise ValueError(f"quantized value {magnitude} exceeds the coder's range (±{MAX_MAGNITUDE})")
    return LaplaceModel(fit_ratio(symbols), magnitude)


def encode(tensors: list[np.ndarray], models: list[LaplaceModel]) -> np.ndarray:
    """Range-code integer ``tensors`` (any shapes, flattened in C order) under ``models``: ``uint32`` words."""
    coder = constriction.stream.queue.RangeEncoder()
    for values, model in zip(tensors, models):
        flat = values.reshape(-1).astype(np.int32)
        if flat.size == 0 or model.magnitude == 0:
            continue  # all zeros: nothing to code
        table = constriction.stream.model.Categorical(model.probabilities(), perfect=False)
        coder.encode(flat + np.int32(model.magnitude), table)
    return coder.get_compressed()


def decode(words: np.ndarray, shapes: list[tuple[int, ...]], models: list[LaplaceModel]) -> list[np.ndarray]:
    """Inverse of :func:`encode`: int32 tensors of ``shapes``."""
    coder = constriction.stream.queue.RangeDecoder(np.ascontiguousarray(words, dtype=np.uint32))
    out = []
    for shape, model in zip(shapes, models):
        count = int(np.prod(shape))
        if count == 0 or model.magnitude == 0:
            out.append(np.zeros(shape, dtype=np.int32))
            continue
        table = constriction.stream.model.Categorical(model.probabilities(), perfect=False)
        flat = coder.decode(table, count).astype(np.int32) - np.int32(model.magnitude)
        out.append(flat.reshape(shape))
    return out
