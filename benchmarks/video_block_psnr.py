"""Mean per-frame PSNR of every spatial block of decoded video `.loe` files against their source clip.

Which blocks hold a clip's error: each spatial tile's core rectangle (the file's own grid; its
blocks cover all frames), named ``rRcC`` (row, column), and the whole frame as ``all`` (the figure
``loe eval`` prints). Frames are decoded and read one at a time. The per-quadrant tables of
benchmarks/README.md (Big Buck Bunny's first 60 frames: 2 x 2 tiles of 640x360 pixels, ``r0c0`` top left)
come from it::

    python benchmarks/video_block_psnr.py bbb60.mkv a.loe b.loe --out blocks.jsonl

``--float-fit BATCH.pt [BATCH.pt ...]`` (one file's fit-cache batches, as ``video_sizes.py --cache`` leaves
them, holding all its blocks in the file's order: chunk by chunk, a chunk's tiles row by row) also decodes
the float networks before quantization, in the file's grid and blending: what quantization costs each
block. Equal blocks: one batch per time chunk where they did not fit in one, first chunk first. Sized
blocks (``block_sizes``): one batch per block, padded with zero units as the encoder widens them; a
chunk's blocks are fitted widest first, so the cache's time order is not the file's, and a block given a
network narrower than the units it keeps stops the script. ``--float-cache DIR`` instead takes the batches of
a cache folder and puts them in the file's order itself (:func:`cache_blocks_in_file_order`)::

    python benchmarks/video_block_psnr.py bbb60.mkv run.loe --float-cache cache/run --out blocks.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from loe_codec.api import resolve_device  # noqa: E402
from loe_codec.decode import TileCache  # noqa: E402
from loe_codec.metrics import psnr_from_mse  # noqa: E402
from loe_codec.video import LoeVideo  # noqa: E402
from loe_codec.video_render import VideoRenderer  # noqa: E402
from loe_codec.videoio import VideoSource  # noqa: E402
from video_sizes import print_and_append  # noqa: E402


class FloatFit:
    """The float networks of fit-cache batch files (their blocks in the given order), readable as the
    file's tiles (a ``TileSource``). ``paths``: batch files (all their blocks) or ``(file, row)`` pairs (that
    one block of the batch)."""

    def __init__(self, paths: list[str | Path | tuple[str | Path, int]], video: LoeVideo):
        loaded: dict[str, dict] = {}

        def load(path: str | Path) -> dict:
            if str(path) not in loaded:
                loaded[str(path)] = torch.load(path, map_location="cpu", weights_only=True)
            return loaded[str(path)]

        stored = [load(entry) if not isinstance(entry, tuple) else
                  {key: [t[entry[1]:entry[1] + 1] for t in load(entry[0])[key]] for key in ("weights", "biases")}
                  for entry in paths]
        self.config = video.config
        layer_shapes = self.config.model.layer_shapes()
        # per layer [blocks, banks, in, out] / [blocks, out]; a narrower network (a file of sized blocks,
        # `block_sizes`) padded with zero units, as the encoder widens it
        self.weights = [torch.cat([_padded(w, (n_in, n_out)) for w in layer])
                        for layer, (n_in, n_out) in zip(zip(*(s["weights"] for s in stored)), layer_shapes)]
        self.biases = [torch.cat([_padded(b, (n_out,)) for b in layer])
                       for layer, (_, n_out) in zip(zip(*(s["biases"] for s in stored)), layer_shapes)]
        expected = [(len(video.grid), banks, n_in, n_out)
                    for banks, (n_in, n_out) in zip(self.config.model.bank_counts(), layer_shapes)]
        shapes = [tuple(w.shape) for w in self.weights]
        if shapes != expected:
            raise SystemExit(f"{' + '.join(map(_name, paths))}: weights {shapes} are not the {len(video.grid)} "
                             f"blocks of the file's model {expected}")
        fitted = [w.shape[-1] for batch in stored for w in batch["weights"][0]]  # each block's width as fitted
        for index, width in enumerate(fitted):
            kept = kept_width(video, index)
            if kept is not None and kept > width:
                raise SystemExit(f"block {index} of the file keeps {kept} units, more than the {width} of the "
                                 f"network given for it: pass the batches in the file's block order")

    def read_tile(self, index: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return [w[index].float() for w in self.weights], [b[index].float() for b in self.biases]


def kept_width(video: LoeVideo, index: int) -> int | None:
    """The hidden units block ``index`` of the file keeps (its widest layer's; a sized block's network
    width), or None where the file's blocks keep every unit."""
    units = video.reader.tile_units(index)
    return None if units is None else max(int(u.sum()) for u in units)


def _name(entry: str | Path | tuple[str | Path, int]) -> str:
    return f"{entry[0]}[{entry[1]}]" if isinstance(entry, tuple) else str(entry)


def _padded(t: torch.Tensor, trailing: tuple[int, ...]) -> torch.Tensor:
    """``t`` with its last dimensions zero-padded up to ``trailing`` (unchanged where they are not smaller)."""
    lead = t.shape[:t.dim() - len(trailing)]
    if any(have > want for have, want in zip(t.shape[len(lead):], trailing)):
        return t  # the shape check reports it
    out = t.new_zeros(*lead, *trailing)
    out[(...,) + tuple(slice(0, n) for n in t.shape[len(lead):])] = t
    return out


