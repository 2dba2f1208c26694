"""One-line summaries shared by the image and video `loe info` output."""

from __future__ import annotations


def quant_summary(q: dict) -> str:
    if q.get("scheme") == "int8":
        return f"{q['bits']}-bit raw weights, {q['bias_dtype']} biases"
    return (f"range-coded weights, rate-distortion slope {q['slope']:g}, {q['qat_steps']} quantization-aware "
            f"steps, {q['bias_dtype']} biases")


def units_summary(kept: dict, what: str = "tiles") -> str:
    counts = ", ".join(f"{n} at {fraction}" for fraction, n in kept["tiles_by_fraction"].items())
    return f"  units  {what} keeping a fraction of their hidden units: {counts} (mean {kept['mean_fraction']:.2f})"


def size_summary(data: dict) -> str:
    return f"  size   {data['bytes']} bytes ({', '.join(f'{v} {k}' for k, v in data['rate_split'].items())})"
