"""Architecture ablation with the rate in view: each variant's RD curve, BD-rate vs reference variants.

Every variant is a :class:`~loe_codec.config.ModelConfig` change of one preset, named by
:func:`variant` (``w32``, ``depth6``, ``banks1-2-2-4-1``, ``pe8``, ``act-relu``, ``w0-20``,
``fine_to_coarse``, ``subdivide3``, ``linear``, ``mlp-w32``, ``w32+linear``, ...). Each (image,
variant) is fitted once (a fit cache shared by its slopes); every slope then costs only the
quantization-aware fine-tuning and the coding. The files are real `.loe` files written by
:func:`loe_codec.encode`; bpp is the whole file's, PSNR that of its full decode.

Example::

    python benchmarks/ablation.py --data ../shared/data/kodak --images kodim05,kodim23 \\
        --variants balanced,mlp,w32,mlp-w32 --slopes 3e-4,1e-3,3e-3 --bd-method pchip \\
        --out benchmarks/results/ablation_cpu.json

Runs of the same settings split over processes (one image each, say) are joined with
``--merge a.json b.json --out all.json``: the tables are made again from all their rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

import loe_codec
from loe_codec.bench.rd import METHODS, bd_psnr, bd_rate
from loe_codec.config import ARRANGEMENTS, CodecConfig, ModelConfig, preset

sys.path.insert(0, str(Path(__file__).parent))
from loe_codec.config import mlp_baseline  # noqa: E402

ModelChange = Callable[[ModelConfig, re.Match], ModelConfig]


def _replace(**fields: Callable[[re.Match], object]) -> ModelChange:
    """A change that sets ``fields`` of the model, each computed from the name's match."""
    return lambda model, match: dataclasses.replace(model, **{k: f(match) for k, f in fields.items()})


def _depth_banks(layers: int) -> tuple[int, ...]:
    """The preset's bank pattern at ``layers`` linear layers: plain first and last layers, 2 banks between."""
    if layers < 2:
        raise ValueError(f"depth must be >= 2 layers, got {layers}")
    return (1,) + (2,) * (layers - 2) + (1,)


# (pattern of one change's name, the change). Matched in order against the whole name.
CHANGES: list[tuple[str, ModelChange]] = [
    (r"(balanced|base)", lambda model, match: model),
    (r"w0-(\d+(?:\.\d+)?)", _replace(sine_w0=lambda m: float(m[1]))),
    (r"w(\d+)", _replace(width=lambda m: int(m[1]))),
    (r"depth(\d+)", _replace(banks=lambda m: _depth_banks(int(m[1])))),
    (r"banks(\d+(?:-\d+)+)", _replace(banks=lambda m: tuple(int(b) for b in m[1].split("-")))),
    (r"pe(\d+)", _replace(pe_frequencies=lambda m: int(m[1]))),
    (r"act-(\w+)", _replace(activation=lambda m: m[1])),
    (r"(nearest|linear)", _replace(blend=lambda m: m[1])),
    (r"subdivide(\d+)", _replace(subdivide=lambda m: int(m[1]))),
    ("(" + "|".join(ARRANGEMENTS) + ")", _replace(arrangement=lambda m: m[1])),
]
MLP_PREFIX = "mlp"


def change_model(model: ModelConfig, change: str) -> ModelConfig:
    """``model`` with one named change (see :data:`CHANGES`) applied; unknown names raise ``ValueError``."""
    for pattern, apply in CHANGES:
        match = re.fullmatch(pattern, change)
        if match:  # dataclasses.replace runs ModelConfig's checks on the new combination
            return apply(model, match)
    raise ValueError(f"unknown variant {change!r}")


def variant(base: CodecConfig, name: str) -> CodecConfig:
    """The base preset with the network changes that ``name`` lists.

    ``name`` is changes joined by ``+`` (``w32+linear``), each one of ``balanced`` (none), ``wN``
    (width), ``depthN`` (N linear layers, banks ``1-2-..-2-1``), ``banksA-B-..`` (banks per dimension
    of every layer), ``peN`` (positional-encoding octaves), ``act-relu|gelu|sine``, ``w0-N`` (sine
    frequency of the first layer), ``nearest|linear`` (bank blending), an arrangement
    (``coarse_to_fine``, ``fine_to_coarse``, ``uniform_coarse``, ``uniform_fine``) or ``subdivideN``
    (grid schedule). ``mlp`` alone is a plain MLP (all banks 1, as wide as the base's parameters
    allow); ``mlp-NAME`` is that MLP for the parameter count of variant ``NAME``.
    """
    if name == MLP_PREFIX or name.startswith(MLP_PREFIX + "-"):
        sized = variant(base, name[len(MLP_PREFIX) + 1:] or "balanced")
        return dataclasses.replace(mlp_baseline(sized), preset=name)
    model = base.model
    for change in name.split("+"):
        model = change_model(model, change)
    return dataclasses.replace(base, model=model, preset=name)