def cache_blocks_in_file_order(cache: str | Path, video: LoeVideo) -> list[tuple[Path, int]]:
    """Where ``video``'s blocks are in the fit-cache folder ``cache`` (one encode's, as ``video_sizes.py --cache``
    leaves it): per block of the file, in order, ``(batch file, row)``.

    The encoder fits the blocks of a batch (a time chunk, or several) that share a width as one batch, in
    block order, a batch's widths widest first, batch after batch. So, going through the file's blocks in
    order, a block takes the next row of the batch of its width (the units it keeps; the file's width where
    it keeps all) already begun, or else begins the oldest unused batch (by modification time) of that width
    that has no more rows than blocks of that width are left. Snapshots (``*.partial.pt``) and batches no
    block matches (a pilot fit's) are left out; a batch begun and not used up stops the script. A pilot batch
    as wide as, and with no more rows than, the blocks left of one width would be taken for theirs (it is
    older): pass such a file's batches by hand (``--float-fit``)."""
    batches = []
    for path in sorted(Path(cache).glob("batch-*.pt"), key=lambda f: f.stat().st_mtime):
        if not path.name.endswith(".partial.pt"):
            weights = torch.load(path, map_location="cpu", weights_only=True)["weights"]
            batches.append((path, int(weights[0].shape[0]), int(weights[0].shape[-1])))  # rows, hidden width
    widths = [kept_width(video, index) or video.config.model.width for index in range(len(video.grid))]
    placed: list[tuple[Path, int]] = []
    begun: dict[int, tuple[Path, int, int]] = {}  # width -> (batch, next row, rows)
    used: set[Path] = set()
    for index, width in enumerate(widths):
        if width not in begun:
            left = widths[index:].count(width)
            path, rows = next(((p, n) for p, n, w in batches if p not in used and w == width and n <= left),
                              (None, 0))
            if path is None:
                raise SystemExit(f"{cache}: no fit-cache batch holds block {index} of the file (width {width})")
            used.add(path)
            begun[width] = (path, 0, rows)
        path, row, rows = begun.pop(width)
        placed.append((path, row))
        if row + 1 < rows:
            begun[width] = (path, row + 1, rows)
    if begun:
        raise SystemExit(f"{cache}: batches {sorted(str(p) for p, _, _ in begun.values())} hold more blocks than the "
                         f"file has left of their width")
    return placed


def block_psnr(source: str | Path, codec: str | Path, device: str = "cpu",
               float_fit: list[str | Path | tuple[str | Path, int]] | None = None) -> dict[str, float]:
    """``{"rRcC": mean per-frame PSNR of that tile's core, ..., "all": of the whole frame}`` (dB) of the file's
    decode, or with ``float_fit`` (the fit-cache batch files of all its blocks, in order, or ``(file, row)`` per
    block: :class:`FloatFit`) of the float networks'."""
    with LoeVideo(codec) as video:
        src = VideoSource(source)
        if (src.width, src.height, src.frames) != (video.width, video.height, video.frames):
            raise SystemExit(f"{source} is {src.width}x{src.height}, {src.frames} frames; {codec} holds "
                             f"{video.width}x{video.height}, {video.frames} frames")
        boxes = {f"r{t.row}c{t.col}": (slice(t.y0, t.y1), slice(t.x0, t.x1)) for t in video.grid.space.tiles()}
        boxes["all"] = (slice(None), slice(None))
        per_frame: dict[str, list[float]] = {name: [] for name in boxes}
        if float_fit is None:
            frames = video.iter_frames(device=device)
        else:
            renderer = VideoRenderer(TileCache(FloatFit(float_fit, video), len(video.grid)), video.grid,
                                     video.header.motion)
            frames = renderer.iter_frames(video.request(), resolve_device(device))
        for decoded, reference in zip(frames, src.iter_frames(), strict=True):
            err = (decoded.astype(np.float64) - reference.astype(np.float64)) ** 2  # [H, W, C]
            for name, (ys, xs) in boxes.items():
                per_frame[name].append(psnr_from_mse(float(err[ys, xs].mean())))
    return {name: float(np.mean(values)) for name, values in per_frame.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="the clip the files were encoded from")
    ap.add_argument("codecs", nargs="+", help="video .loe files")
    ap.add_argument("--out", help="append one JSON line per file here")
    ap.add_argument("--device", default="cpu")
    float_source = ap.add_mutually_exclusive_group()
    float_source.add_argument("--float-fit", nargs="+", help="the fit-cache batch files of the (one) codec's "
                              "blocks, first chunk first: decode its float networks too")
    float_source.add_argument("--float-cache", help="the fit-cache folder of the (one) codec's encode: decode its "
                              "float networks too, the batches put in the file's block order")
    args = ap.parse_args()
    if (args.float_fit or args.float_cache) and len(args.codecs) != 1:
        ap.error("--float-fit and --float-cache take one codec file")
    floats, label = args.float_fit, {"float_fit": args.float_fit}
    if args.float_cache:
        with LoeVideo(args.codecs[0]) as video:
            floats = cache_blocks_in_file_order(args.float_cache, video)
        label = {"float_cache": args.float_cache, "float_fit": sorted({p.name for p, _ in floats})}
    runs = [(codec, None) for codec in args.codecs] + ([(args.codecs[0], floats)] if floats else [])
    for codec, fit in runs:
        psnr = block_psnr(args.source, codec, args.device, fit)
        print_and_append({"file": codec, **(label if fit else {}),
                          "psnr": {k: round(v, 2) for k, v in psnr.items()}}, args.out)


if __name__ == "__main__":
    main()
