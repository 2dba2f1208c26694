"""How many bits a finer entropy model could save on a `.loe` file's weights (image or video, ``laplace``).

The file codes every layer's integers under one discrete Laplace model (``loe_codec.entropy``). For
every tile or block this reads the integers back and prints, in bits per weight over the whole file:

* ``coded``: the range coder's words as stored;
* ``laplace``: the ideal code length under per-layer Laplace models fitted as the encoder fits the
  stored ones (what ``coded`` approaches);
* ``empirical``: each layer's zeroth-order empirical entropy (the best any one i.i.d. model per layer
  can do, with its model for free);
* ``per_bank`` / ``per_row`` / ``per_column``: a Laplace model per bank / input row / output column of
  every layer, each charged :data:`MODEL_BITS` for its parameters;
* ``zero_spike``: per layer, the probability of a zero, then a sign and a geometric ``|k| - 1`` for
  the others (charged :data:`MODEL_BITS` + 16);
* ``bank_delta``: per layer, one Laplace model of every weight minus the rounded mean of the same weight
  in the layer's other banks (what predicting a bank from its neighbours would leave to code).

::

    python benchmarks/entropy_headroom.py clip.loe --out headroom.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loe_codec import entropy  # noqa: E402
from loe_codec.container import CodecReader  # noqa: E402
from loe_codec.tileblob import read_laplace  # noqa: E402
from loe_codec.video_container import VideoReader, probe_kind  # noqa: E402

MODEL_BITS = 32  # a ratio code and a largest magnitude, 16 bits each, as the file stores per layer


def laplace_bits(ints: np.ndarray) -> float:
    """Ideal bits of ``ints`` under their own maximum-likelihood discrete Laplace model (as the encoder fits it)."""
    flat = np.asarray(ints).ravel()
    if flat.size == 0 or not flat.any():
        return 0.0
    model = entropy.model_for(flat)
    p = model.probabilities()
    return float(-np.log2(p[flat + model.magnitude] / p.sum()).sum())


def empirical_bits(ints: np.ndarray) -> float:
    """``ints.size`` times their zeroth-order empirical entropy."""
    _, counts = np.unique(np.asarray(ints).ravel(), return_counts=True)
    return float(-(counts * np.log2(counts / counts.sum())).sum())


def zero_spike_bits(ints: np.ndarray) -> float:
    """Ideal bits of ``ints`` under a zero probability and a signed geometric ``|k| - 1`` for the rest."""
    flat = np.asarray(ints).ravel()
    zeros = int((flat == 0).sum())
    bits = 0.0
    if 0 < zeros < flat.size:
        p = zeros / flat.size
        bits -= zeros * np.log2(p) + (flat.size - zeros) * np.log2(1 - p)
    excess = np.abs(flat[flat != 0]) - 1
    if excess.size:
        bits += excess.size  # the signs
        mean = float(excess.mean())
        if mean > 0:  # maximum-likelihood geometric p(j) = (1 - r) r**j, r = mean / (1 + mean)
            r = mean / (1 + mean)
            bits -= excess.size * np.log2(1 - r) + float(excess.sum()) * np.log2(r)
    return float(bits)


def bank_delta_bits(ints: np.ndarray) -> float:
    """Bits of ``ints`` ``[banks, in, out]`` coded as their difference from the rounded mean of the other
    banks at the same place (one Laplace model); a one-bank layer is coded as it is."""
    ints = np.asarray(ints, dtype=np.int64)  # the stored int8 / int16 would overflow in the difference
    banks = ints.shape[0]
    if banks < 2:
        return laplace_bits(ints)
    others = (ints.sum(axis=0, keepdims=True) - ints) / (banks - 1)
    return laplace_bits(ints - np.round(others).astype(np.int64))


def split_bits(ints: np.ndarray, axis: int) -> float:
    """Bits with one Laplace model per slice of ``ints`` along ``axis`` (each charged :data:`MODEL_BITS`)."""
    return sum(laplace_bits(np.take(ints, k, axis=axis)) + MODEL_BITS for k in range(ints.shape[axis]))


def headroom(path: str | Path) -> dict:
    """Bits of the file's weights under each model (see the module docstring), and per layer."""
    reader = VideoReader(path) if probe_kind(path) == "video" else CodecReader(path)
    config = reader.config
    if config.quant.scheme != "laplace":
        raise SystemExit(f"{path}: weights coded with {config.quant.scheme!r}, not laplace")
    names = ("coded", "laplace", "empirical", "per_bank", "per_row", "per_column", "zero_spike", "bank_delta")
    totals = dict.fromkeys(names, 0.0)
    layers = [dict.fromkeys(("weights", "laplace", "empirical"), 0.0) for _ in config.model.layer_shapes()]
    weights = 0
    with reader:
        tiles = len(reader.header.grid)
        for k in range(tiles):
            tile = read_laplace(config, reader.tile_blob(k))
            totals["coded"] += tile.coded_bytes * 8
            for layer, ints in zip(layers, tile.ints):  # [banks, in, out]
                weights += ints.size
                lap = laplace_bits(ints)
                emp = empirical_bits(ints)
                layer["weights"] += ints.size
                layer["laplace"] += lap
                layer["empirical"] += emp
                totals["laplace"] += lap
                totals["empirical"] += emp
                totals["per_bank"] += split_bits(ints, 0)
                totals["per_row"] += split_bits(ints, 1)
                totals["per_column"] += split_bits(ints, 2)
                totals["zero_spike"] += zero_spike_bits(ints) + MODEL_BITS + 16
                totals["bank_delta"] += bank_delta_bits(ints) + MODEL_BITS
    return {
        "file": str(path), "tiles": tiles, "weights": weights,
        "bits_per_weight": {k: round(v / weights, 4) for k, v in totals.items()},
        "saving_vs_coded": {k: round(1 - v / totals["coded"], 4) for k, v in totals.items() if k != "coded"},
        "layers": [{"weights": int(v["weights"]), "laplace_bits_per_weight": round(v["laplace"] / v["weights"], 3),
                    "empirical_bits_per_weight": round(v["empirical"] / v["weights"], 3)}
                   for v in layers if v["weights"]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("codec", help="a .loe file (image or video)")
    ap.add_argument("--out", help="write the JSON here")
    args = ap.parse_args()
    result = headroom(args.codec)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