# --------------------------------------------------------------------------- the sweep


def encode_rows(data: Path, image: str, name: str, cfg: CodecConfig, slopes: list[float],
                tmp: Path) -> list[dict]:
    """Encode ``image`` with variant ``name`` at every slope (one fit, cached): one row per file."""
    rows = []
    for slope in slopes:
        started, cpu = time.perf_counter(), time.process_time()
        result = loe_codec.encode(data / f"{image}.png", tmp / "x.loe", config=cfg.with_overrides(slope=slope),
                                  device="cpu", cache_dir=tmp / f"fits-{name}")
        rows.append({"image": image, "variant": name, "slope": slope, "bpp": result.bpp, "psnr": result.psnr,
                     "seconds": round(time.perf_counter() - started, 1),
                     "cpu_seconds": round(time.process_time() - cpu, 1),
                     "parameters_per_tile": cfg.model.parameter_count()})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def sweep(args: argparse.Namespace, base: CodecConfig, names: list[str], save: Callable[[list[dict]], None]
          ) -> list[dict]:
    """Every (image, variant, slope) of the run; ``save(rows)`` after each variant (a killed run keeps them)."""
    configs = {name: variant(base, name) for name in names}  # every name checked before the first fit
    slopes = [float(s) for s in args.slopes.split(",")]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="loe-ablation-") as tmp:
        for image in args.images.split(","):
            for name in names:
                rows += encode_rows(args.data, image, name, configs[name], slopes, Path(tmp))
                save(rows)
    return rows


# --------------------------------------------------------------------------- BD tables


def curve(rows: list[dict], image: str, name: str) -> list[tuple[float, float]]:
    """(bpp, PSNR) points of one image and variant."""
    return [(r["bpp"], r["psnr"]) for r in rows if r["image"] == image and r["variant"] == name]


def bd_against(rows: list[dict], anchor: str, name: str, method: str) -> dict[str, list]:
    """Per-image BD-rate (%) and BD-PSNR (dB) of ``name`` vs ``anchor``; None where they do not overlap."""
    images = list(dict.fromkeys(r["image"] for r in rows))
    pairs = [(curve(rows, i, anchor), curve(rows, i, name)) for i in images]
    return {"bd_rate": [bd_rate(a, t, method) for a, t in pairs], "bd_psnr": [bd_psnr(a, t, method) for a, t in pairs]}


def is_mlp(name: str) -> bool:
    return name == MLP_PREFIX or name.startswith(MLP_PREFIX + "-")


def matched_mlp(name: str, params: dict[str, int]) -> str | None:
    """``name``'s own MLP (``mlp-NAME``) if it was run, else the MLP run nearest to it in parameters per
    tile; None for an MLP or where none was run."""
    mlps = [m for m in params if is_mlp(m)]
    if is_mlp(name) or not mlps:
        return None
    return min(mlps, key=lambda m: (m != f"{MLP_PREFIX}-{name}", abs(params[m] - params[name])))


def summarize(rows: list[dict], references: list[str], method: str) -> dict[str, dict]:
    """For every variant: parameters per tile, its nearest-size MLP and its BD numbers vs the references and
    that MLP."""
    params = {r["variant"]: r["parameters_per_tile"] for r in rows}
    out = {}
    for name, count in params.items():
        mlp = matched_mlp(name, params)
        anchors = [a for a in dict.fromkeys(references + ([mlp] if mlp else [])) if a != name]
        out[name] = {"parameters_per_tile": count, "matched_mlp": mlp,
                     "vs": {a: bd_against(rows, a, name, method) for a in anchors}}
    return out


def _fmt(values: list, unit: str, digits: int) -> str:
    return ", ".join("n/a" if v is None else f"{v:+.{digits}f}{unit}" for v in values)


def _bd_cells(bd: dict | None) -> list[str]:
    return ["", ""] if bd is None else [_fmt(bd["bd_rate"], "%", 1), _fmt(bd["bd_psnr"], " dB", 2)]


