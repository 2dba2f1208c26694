"""From measurements to the numbers a table shows: mean PSNR at fixed bpp, BD-rate and BD-PSNR.

Mean PSNR at a rate: each image's curve interpolated linearly in log(bpp),
then averaged over the images (``None`` unless every image reaches that
rate). Bjøntegaard deltas are computed per image against the anchor codec's
curve of the same image and averaged over the images (``None`` if any image's
curves do not overlap).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from .rd import Curve, mean_delta, mean_psnr_at

ANCHORS = ("jpeg", "jpeg2000")


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
              settings: Mapping[str, Sequence[str]], points: Sequence[float], method: str = "pchip") -> dict:
    """The summary of a run.

    ``codecs`` maps names to labels (in table order). Returns ``{"points",
    "bd_method", "anchors", "codecs": {name: {"label", "mean_psnr", "settings",
    "bd": {anchor: {"rate", "psnr"}}}}}``.
    """
    per_codec: dict[str, list[Curve]] = {name: curves(results, name, images) for name in codecs}
    anchors = [a for a in ANCHORS if a in codecs]
    out: dict = {"points": list(points), "bd_method": method, "anchors": anchors, "codecs": {}}
    for name, label in codecs.items():
        cs = per_codec[name]
        out["codecs"][name] = {
            "label": label,
            "mean_psnr": [mean_psnr_at(cs, p) for p in points],
            "settings": mean_points(results, name, settings.get(name, ())),
            "bd": {a: {"rate": mean_delta(per_codec[a], cs, "rate", method),
                       "psnr": mean_delta(per_codec[a], cs, "psnr", method)} for a in anchors},
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
