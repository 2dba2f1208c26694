"""Inference of one tile network on a grid of samples, batched by bank cell: no sort, no packing.

A decode evaluates a tile at the product of 1-D coordinate axes (x, y and for
video t). The bank of every layer is separable: along each axis, the digit of a
layer's bank only changes where ``floor(alpha * p + beta)`` does. Cutting each
axis into runs where no banked layer changes digit, and the grid into the
products of those runs ("cells"), every cell uses one matrix per layer (nearest
banks) or one set of ``2**d`` neighbour matrices (linear blend), so all cells go
through one batched matmul per layer with per-cell gathered weights. The
positional encoding is computed per axis and broadcast to the grid.

Runs are cut into chunks of ``S`` samples per axis (the last chunk of a run is
padded by repeating its last sample), so cells have equal shapes. (The first
layer is separable, ``PE(p) @ W = sum_k PE_k(p_k) @ W_k``, which would skip the
grid's encoding and first matmul: 20% faster, but its different rounding moved a
pixel of the frozen format-1 golden decode by one level, so the arithmetic here
stays that of the sorted path: encoding, then matmul with ``w0`` folded in.)

Layout: the cell activations are ``[cells, M, width]`` with the cells ordered
``[C_{d-1}, ..., C_0]`` and the ``M`` samples of a cell ``[S_{d-1}, ..., S_0]``
(axis 0, x, fastest), like the row-major image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .banks import place_values
from .encoding import positional_encoding

CHUNK_OVERHEAD = 4  # a chunk costs about this many padded samples (a guess: 0..1000 timed the same on the mosaic)
SAMPLES_PER_PASS = 1 << 14  # samples per pass through the layers (about): keeps the activations in the L2 cache


@dataclass
class AxisChunks:
    """One axis of the grid cut into ``C`` chunks of ``S`` slots inside which no banked layer changes bank.

    ``index`` ``[C, S]``: the axis sample of every slot (padding repeats the chunk's last sample);
    ``valid`` ``[L]``: the slot ``c * S + s`` of every axis sample, in axis order;
    ``first`` ``[C]``: the first axis sample of every chunk.
    """

    index: torch.Tensor
    valid: torch.Tensor
    first: torch.Tensor

    @property
    def count(self) -> int:
        return self.index.shape[0]

    @property
    def size(self) -> int:
        return self.index.shape[1]

    @classmethod
    def of(cls, floors: torch.Tensor) -> "AxisChunks":
        """Chunks of the runs of equal columns of ``floors`` ``[layers, L]`` (cell numbers along the axis)."""
        length = floors.shape[1]
        change = (floors[:, 1:] != floors[:, :-1]).any(0)
        starts = [0] + (torch.nonzero(change).squeeze(1) + 1).tolist()
        lengths = [e - s for s, e in zip(starts, starts[1:] + [length])]
        size = chunk_size(lengths)
        first, count = [], []
        for s, n in zip(starts, lengths):
            for q in range(0, n, size):
                first.append(s + q)
                count.append(min(size, n - q))
        first_t = torch.tensor(first, dtype=torch.long, device=floors.device)
        count_t = torch.tensor(count, dtype=torch.long, device=floors.device)
        slot = torch.arange(size, device=floors.device)
        index = first_t.unsqueeze(1) + torch.minimum(slot, count_t.unsqueeze(1) - 1)
        valid = torch.nonzero((slot < count_t.unsqueeze(1)).reshape(-1)).squeeze(1)
        return cls(index, valid, first_t)


def chunk_size(lengths: list[int]) -> int:
    """Slots per chunk for runs of ``lengths`` samples: the longest run, or a half, third or quarter
    of it when that pads less (counting :data:`CHUNK_OVERHEAD` per chunk)."""
    longest = max(lengths)
    best, best_cost = longest, None
    for parts in range(1, 5):
        size = math.ceil(longest / parts)
        if size < min(longest, 8):
            break
        chunks = sum(math.ceil(n / size) for n in lengths)
        cost = chunks * (size + CHUNK_OVERHEAD)
        if best_cost is None or cost < best_cost:
            best, best_cost = size, cost
    return best


def axis_view(t: torch.Tensor, axis: int, dims: int) -> torch.Tensor:
    """``[C_axis, S_axis, *rest]`` -> a view that broadcasts over ``[C_{d-1}..C_0, S_{d-1}..S_0, *rest]``."""
    shape = [1] * (2 * dims)
    shape[dims - 1 - axis] = t.shape[0]
    shape[2 * dims - 1 - axis] = t.shape[1]
    return t.reshape(shape + list(t.shape[2:]))


def grid_forward(model, tile: int, axes: list[torch.Tensor]) -> torch.Tensor:
    """Tile ``tile`` of ``model`` (a :class:`~loe_codec.model.network.TiledLoE`) on the grid ``axes``;
    see :class:`GridEvaluator`. Returns ``[L_{d-1}, ..., L_0, out_channels]``."""
    if any(a.numel() == 0 for a in axes):
        return axes[0].new_zeros([a.numel() for a in reversed(axes)] + [model.config.out_channels])
    return GridEvaluator(model, tile, axes)()


class GridEvaluator:
    """Evaluates tile ``tile`` of a :class:`~loe_codec.model.network.TiledLoE` on the sample grid ``axes``.

    ``axes[k]`` ``[L_k]`` are float32 tile-local coordinates of dimension ``k``; the result is
    ``[L_{d-1}, ..., L_0, out_channels]`` (x fastest), equal up to float rounding to
    ``model(tile, coords)`` at the row-major grid of those coordinates. The cells go through the
    layers in passes of whole rows of cells (along the last axis) of about
    :data:`SAMPLES_PER_PASS` samples.
    """

    def __init__(self, model, tile: int, axes: list[torch.Tensor]):
        cfg = model.config
        if len(axes) != cfg.dims:
            raise ValueError(f"a {cfg.dims}-D model needs {cfg.dims} axes, got {len(axes)}")
        self.model, self.cfg, self.tile, self.axes = model, cfg, tile, axes
        self.dims = cfg.dims
        self.banked = cfg.banked_layers()
        self.axis_banks = [cfg.axis_banks(layer) for layer in self.banked]  # [layers][d]
        offset = -0.5 if cfg.blend == "linear" else 0.0  # linear: cells between bank centres
        alpha = axes[0].new_tensor([model.scales[layer] for layer in self.banked]).unsqueeze(1)  # [layers, 1]
        # Scaled coordinate of every banked layer at every axis sample, and its floor: [layers, L] per axis
        # (the same float32 arithmetic as bank_index / bank_neighbours: p * alpha + beta (- 0.5)).
        # An axis along which no layer has more than one bank is one cell (its scale is 0).
        self.scaled = [a * (alpha if any(n[k] > 1 for n in self.axis_banks) else 0.0 * alpha) + 0.0 + offset
                       for k, a in enumerate(axes)]
        self.floors = [torch.floor(s).long() for s in self.scaled]
        self.chunks = [AxisChunks.of(f) for f in self.floors]
        self.cell_shape = [c.count for c in reversed(self.chunks)]  # [C_{d-1}, ..., C_0]
        self.slot_shape = [c.size for c in reversed(self.chunks)]  # [S_{d-1}, ..., S_0]
        if cfg.blend == "nearest" and self.banked:
            ids = self._nearest_ids()
            self.banks = {layer: (ids[row], None) for row, layer in enumerate(self.banked)}
        else:
            self.banks = {layer: self._linear_ids(layer) for layer in self.banked}
        self.weights = [model.weight(layer)[tile] for layer in range(cfg.layers)]  # [banks, in, out] each
        self.biases = [b[tile] for b in model.biases]  # [out] each
        if cfg.activation == "sine":  # fold w0 into the first layer, as the packed forward does
            self.weights[0], self.biases[0] = self.weights[0] * cfg.sine_w0, self.biases[0] * cfg.sine_w0
        self.encoding = self._axis_encodings()  # [C_k, S_k, 1 + 2F] each

    def __call__(self) -> torch.Tensor:
        rows = self.cell_shape[0]
        row_samples = math.prod(self.cell_shape[1:]) * math.prod(self.slot_shape)
        step = max(1, SAMPLES_PER_PASS // row_samples)
        out = torch.cat([self._layers(r, min(rows, r + step)) for r in range(0, rows, step)])
        return self._unpad(out)

    def _layers(self, r0: int, r1: int) -> torch.Tensor:
        """All layers on the cells of rows ``r0 .. r1`` of the last axis: ``[cells, M, out_channels]``."""
        start = r0 * math.prod(self.cell_shape[1:])
        h = self._first_layer(r0, r1)
        for layer in range(1, self.cfg.layers):
            h = self._cell_linear(layer, h, start)
        return h

    # -- geometry -----------------------------------------------------------------------------------

    def _view(self, t: torch.Tensor, axis: int, r0: int, r1: int) -> torch.Tensor:
        """Per-axis ``[C_axis, S_axis, *rest]`` -> broadcastable over the cells of rows ``r0 .. r1``
        (only the last axis is cut into rows)."""
        return axis_view(t[r0:r1] if axis == self.dims - 1 else t, axis, self.dims)

    def _nearest_ids(self) -> torch.Tensor:
        """Nearest bank of every banked layer in every cell, combined row-major as in ``bank_index``:
        ``[layers, cells]``."""
        n = self.floors[0].new_tensor(self.axis_banks)  # [layers, d]
        place = self.floors[0].new_tensor([place_values(counts, self.dims) for counts in self.axis_banks])
        total = None
        for k, (f, c) in enumerate(zip(self.floors, self.chunks)):
            digit = torch.remainder(f[:, c.first], n[:, k:k + 1]) * place[:, k:k + 1]  # [layers, C_k]
            shape = [1] * self.dims
            shape[self.dims - 1 - k] = c.count
            digit = digit.reshape([-1] + shape)
            total = digit if total is None else total + digit
        return total.reshape(len(self.banked), -1)

    def _linear_ids(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``K = 2**d`` neighbour banks of ``layer`` per cell ``[cells, K]`` (as ``bank_neighbours``)
        and their blend weights ``[cells, M, K]``."""
        d = self.dims
        row = self.banked.index(layer)
        counts = self.axis_banks[row]
        place = place_values(counts, d)
        corners = [[(k >> (d - 1 - j)) & 1 for j in range(d)] for k in range(2**d)]
        bits = torch.tensor(corners, device=self.axes[0].device)  # [K, d]
        ids, blend = None, None
        for j, (f, s, c) in enumerate(zip(self.floors, self.scaled, self.chunks)):
            digit = torch.remainder(f[row, c.first].unsqueeze(1) + bits[:, j], counts[j]) * place[j]  # [C, K]
            shape = [1] * d
            shape[d - 1 - j] = c.count
            digit = digit.reshape(shape + [2**d])
            ids = digit if ids is None else ids + digit
            frac = (s[row] - torch.floor(s[row]))[c.index].unsqueeze(-1)  # [C, S, 1], as in bank_neighbours
            w = axis_view(torch.where(bits[:, j].bool(), frac, 1.0 - frac), j, d)
            blend = w if blend is None else blend * w
        blend = blend.expand(self.cell_shape + self.slot_shape + [2**d])
        return ids.reshape(-1, 2**d), blend.reshape(math.prod(self.cell_shape), math.prod(self.slot_shape), 2**d)

    # -- layers -------------------------------------------------------------------------------------

    def _first_layer(self, r0: int, r1: int) -> torch.Tensor:
        """Activations of layer 0 on the cells of rows ``r0 .. r1``: ``[cells, M, width]``."""
        shape = [r1 - r0] + self.cell_shape[1:] + self.slot_shape
        cells, m = math.prod(shape[:self.dims]), math.prod(self.slot_shape)
        views = [self._view(p, k, r0, r1).expand(shape + [p.shape[-1]]) for k, p in enumerate(self.encoding)]
        return self._cell_linear(0, self._joint_encoding(views).reshape(cells, m, -1),
                                 r0 * math.prod(self.cell_shape[1:]))

    def _axis_encodings(self) -> list[torch.Tensor]:
        """Positional encoding of every axis at its chunk slots: ``[C_k, S_k, 1 + 2F]`` per axis (the
        centred coordinate, then sin and cos per frequency, as ``positional_encoding``), in one call."""
        slots = [a[c.index] for a, c in zip(self.axes, self.chunks)]  # [C_k, S_k]
        enc = positional_encoding(torch.cat([s.reshape(-1, 1) for s in slots]), self.cfg.pe_frequencies)
        return [e.reshape(s.shape + (-1,)) for e, s in zip(enc.split([s.numel() for s in slots]), slots)]

    def _joint_encoding(self, views: list[torch.Tensor]) -> torch.Tensor:
        """Per-axis encodings broadcast to the grid -> the encoding of every grid sample, columns
        ordered like ``positional_encoding`` of ``[N, d]`` coordinates."""
        f = self.cfg.pe_frequencies
        parts = [v[..., :1] for v in views] + [v[..., 1:1 + f] for v in views] + [v[..., 1 + f:] for v in views]
        return torch.cat(parts, -1)

    def _cell_linear(self, layer: int, h: torch.Tensor, start: int) -> torch.Tensor:
        """Layer ``layer`` (matmul, bias, activation) on the cells ``start ..``:
        ``[cells, M, in]`` -> ``[cells, M, out]``."""
        w, b = self.weights[layer], self.biases[layer]
        cells, m, fan_in = h.shape
        if layer not in self.banks:
            y = torch.addmm(b, h.reshape(-1, fan_in), w[0]).view(cells, m, -1)
        else:
            ids, blend = self.banks[layer]
            ids = ids[start:start + cells]
            if blend is None:
                y = torch.baddbmm(b, h, w[ids])
            else:
                k = ids.shape[1]
                wk = w[ids].permute(0, 2, 1, 3).reshape(cells, fan_in, -1)  # [cells, in, K * out]
                z = torch.bmm(h, wk).view(cells, m, k, -1)
                y = (z * blend[start:start + cells].unsqueeze(-1)).sum(2) + b
        return self._activate(layer, y)

    def _activate(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        if layer == self.cfg.layers - 1:
            return x
        if self.cfg.activation == "sine":  # w0 is folded into the first layer's parameters
            return x.sin_()
        return self.model._activate(layer, x)

    def _unpad(self, out: torch.Tensor) -> torch.Tensor:
        """``[cells, M, C]`` -> ``[L_{d-1}, ..., L_0, C]``: the valid slots of the grid, in axis order."""
        d = self.dims
        grid = out.reshape(self.cell_shape + self.slot_shape + [out.shape[-1]])
        order = [p for k in range(d) for p in (k, d + k)] + [2 * d]  # [C_{d-1}, S_{d-1}, ..., C_0, S_0, C]
        padded = grid.permute(order).reshape([c * s for c, s in zip(self.cell_shape, self.slot_shape)]
                                             + [out.shape[-1]])
        for k, c in enumerate(self.chunks):
            padded = padded.index_select(d - 1 - k, c.valid)
        return padded