def summary_lines(summary: dict[str, dict], references: list[str]) -> list[str]:
    """The markdown table of :func:`summarize`: one column pair per reference, then the nearest-size MLP's."""
    head = "| variant | params/tile | " + " | ".join(f"BD-rate vs {a} | BD-PSNR vs {a}" for a in references)
    lines = [head + " | nearest-size MLP | BD-rate vs it | BD-PSNR vs it |",
             "|---|---:" + "|---|---" * len(references) + "|---|---|---|"]
    for name, s in summary.items():
        mlp = s["matched_mlp"]
        cells = [c for a in references for c in _bd_cells(s["vs"].get(a))]
        cells += [mlp or ""] + _bd_cells(s["vs"].get(mlp) if mlp else None)
        lines.append(f"| {name} | {s['parameters_per_tile']} | " + " | ".join(cells) + " |")
    return lines


def write_report(out: Path, run: dict, rows: list[dict], references: list[str], method: str) -> None:
    """``out`` (JSON: run details, rows, summary) and ``out`` with ``.md`` (the rows and the BD table)."""
    summary = summarize(rows, references, method) if rows else {}
    out.write_text(json.dumps({**run, "references": references, "bd_method": method, "rows": rows,
                               "summary": summary}, indent=1))
    slopes = ", ".join(f"{v:g}" for v in sorted({r["slope"] for r in rows}))
    lines = [f"{run['date']}, {run['machine']}", "", f"`{run['command']}`", "",
             f"Preset {run['preset']}, {run['steps']} fitting steps, {run['qat_steps']} quantization-aware "
             f"fine-tuning steps per slope, slopes {slopes}.", "",
             f"Per image (in the order {', '.join(dict.fromkeys(r['image'] for r in rows))}); BD over the range both "
             f"curves cover ({method}), negative BD-rate: fewer bits than the anchor at equal PSNR.", "",
             *summary_lines(summary, references), "",
             "The first slope's seconds include the fit; wall seconds depend on the machine's load.", "",
             "| image | variant | params/tile | slope | bpp | PSNR | wall s | CPU s |", "|---|---|---:|---|---:|---:|---:|---:|"]
    lines += [f"| {r['image']} | {r['variant']} | {r['parameters_per_tile']} | {r['slope']:g} | {r['bpp']:.3f} | "
              f"{r['psnr']:.2f} | {r['seconds']} | {r.get('cpu_seconds', '')} |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--images", help="comma-separated names without extension")
    parser.add_argument("--preset", default="balanced")
    parser.add_argument("--variants", default="balanced,mlp", help="comma-separated names (see variant())")
    parser.add_argument("--references", default="balanced,mlp",
                        help="variants every other is compared with (BD), besides its own mlp-NAME if run")
    parser.add_argument("--slopes", default="3e-4,1e-3,3e-3")
    parser.add_argument("--steps", type=int, help="override the fitting steps")
    parser.add_argument("--qat-steps", type=int, help="override the quantization-aware fine-tuning steps")
    parser.add_argument("--bd-method", choices=METHODS, default="cubic", help="cubic needs 4 slopes")
    parser.add_argument("--merge", type=Path, nargs="+", help="join these runs' rows instead of running")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if not args.merge and (args.data is None or args.images is None):
        parser.error("--data and --images are required unless --merge is given")
    return args


def base_config(args: argparse.Namespace) -> CodecConfig:
    """The preset with the run's step overrides."""
    base = preset(args.preset).with_overrides(steps=args.steps)
    if args.qat_steps is not None:
        base = dataclasses.replace(base, quant=dataclasses.replace(base.quant, qat_steps=args.qat_steps))
    return base


def run_details(args: argparse.Namespace, base: CodecConfig) -> dict:
    return {"date": datetime.date.today().isoformat(), "preset": args.preset, "steps": base.fit.steps,
            "qat_steps": base.quant.qat_steps, "machine": f"{platform.machine()}, torch {torch.__version__}, 1 thread, CPU",
            "command": "python " + " ".join(shlex.quote(a) for a in sys.argv)}


def merged(paths: list[Path]) -> tuple[dict, list[dict]]:
    """The first run's details (with every run's command) and all runs' rows."""
    runs = [json.loads(p.read_text()) for p in paths]
    details = {k: v for k, v in runs[0].items() if k not in ("rows", "summary", "references", "bd_method")}
    details["command"] = "; ".join(r["command"] for r in runs)
    return details, [row for r in runs for row in r["rows"]]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    references = args.references.split(",")
    if args.merge:
        run, rows = merged(args.merge)
    else:
        torch.set_num_threads(1)
        base = base_config(args)
        run = run_details(args, base)
        rows = sweep(args, base, args.variants.split(","),
                     lambda done: write_report(args.out, run, done, references, args.bd_method))
    write_report(args.out, run, rows, references, args.bd_method)
    return 0


if __name__ == "__main__":
    sys.exit(main())
