"""Architecture ablation with the rate in view: each variant's RD curve, BD-rate vs the first.

Every variant is a :class:`~loe_codec.config.ModelConfig` change of one preset. Each (image,
variant) is fitted once (a fit cache shared by its slopes); every slope then costs only the
quantization-aware fine-tuning and the coding. The files are real `.loe` files written by
:func:`loe_codec.encode`; bpp is the whole file's, PSNR that of its full decode.

Example::

    python benchmarks/ablation.py --data ../shared/data/kodak --images kodim05,kodim23 \\
        --variants balanced,mlp,w32 --slopes 3e-4,1e-3,3e-3 --out benchmarks/results/ablation_cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

import loe_codec
from loe_codec.bench.rd import bd_psnr, bd_rate
from loe_codec.config import CodecConfig, ModelConfig, preset

sys.path.insert(0, str(Path(__file__).parent))
from loe_codec.config import mlp_baseline  # noqa: E402


def variant(base: CodecConfig, name: str) -> CodecConfig:
    """A named change of the base preset's network: ``balanced`` (none), ``mlp`` (all banks 1, as wide as
    the parameter budget allows), ``wN`` (width N), ``banksA-B-..`` (banks per layer), ``linear`` (blend)."""
    m = base.model
    if name in ("balanced", "base"):
        model = m
    elif name == "mlp":
        return dataclasses.replace(mlp_baseline(base), preset=name)
    elif name.startswith("w"):
        model = dataclasses.replace(m, width=int(name[1:]))
    elif name.startswith("banks"):
        model = dataclasses.replace(m, banks=tuple(int(b) for b in name[5:].split("-")))
    elif name == "linear":
        model = dataclasses.replace(m, blend="linear")
    else:
        raise SystemExit(f"unknown variant {name!r}")
    return dataclasses.replace(base, model=ModelConfig(**{**dataclasses.asdict(model)}), preset=name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--images", required=True, help="comma-separated names without extension")
    parser.add_argument("--preset", default="balanced")
    parser.add_argument("--variants", default="balanced,mlp")
    parser.add_argument("--slopes", default="3e-4,1e-3,3e-3")
    parser.add_argument("--steps", type=int, help="override the fitting steps")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    base = preset(args.preset).with_overrides(steps=args.steps)
    names = args.variants.split(",")
    slopes = [float(s) for s in args.slopes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="loe-ablation-") as tmp:
        for image in args.images.split(","):
            source = args.data / f"{image}.png"
            for name in names:
                cfg = variant(base, name)
                for slope in slopes:
                    started = time.perf_counter()
                    result = loe_codec.encode(source, Path(tmp) / "x.loe", config=cfg.with_overrides(slope=slope),
                                              device="cpu", cache_dir=Path(tmp) / f"fits-{name}")
                    rows.append({"image": image, "variant": name, "slope": slope, "bpp": result.bpp,
                                 "psnr": result.psnr, "seconds": round(time.perf_counter() - started, 1),
                                 "parameters_per_tile": cfg.model.parameter_count()})
                    print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for name in names[1:]:
        per_image = []
        for image in args.images.split(","):
            curve = lambda v: [(r["bpp"], r["psnr"]) for r in rows if r["image"] == image and r["variant"] == v]  # noqa: E731
            per_image.append((bd_rate(curve(names[0]), curve(name)), bd_psnr(curve(names[0]), curve(name))))
        summary[name] = {"bd_rate_vs_" + names[0]: [p[0] for p in per_image],
                         "bd_psnr_vs_" + names[0]: [p[1] for p in per_image]}
    run = {"date": datetime.date.today().isoformat(), "preset": args.preset,
           "machine": f"{platform.machine()}, torch {torch.__version__}, 1 thread, CPU",
           "command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "rows": rows, "summary": summary}
    args.out.write_text(json.dumps(run, indent=1))
    lines = [f"{run['date']}, {run['machine']}", "", f"`{run['command']}`", "",
             "| image | variant | params/tile | slope | bpp | PSNR |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['image']} | {r['variant']} | {r['parameters_per_tile']} | {r['slope']:g} | {r['bpp']:.3f} | "
              f"{r['psnr']:.2f} |" for r in rows]
    lines += ["", f"| variant | BD-rate vs {names[0]} (per image) | BD-PSNR vs {names[0]} (per image) |", "|---|---|---|"]
    fmt = lambda vals, unit: ", ".join("n/a" if v is None else f"{v:+.1f}{unit}" for v in vals)  # noqa: E731
    lines += [f"| {n} | {fmt(s['bd_rate_vs_' + names[0]], '%')} | {fmt(s['bd_psnr_vs_' + names[0]], ' dB')} |"
              for n, s in summary.items()]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
