"""Video benchmark: LoE vs x264 / x265 (preset medium, CRF sweep, yuv420p, through PyAV) at matched bpp.

For every video given, the first ``--frames`` frames are decoded to RGB and kept
as the reference (in a lossless FFV1 file, which is also what LoE encodes).
Quality is the mean per-frame PSNR over RGB (8-bit, peak 255); rate is the file
size in bits per pixel per frame. x264/x265 get their own sweep; their PSNR at
LoE's rate is interpolated linearly in log(bpp) between the two nearest CRF points.

    python benchmarks/video.py /work/shared/data/video/carphone_pristine.mp4 \\
        --loe video:steps=3000 --name carphone

Writes ``benchmarks/results/video_<name>.json`` and ``.md`` (machine, command, date).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from loe_codec.metrics import psnr_from_mse  # noqa: E402
from loe_codec.video import LoeVideo, encode_video, video_preset  # noqa: E402
from loe_codec.videoio import VideoSource  # noqa: E402


def cut_reference(src: str, dst: Path, frames: int | None) -> VideoSource:
    """The first ``frames`` frames of ``src`` as lossless RGB (FFV1), frame rate kept."""
    source = VideoSource(src)
    with av.open(str(dst), "w") as out:
        stream = out.add_stream("ffv1", rate=source.fps)
        stream.width, stream.height, stream.pix_fmt = source.width, source.height, "bgr0"
        for k, pixels in enumerate(source.iter_frames()):
            if frames is not None and k == frames:
                break
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = k, 1 / source.fps
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return VideoSource(dst)


def mean_frame_psnr(decoded, reference) -> float:
    values = []
    for d, r in zip(decoded, reference, strict=True):
        values.append(psnr_from_mse(float(np.mean((d.astype(np.float64) - r.astype(np.float64)) ** 2))))
    return float(np.mean(values))


def classic(codec: str, crf: int, ref: VideoSource, folder: Path) -> dict:
    """One x264 / x265 encode at ``crf`` (preset medium, yuv420p, mp4): bytes, bpp, mean per-frame PSNR."""
    path = folder / f"{codec}_{crf}.mp4"
    started = time.perf_counter()
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=ref.fps)
        stream.width, stream.height, stream.pix_fmt = ref.width, ref.height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        if codec == "libx265":
            stream.options["x265-params"] = "log-level=error"
        for pixels in ref.iter_frames():
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    seconds = time.perf_counter() - started
    size = path.stat().st_size
    psnr = mean_frame_psnr(VideoSource(path).iter_frames(), ref.iter_frames())
    return {"codec": codec, "crf": crf, "bytes": size, "bpp": size * 8 / (ref.width * ref.height * ref.frames),
            "psnr": psnr, "seconds": seconds}


def at_rate(points: list[dict], bpp: float) -> float | None:
    """PSNR of a sweep at ``bpp`` (linear in log bpp between the nearest points; None outside the sweep)."""
    pts = sorted((p["bpp"], p["psnr"]) for p in points)
    for (b0, p0), (b1, p1) in zip(pts, pts[1:]):
        if b0 <= bpp <= b1:
            w = (math.log(bpp) - math.log(b0)) / (math.log(b1) - math.log(b0)) if b1 > b0 else 0.0
            return p0 + w * (p1 - p0)
    return None


def loe_point(spec: str, ref_path: Path, folder: Path, device: str) -> dict:
    """``preset[:key=value,...]`` -> one LoE encode and its evaluation.

    Keys: steps, chunk, tile, seed (encode overrides) and width, pe, banks (model; banks as ``1-2-2-1``,
    all ones for a plain MLP).
    """
    preset, _, rest = spec.partition(":")
    overrides = dict(kv.split("=") for kv in rest.split(",") if kv)
    model = {}
    for key, field in (("width", "width"), ("pe", "pe_frequencies"), ("banks", "banks")):
        if key in overrides:
            value = overrides.pop(key)
            model[field] = tuple(int(b) for b in value.split("-")) if key == "banks" else int(value)
    config = video_preset(preset)
    config = dataclasses.replace(config, codec=dataclasses.replace(
        config.codec, model=dataclasses.replace(config.codec.model, **model)))
    out = folder / f"loe_{abs(hash(spec))}.loe"
    result = encode_video(ref_path, out, config=config, device=device, measure_psnr=False,
                          **{k: int(v) for k, v in overrides.items()})
    with LoeVideo(out) as clip:
        data = clip.evaluate(ref_path, device=device)
    keys = ("psnr", "psnr_min_frame", "psnr_chunk_borders", "psnr_chunk_interiors",
            "temporal_diff_rmse_chunk_borders", "temporal_diff_rmse_interiors", "psnr_seams", "psnr_interior")
    return {"spec": spec, "parameters_per_block": config.codec.model.parameter_count(), "bytes": result.bytes,
            "bpp": result.bpp, "encode_seconds": result.seconds,
            **{k: data[k] for k in keys}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--frames", type=int, default=None, help="first N frames only (default: all)")
    ap.add_argument("--crf", default="18,23,28,33,38,43,48", help="CRF sweep for x264 and x265")
    ap.add_argument("--loe", action="append", default=[], help="preset[:steps=N,chunk=N,...]; repeatable")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--name", default="video")
    args = ap.parse_args()
    crfs = [int(c) for c in args.crf.split(",")]
    report = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                          "torch_threads": torch.get_num_threads(), "pyav": av.__version__,
                          "device": args.device},
              "videos": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for k, path in enumerate(args.videos):
            ref_path = folder / f"ref{k}.mkv"
            ref = cut_reference(path, ref_path, args.frames)
            entry = {"video": path, "width": ref.width, "height": ref.height, "frames": ref.frames,
                     "fps": float(ref.fps), "classic": [], "loe": []}
            for codec in ("libx264", "libx265"):
                for crf in crfs:
                    entry["classic"].append(classic(codec, crf, ref, folder))
                    print(json.dumps(entry["classic"][-1]), flush=True)
            for spec in args.loe:
                point = loe_point(spec, ref_path, folder, args.device)
                for codec in ("libx264", "libx265"):
                    point[f"{codec}_psnr_at_same_bpp"] = at_rate(
                        [p for p in entry["classic"] if p["codec"] == codec], point["bpp"])
                entry["loe"].append(point)
                print(json.dumps(point), flush=True)
                save(report, entry, args.name)  # after every point: a long run keeps what it measured
            report["videos"].append(entry)
    save(report, None, args.name)


def save(report: dict, current: dict | None, name: str) -> None:
    full = dict(report, videos=report["videos"] + ([current] if current is not None else []))
    out = ROOT / "benchmarks" / "results" / f"video_{name}"
    out.with_suffix(".json").write_text(json.dumps(full, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(full))
    print(f"wrote {out}.json and .md", flush=True)


def markdown(report: dict) -> str:
    def f(v, nd=2):
        return "-" if v is None else f"{v:.{nd}f}"

    lines = [f"# Video benchmark ({report['date']})", "",
             f"Command: `{report['command']}`", "",
             f"Machine: {report['machine']}", "",
             "Mean per-frame PSNR (RGB, 8-bit); bpp = file bits per pixel per frame.", ""]
    for v in report["videos"]:
        lines += [f"## {Path(v['video']).name}: {v['width']}x{v['height']}, {v['frames']} frames, "
                  f"{v['fps']:.3f} fps", "",
                  "| codec | setting | bpp | PSNR dB | x264 at same bpp | x265 at same bpp | "
                  "chunk-border / other frames dB | encode s |",
                  "|---|---|---|---|---|---|---|---|"]
        for p in v["loe"]:
            lines.append(f"| LoE | {p['spec']} | {p['bpp']:.4f} | {f(p['psnr'])} | "
                         f"{f(p['libx264_psnr_at_same_bpp'])} | {f(p['libx265_psnr_at_same_bpp'])} | "
                         f"{f(p['psnr_chunk_borders'])} / {f(p['psnr_chunk_interiors'])} | "
                         f"{p['encode_seconds']:.0f} |")
        for p in v["classic"]:
            lines.append(f"| {p['codec']} | crf {p['crf']} | {p['bpp']:.4f} | {f(p['psnr'])} | | | | "
                         f"{p['seconds']:.1f} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
