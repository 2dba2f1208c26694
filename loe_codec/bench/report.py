"""Presenting a summary: a rich table, a Markdown report, a PNG plot of the mean RD curves."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from .rd import mean_psnr_at
from .summary import curves

ANCHOR_LABELS = {"jpeg": "JPEG", "jpeg2000": "J2K", "x264": "x264", "x265": "x265"}


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def table_rows(summary: Mapping) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table: mean PSNR (dB) at each bpp point, then BD-rate (%) and
    BD-PSNR (dB) against each anchor."""
    header = ["codec"] + [f"{p:g} bpp" for p in summary["points"]]
    for a in summary["anchors"]:
        header += [f"BD-rate vs {ANCHOR_LABELS[a]}", f"BD-PSNR vs {ANCHOR_LABELS[a]}"]
    rows = []
    for info in summary["codecs"].values():
        row = [info["label"]] + [_num(v, ".2f") for v in info["mean_psnr"]]
        for a in summary["anchors"]:
            bd = info["bd"][a]
            row += [_num(bd["rate"], "+.1f") + ("%" if bd["rate"] is not None else ""), _num(bd["psnr"], "+.2f")]
        rows.append(row)
    return header, rows


def setting_lines(summary: Mapping, most: int | None = None, media: str = "image") -> list[str]:
    """One line per (codec, setting): mean bpp and mean PSNR over the images or videos (``media``)
    (what a single-point codec shows).

    With ``most``, only codecs with at most that many settings (the others are curves in the table).
    """
    out = []
    for info in summary["codecs"].values():
        if most is not None and len(info["settings"]) > most:
            continue
        for s in info["settings"]:
            out.append(f"{info['label']} {s['setting']}: {s['bpp']:.4f} bpp, {_num(s['psnr'], '.2f')} dB "
                       f"(mean of {s['images']} {media}(s))")
    return out


def rich_table(summary: Mapping, title: str | None = None):
    """A :class:`rich.table.Table` of :func:`table_rows`."""
    from rich.table import Table

    header, rows = table_rows(summary)
    table = Table(title=title)
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in rows:
        table.add_row(*row)
    return table


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_report(run: Mapping) -> str:
    """The Markdown of a run: details, the summary table, the codecs' settings, the reference comparison."""
    summary, m = run["summary"], run["machine"]
    media = run.get("media", "image")
    out = [
        "# loe bench results", "",
        f"- date: {m['date']}", f"- command: `{m['command']}`",
        f"- machine: {m['cpu']} ({m['cpu_count']} cores), {m['platform']}, Python {m['python']}, "
        f"torch {m['torch']}, loe-codec {m['loe_codec']}",
        f"- codec libraries: {m.get('imagecodecs')}",
        f"- {media}s: {len(run['images'])} ({', '.join(run['images'])})",
        *([f"- {media} files: " + ", ".join(f"{k}: {v}" for k, v in run["image_files"].items())]
          if media == "video" else []),
        "- mean PSNR: RGB, 8-bit, peak 255"
        + ("; a video: mean of its per-frame PSNRs, bpp per pixel per frame" if media == "video" else "") + "; "
        f"each {media}'s curve interpolated linearly in log(bpp), then averaged; n/a where not every {media}'s "
        "sweep reaches that rate",
        f"- BD-rate / BD-PSNR (Bjøntegaard, over the interval both curves cover): {summary['bd']}", "",
        "Mean PSNR (dB) at each rate; BD-rate in %, BD-PSNR in dB.", "",
        markdown_table(*table_rows(summary)), "", "Mean bpp and PSNR per setting (not interpolated):", "",
        *[f"- {line}" for line in setting_lines(summary, media=media)], "", "## Codec settings", "",
    ]
    for name, info in run["codecs"].items():
        out.append(f"- **{info['label']}** (`{name}`): `{info['describe']}`; settings {', '.join(info['settings'])}")
    comparison = run.get("reference_comparison")
    if comparison:
        out += ["", "## Against the reference anchors", "", "Mean PSNR:", "",
                markdown_table(["codec", "bpp", "ours (dB)", "reference (dB)", "difference (dB)"],
                               [[r["label"], f"{r['bpp']:g}", _num(r["ours"], ".2f"), _num(r["reference"], ".2f"),
                                 _num(r["delta"], "+.3f")] for r in comparison["mean_psnr"]])]
        if comparison["bd_rate_vs_jpeg"]:
            out += ["", "BD-rate vs JPEG 4:2:0:", "",
                    markdown_table(["codec", "ours (%)", "reference (%)", "difference (points)"],
                                   [[r["label"], _num(r["ours"], "+.2f"), _num(r["reference"], "+.2f"),
                                     _num(r["delta"], "+.2f")] for r in comparison["bd_rate_vs_jpeg"]])]
    return "\n".join(out) + "\n"


def plot_rd(run: Mapping, path: str, max_bpp: float | None = None) -> None:
    """Save a PNG of the mean RD curve of every codec (interpolated mean, and the per-setting means as dots).

    The bpp axis ends at ``max_bpp``, by default at twice the largest table point (further
    where a codec's lowest rate lies beyond it, so that every codec shows).
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state (renders with Agg)

    summary, images = run["summary"], run["images"]
    lowest = [min(s["bpp"] for s in info["settings"]) for info in summary["codecs"].values() if info["settings"]]
    top = max_bpp if max_bpp is not None else max([2.0 * max(summary["points"])] + [2.0 * b for b in lowest])
    fig = Figure(figsize=(7, 5), dpi=120)
    ax = fig.subplots()
    for k, (name, info) in enumerate(summary["codecs"].items()):
        color = f"C{k % 10}"
        cs = curves(run["results"], name, images)
        lows = [min((b for b, p in c if p is not None), default=math.inf) for c in cs]
        highs = [max((b for b, p in c if p is not None), default=-math.inf) for c in cs]
        lo, hi = max(lows), min(min(highs), top)
        if hi > lo:
            grid = np.exp(np.linspace(math.log(lo), math.log(hi), 80))
            ys = [mean_psnr_at(cs, b) for b in grid]
            ax.plot(grid, ys, color=color, label=info["label"])
        pts = [(s["bpp"], s["psnr"]) for s in info["settings"] if s["psnr"] is not None and s["bpp"] <= top]
        if pts:
            curve = hi > lo  # a codec without a curve (e.g. one setting) shows its points bigger
            ax.plot(*zip(*pts), "o", color=color, markersize=3 if curve else 7, label=None if curve else info["label"])
    ax.set_xlabel("bits per pixel" + (" per frame" if run.get("media") == "video" else ""))
    ax.set_ylabel("mean PSNR (dB, RGB)")
    ax.set_xlim(0, top)
    ax.grid(True, alpha=0.3)
    media = run.get("media", "image")
    ax.set_title(f"Rate-distortion, mean of {len(images)} {media}(s)" if len(images) > 1 else
                 f"Rate-distortion, {images[0]}" + (" (mean per-frame PSNR)" if media == "video" else ""))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")
