"""From measurements to the numbers a table shows: mean PSNR at fixed bpp, BD-rate and BD-PSNR.

Mean PSNR at a rate: each image's curve interpolated linearly in log(bpp),
then averaged over the images (``None`` unless every image reaches that
rate). Bjøntegaard deltas (:class:`BdSpec`), by default as the reference
anchors of this project were computed: between the *mean* curves, each
sampled at the rates of :data:`BD_GRID` that every image reaches, with the
cubic fit; or (``average="images"``) per image against the anchor's curve of
the same image, then averaged over the images (``None`` if any image's curves
do not overlap).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import UsageError
from .rd import METHODS, Curve, bd_psnr, bd_rate, mean_delta, mean_psnr_at

ANCHORS = ("jpeg", "jpeg2000", "x264", "x265")  # those among a run's codecs
# The rates (bpp) the mean curves are sampled at for BD: those of the reference anchors.
BD_GRID = (0.1, 0.15, 0.25, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0)
AVERAGES = ("curve", "images")


@dataclass(frozen=True)
class BdSpec:
    """How Bjøntegaard deltas are taken: ``method`` (cubic / pchip), ``average`` (curve / images), ``grid``."""

    method: str = "cubic"
    average: str = "curve"
    grid: tuple[float, ...] = BD_GRID

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"BD method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.average not in AVERAGES:
            raise UsageError(f"BD average must be one of {', '.join(AVERAGES)}, got {self.average!r}")

    def describe(self) -> str:
        if self.average == "curve":
            return (f"between the mean curves sampled at {', '.join(f'{b:g}' for b in self.grid)} bpp (where every "
                    f"image reaches the rate), {self.method} fit in log(bpp)")
        return f"per image against the anchor's curve of that image, {self.method} fit in log(bpp), then averaged"

    def deltas(self, anchor: Sequence[Curve], test: Sequence[Curve]) -> dict:
        """``{"rate": %, "psnr": dB}`` of the per-image curves ``test`` against ``anchor``."""
        if self.average == "images":
            return {"rate": mean_delta(anchor, test, "rate", self.method),
                    "psnr": mean_delta(anchor, test, "psnr", self.method)}
        a, t = (mean_curve(cs, self.grid) for cs in (anchor, test))
        return {"rate": bd_rate(a, t, self.method), "psnr": bd_psnr(a, t, self.method)}


def mean_curve(cs: Sequence[Curve], grid: Sequence[float]) -> list[tuple[float, float]]:
    """The mean RD curve: ``(bpp, mean PSNR)`` at the rates of ``grid`` that every image reaches."""
    return [(b, p) for b in grid if (p := mean_psnr_at(cs, b)) is not None]


def curves(results: Iterable[Mapping], codec: str, images: Sequence[str]) -> list[list[tuple[float, float | None]]]:
    """The ``(bpp, psnr)`` points of ``codec`` per image, in the order of ``images``."""
    by_image: dict[str, list[tuple[float, float | None]]] = {name: [] for name in images}
    for r in results:
        if r["codec"] == codec and r["image"] in by_image:
            by_image[r["image"]].append((r["bpp"], r["psnr"]))
    return [by_image[name] for name in images]


def mean_points(results: Iterable[Mapping], codec: str, settings: Sequence[str]) -> list[dict]:
    """Per setting: mean bpp and mean PSNR over the images (lossless results left out of the PSNR)."""
    out = []
    rows = [r for r in results if r["codec"] == codec]
    for s in settings:
        sel = [r for r in rows if r["setting"] == s]
        if not sel:
            continue
        finite = [r["psnr"] for r in sel if r["psnr"] is not None]
        out.append({"setting": s, "images": len(sel), "bpp": float(np.mean([r["bpp"] for r in sel])),
                    "psnr": float(np.mean(finite)) if finite else None})
    return out


def summarize(results: Sequence[Mapping], images: Sequence[str], codecs: Mapping[str, str],
              settings: Mapping[str, Sequence[str]], points: Sequence[float], bd: BdSpec = BdSpec()) -> dict:
    """The summary of a run.

    ``codecs`` maps names to labels (in table order). Returns ``{"points",
    "bd", "anchors", "codecs": {name: {"label", "mean_psnr", "settings",
    "bd": {anchor: {"rate", "psnr"}}}}}``.
    """
    per_codec: dict[str, list[Curve]] = {name: curves(results, name, images) for name in codecs}
    anchors = [a for a in ANCHORS if a in codecs]
    out: dict = {"points": list(points), "bd": bd.describe(), "anchors": anchors, "codecs": {}}
    for name, label in codecs.items():
        cs = per_codec[name]
        out["codecs"][name] = {
            "label": label,
            "mean_psnr": [mean_psnr_at(cs, p) for p in points],
            "settings": mean_points(results, name, settings.get(name, ())),
            "bd": {a: bd.deltas(per_codec[a], cs) for a in anchors},
        }
    return out


def reference_comparison(results: Sequence[Mapping], images: Sequence[str], codecs: Mapping[str, str],
                         reference: Mapping) -> list[dict]:
    """Our mean PSNR at the reference's rates next to the reference's, for codecs whose label it has.

    ``reference`` is a dict like ``kodak_classical_codecs.json`` (``target_bpp``
    and ``codecs: {label: {"mean_psnr": [...]}}``). One row per (codec, rate)
    where either has a value: ``codec, label, bpp, ours, reference, delta``.
    """
    rows = []
    targets = reference.get("target_bpp", [])
    for name, label in codecs.items():
        ref = reference.get("codecs", {}).get(label)
        if ref is None:
            continue
        cs = curves(results, name, images)
        for bpp, theirs in zip(targets, ref.get("mean_psnr", [])):
            ours = mean_psnr_at(cs, bpp)
            if ours is None and theirs is None:
                continue
            rows.append({"codec": name, "label": label, "bpp": bpp, "ours": ours, "reference": theirs,
                         "delta": ours - theirs if ours is not None and theirs is not None else None})
    return rows


REFERENCE_BD_KEY = "bd_rate_vs_JPEG-420_percent"


def reference_bd_comparison(summary: Mapping, reference: Mapping) -> list[dict]:
    """Our BD-rate vs JPEG next to the reference's (``bd_rate_vs_JPEG-420_percent``), per codec both have."""
    theirs = reference.get(REFERENCE_BD_KEY, {})
    if "jpeg" not in summary["anchors"]:
        return []
    rows = []
    for name, info in summary["codecs"].items():
        if info["label"] in theirs:
            ours = info["bd"]["jpeg"]["rate"]
            ref = theirs[info["label"]]
            rows.append({"codec": name, "label": info["label"], "ours": ours, "reference": ref,
                         "delta": ours - ref if ours is not None and ref is not None else None})
    return rows
